"""Each metric against an independent computation: closed forms, hand counts, scipy, known signals."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import entropy

from media.beat_scores import beat_scores
from mumu.eval.audio_metrics import cosine, fad, frechet_distance, kl_divergences
from mumu.eval.beats import beat_alignment
from mumu.eval.fixtures import CUTS, RATE, click_track, write_cut_video
from mumu.eval.text_metrics import bertscore, bleu, meteor, rouge_l, text_metrics
from tests.mumu.eval.reference_models import save_roberta


def test_fad_of_identical_sets_is_zero_and_of_shifted_sets_is_the_squared_shift():
    x = np.random.default_rng(0).standard_normal((400, 6))
    shift = np.array([1.0, -2.0, 0.5, 0.0, 3.0, 1.0])
    assert fad(x, x) == pytest.approx(0.0, abs=1e-6)
    # Same covariance: the trace term vanishes and the distance is |shift|^2 exactly.
    assert fad(x, x + shift) == pytest.approx(float(shift @ shift), rel=1e-6)


def test_frechet_distance_of_gaussians_matches_the_closed_forms():
    mu_a, mu_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var_a, var_b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    diagonal = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    assert frechet_distance(mu_a, np.diag(var_a), mu_b, np.diag(var_b)) == pytest.approx(diagonal)
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((4, 4)), rng.standard_normal((4, 4))
    cov_a, cov_b = a @ a.T + np.eye(4), b @ b.T + np.eye(4)
    # Tr((A B)^1/2) is the sum of the square roots of the (real, positive) eigenvalues of A B.
    direct = np.trace(cov_a) + np.trace(cov_b) - 2 * np.sum(np.sqrt(np.linalg.eigvals(cov_a @ cov_b).real))
    assert frechet_distance(np.zeros(4), cov_a, np.zeros(4), cov_b) == pytest.approx(direct, rel=1e-6)


def test_fad_refuses_sets_it_cannot_fit():
    with pytest.raises(ValueError, match="n >= 2"):
        fad(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="widths differ"):
        fad(np.zeros((3, 3)), np.zeros((3, 4)))


def test_kl_matches_scipy_entropy_and_is_zero_for_identical_outputs():
    rng = np.random.default_rng(2)
    ref, gen = rng.standard_normal((5, 7)), rng.standard_normal((5, 7))
    soft = lambda z: np.exp(z) / np.exp(z).sum(-1, keepdims=True)  # noqa: E731
    expected = np.mean([entropy(p, q) for p, q in zip(soft(ref), soft(gen), strict=True)])
    assert kl_divergences(ref, gen)["kl_softmax"] == pytest.approx(expected, rel=1e-4)
    assert kl_divergences(ref, ref)["kl_softmax"] == pytest.approx(0.0, abs=1e-9)


def test_cosine_of_parallel_and_orthogonal_vectors():
    assert cosine([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert cosine([1, 0], [0, 5]) == pytest.approx(0.0)


def test_bleu_matches_hand_counted_ngram_precisions():
    hyp, ref = ["the cat sat on the mat"], [["the cat is on the mat"]]
    scores = bleu(hyp, ref)
    # unigrams 5/6 match, bigrams 3/5 ("the cat", "on the", "the mat"), equal lengths: no brevity penalty.
    assert scores["BLEU-1"] == pytest.approx(100 * 5 / 6)
    assert scores["BLEU-2"] == pytest.approx(100 * np.sqrt(5 / 6 * 3 / 5))
    assert bleu(["a b c d e"], [["a b c d e"]])["BLEU-4"] == pytest.approx(100.0)
    assert "smooth:exp" in scores["signature"] and "tok:13a" in scores["signature"]


def test_rouge_l_is_the_lcs_f_measure_and_takes_the_best_reference():
    # LCS "the cat on the mat" = 5 of 6 words each side.
    assert rouge_l(["the cat sat on the mat"], [["the cat is on the mat"]]) == pytest.approx(5 / 6)
    assert rouge_l(["a b"], [["x y", "a b"]]) == pytest.approx(1.0)


class NoSynonyms:
    """A WordNet stand-in with no synonyms (exact and stem matching only)."""

    def synsets(self, *args, **kwargs):
        return []


def test_meteor_of_an_exact_match_is_one_minus_the_fragmentation_penalty():
    # One chunk of 6 matches: penalty 0.5 * (1/6)^3, Fmean 1.
    assert meteor(["the cat sat on the mat"], [["the cat sat on the mat"]], wordnet=NoSynonyms()) == pytest.approx(
        1 - 0.5 * (1 / 6) ** 3)


def test_text_metrics_name_every_tool_and_say_why_one_is_missing():
    out = text_metrics(["a steady click"], [["a steady click track"]])
    assert set(out["sacrebleu"]) >= {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4"}
    assert out["bert_score"]["F1"] is None and "not requested" in out["unavailable"]["bert_score"]
    with pytest.raises(ValueError, match="one reference list per hypothesis"):
        text_metrics(["a"], [])


def test_beats_exactly_on_cuts_score_100_and_shuffled_beats_score_lower():
    cuts = [0.5, 1.0, 1.5, 2.0]
    assert beat_scores(cuts, np.array(cuts), 3.0) == {"bcs": 1.0, "bhs": 1.0}
    assert beat_scores(cuts, np.array([0.25, 0.77, 1.23, 1.74]), 3.0)["bhs"] < 1.0
    doubled = beat_scores(cuts, np.array(sorted([*cuts, 0.75, 1.25])), 3.0)
    assert doubled["bcs"] == pytest.approx(1.5) and doubled["bhs"] == 1.0


def test_a_click_on_every_cut_hits_them_all_and_an_offbeat_one_misses(tmp_path):
    """Cuts found by the scoring's own detector, beats by its own tracker, scores in percent."""
    video = write_cut_video(tmp_path / "clip.mp4")  # cuts every 0.5 s
    on_beat = beat_alignment(video, click_track(120.0, seconds=4.0), RATE)
    assert on_beat["video_beats"] == len(CUTS) and on_beat["BHS"] == 100.0
    assert on_beat["BCS"] == pytest.approx(100.0 * on_beat["music_beats"] / len(CUTS))
    late = np.roll(click_track(120.0, seconds=4.0), round(0.25 * RATE))  # every click a quarter second late
    assert beat_alignment(video, late, RATE)["BHS"] < on_beat["BHS"]


def test_bertscore_is_one_for_identical_text_and_takes_the_best_reference(tmp_path):
    model = str(save_roberta(tmp_path / "roberta"))
    same = bertscore(["the cat sat on the mat"], [["the cat sat on the mat"]], model, num_layers=2)
    assert same["F1"] == pytest.approx(1.0, abs=1e-5) and same["P"] == pytest.approx(1.0, abs=1e-5)
    other = bertscore(["the cat sat on the mat"], [["a big dog runs fast"]], model, num_layers=2)["F1"]
    assert other < 1.0
    best = bertscore(["the cat sat on the mat"], [["a big dog runs fast", "the cat sat on the mat"]], model,
                     num_layers=2)["F1"]
    assert best == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="layer table"):
        bertscore(["a"], [["a"]], model)
