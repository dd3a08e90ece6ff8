"""Generation: KV cache equals recomputation, music modes, [AUD] state capture, batching."""

from __future__ import annotations

import pytest
import torch

from mumu.decoding import DecodeRequest, GenerationSettings, decode, generate
from mumu.modeling import MediaFeatures
from tests.mumu.conftest import make_model, media_for, open_gates, prompt_ids


def _run(model, media, **settings):
    return generate(model, [prompt_ids(model)], media, GenerationSettings(**settings))[0]


@pytest.mark.parametrize("num_tokens", [1, 2])
def test_cached_greedy_equals_uncached_recomputation(num_tokens):
    model = make_model(adapter__num_tokens=num_tokens)
    open_gates(model, 0.7)
    media = media_for(model, seed=5)
    cached = _run(model, media, max_new_tokens=24, music="always", use_cache=True)
    uncached = _run(model, media, max_new_tokens=24, music="always", use_cache=False)
    assert cached.token_ids == uncached.token_ids
    torch.testing.assert_close(cached.audio_hidden, uncached.audio_hidden, rtol=1e-4, atol=1e-5)


def test_music_always_appends_all_audio_tokens_then_eos(model):
    out = _run(model, media_for(model, seed=1), max_new_tokens=20, music="always")
    audio = list(model.ids.audio)
    assert out.token_ids[-9:] == [*audio, model.ids.eos]
    assert out.finished
    assert out.audio_hidden.shape == (8, 64)
    assert "[AUD" not in out.text


def _prefer_aud0(model):
    """Make [AUD0] the overwhelmingly likely next token, as a model trained to answer with music would."""
    aud0 = model.ids.audio[0]

    def bias(module, args, logits):
        logits = logits.clone()
        logits[..., aud0] += 100.0
        return logits

    model.llm.get_base_model().lm_head.register_forward_hook(bias)


def test_music_never_produces_no_audio_tokens(model):
    _prefer_aud0(model)
    assert _run(model, None, max_new_tokens=12, music="auto").token_ids[0] == model.ids.audio[0]
    out = _run(model, None, max_new_tokens=12, music="never")
    assert not set(out.token_ids) & set(model.ids.audio)
    assert out.audio_hidden is None


def test_auto_music_completes_the_audio_sequence_in_order(model):
    _prefer_aud0(model)
    out = _run(model, None, max_new_tokens=30, music="auto")
    assert out.token_ids == [*model.ids.audio, model.ids.eos]
    assert out.audio_hidden.shape == (8, 64)


def test_generation_captures_the_states_training_regresses(model):
    """The [AUD] states captured while generating equal what MuMuModel.forward gathers for the projector loss."""
    open_gates(model, 0.5)
    media = media_for(model, seed=2)
    out = _run(model, media, max_new_tokens=16, music="always")
    full = torch.tensor([prompt_ids(model) + out.token_ids])
    (stream,) = model.config.projector.streams
    targets = {stream.name: torch.zeros(1, 4, stream.width)}
    with torch.no_grad():
        trained = model(full, media=media, decoder_targets=targets)
    with torch.no_grad():
        expected = model.project(out.audio_hidden[None]).raw[stream.name]
    torch.testing.assert_close(trained.projector.raw[stream.name], expected, rtol=1e-4, atol=1e-5)


def test_batched_left_padded_generation_matches_single_rows(model):
    open_gates(model, 0.5)
    short = prompt_ids(model, "calm piano")
    long = prompt_ids(model, "Describe the music in detail including instruments")
    media = media_for(model, seed=3, rows=2)
    batch = generate(model, [short, long], media, GenerationSettings(max_new_tokens=10, music="always"))
    for i, prompt in enumerate([short, long]):
        row_media = MediaFeatures(music=[media.music[i]], image=[media.image[i]], video=[media.video[i]])
        single = generate(model, [prompt], row_media, GenerationSettings(max_new_tokens=10, music="always"))[0]
        assert batch[i].token_ids == single.token_ids


def test_seeded_sampling_is_reproducible(model):
    a = _run(model, None, max_new_tokens=12, temperature=1.0, top_p=0.9, seed=7)
    b = _run(model, None, max_new_tokens=12, temperature=1.0, top_p=0.9, seed=7)
    assert a.token_ids == b.token_ids


def test_bad_settings_are_rejected(model):
    with pytest.raises(ValueError, match="music must be one of"):
        _run(model, None, music="sometimes")
    with pytest.raises(ValueError, match="at least one token"):
        generate(model, [[]])


def test_rows_keep_their_own_settings_generators_and_errors(model):
    a, b = prompt_ids(model, "calm piano"), prompt_ids(model, "Describe the music in detail including instruments")
    greedy = GenerationSettings(max_new_tokens=5, music="never")
    sampled = GenerationSettings(max_new_tokens=12, temperature=1.0, top_p=0.9, seed=11, music="always")
    batch = generate(model, [a, b], None, [greedy, sampled])
    assert batch[0].token_ids == generate(model, [a], None, greedy)[0].token_ids
    assert len(batch[0].token_ids) <= 5 and batch[1].audio_hidden is not None
    assert batch[1].token_ids == generate(model, [b], None, sampled)[0].token_ids  # its own generator

    def on_token(row, token):
        if row == 0:
            raise RuntimeError("the client went away")

    failed = generate(model, [a, b], None, [greedy, sampled], on_token=on_token)
    assert isinstance(failed[0].error, RuntimeError) and len(failed[0].token_ids) == 1  # ended at its first token
    assert failed[1].error is None and failed[1].token_ids == batch[1].token_ids
    with pytest.raises(ValueError, match="got 1 settings for 2 prompts"):
        generate(model, [a, b], None, [greedy])


def _recorded_forwards(model):
    """(rows, columns) of every LLM forward from now on (columns 1: a decoding step, more: a prefill)."""
    shapes = []
    model.llm.get_input_embeddings().register_forward_hook(lambda m, args, out: shapes.append(tuple(out.shape[:2])))
    return shapes


def test_rows_that_join_and_leave_a_running_batch_get_their_results_alone(model):
    open_gates(model, 0.5)
    media = media_for(model, seed=4, rows=2)
    with_media = MediaFeatures(music=media.music[:1], image=media.image[:1], video=media.video[:1])
    requests = [
        DecodeRequest(prompt_ids(model, "calm piano"), None, GenerationSettings(max_new_tokens=12, music="never")),
        DecodeRequest(prompt_ids(model, "Describe the music in detail including instruments"), with_media,
                      GenerationSettings(max_new_tokens=10, temperature=1.0, top_p=0.9, seed=5, music="always")),
        DecodeRequest(prompt_ids(model, "hi"), None, GenerationSettings(max_new_tokens=2, music="never")),
    ]
    alone = [decode(model, [request])[0].token_ids for request in requests]
    shapes = _recorded_forwards(model)
    asked = []

    def join(decoding):
        asked.append(decoding)
        return requests[1:] if len(asked) == 3 else []  # both join before the fourth step

    together = decode(model, requests[:1], join=join)
    assert [r.token_ids for r in together] == alone
    # Row r joins at step j and decodes its n tokens at steps j .. j+n-1 (its prefill at j): the forwards expected
    # when every row leaves right after its last token. The first row runs alone for three steps.
    joined = [1, 4, 4]
    expected = []
    for step in range(1, max(j + len(a) for j, a in zip(joined, alone, strict=True))):
        running = [r for r, j in enumerate(joined) if j < step < j + len(alone[r])]
        starting = [r for r, j in enumerate(joined) if j == step]
        expected += [(len(running), 1)] if running else []
        expected += [(len(starting), max(len(requests[r].prompt) for r in starting))] if starting else []
    assert shapes == expected
    assert 1 < len(alone[2]) < len(alone[1]) < len(alone[0])  # so the batch shrinks twice: rows left one by one
    assert asked[:4] == [1, 1, 1, 3]


def test_rows_of_a_batch_share_the_kv_cache_setting(model):
    cached = DecodeRequest(prompt_ids(model), None, GenerationSettings(max_new_tokens=4))
    uncached = DecodeRequest(prompt_ids(model), None, GenerationSettings(max_new_tokens=4, use_cache=False))
    with pytest.raises(ValueError, match="use_cache must be the same for every row of a batch"):
        decode(model, [cached], join=lambda decoding: [uncached])
