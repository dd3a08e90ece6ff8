"""Text-similarity metrics for captioning / MusicQA, each named exactly as the tool that computes it.

- `sacrebleu.BLEU-n` (n = 1..4): sacreBLEU's corpus BLEU with max n-gram order n (uniform weights over 1..n), its
  default 13a tokenisation and `exp` smoothing, on a 0-100 scale; the signature is reported beside the numbers.
- `rouge_score.rougeL_f`: Google's rouge-score ROUGE-L F-measure with its Porter stemmer, the mean over items of
  the best score against any reference (`score_multi`).
- `nltk.meteor`: NLTK's meteor_score (exact, stem and WordNet-synonym matching) on lower-cased whitespace tokens,
  the mean over items; needs NLTK's WordNet data (`python -m nltk.downloader wordnet`), else unavailable.
- `bert_score.F1` (and P, R): the bert-score package's BERTScore (greedy cosine matching of contextual token
  embeddings, no idf, no baseline rescaling), by default with roberta-large at layer 17 as bert-score does for
  English; the mean over items of the best reference (bert-score's multi-reference rule). When the model cannot be
  loaded (offline, not downloaded) it is reported as unavailable with the loader's reason.

These scores measure how a reply is worded, not whether it is right (arXiv 2511.05550 shows them tracking
fluency on MusicQA); MuChoMusic accuracy is the headline number for understanding.
"""

from __future__ import annotations

from typing import Any

from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU

FLUENCY_CAVEAT = ("BLEU, ROUGE-L, METEOR and BERTScore compare wording with the references: on MusicQA they "
                  "measure fluency, not correctness (arXiv 2511.05550). Use MuChoMusic accuracy for understanding.")


def _references_by_position(references: list[list[str]]) -> list[list[str]]:
    """sacreBLEU wants reference streams (one list per reference position); items with fewer repeat their first."""
    width = max(map(len, references))
    return [[refs[k] if k < len(refs) else refs[0] for refs in references] for k in range(width)]


def bleu(hypotheses: list[str], references: list[list[str]]) -> dict[str, Any]:
    """Corpus BLEU-1..4 from sacreBLEU, plus the signature of the BLEU-4 setting."""
    streams = _references_by_position(references)
    out: dict[str, Any] = {}
    for n in range(1, 5):
        metric = BLEU(max_ngram_order=n)
        out[f"BLEU-{n}"] = metric.corpus_score(hypotheses, streams).score
    out["signature"] = str(metric.get_signature())
    return out


def rouge_l(hypotheses: list[str], references: list[list[str]]) -> float:
    """Mean over items of rouge-score's ROUGE-L F-measure against the best-matching reference."""
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [scorer.score_multi(refs, hyp)["rougeL"].fmeasure for hyp, refs in zip(hypotheses, references,
                                                                                       strict=True)]
    return sum(scores) / len(scores)


def wordnet_status() -> str | None:
    """None when NLTK and its WordNet data load, else why METEOR is unavailable."""
    try:
        from nltk.corpus import wordnet

        wordnet.ensure_loaded()
    except (ImportError, LookupError) as e:
        first = str(e).strip().splitlines()
        return f"NLTK WordNet data not found ({first[1].strip() if len(first) > 1 else first[0]}); " \
               "install it with `python -m nltk.downloader wordnet`"
    return None


def meteor(hypotheses: list[str], references: list[list[str]], wordnet: Any = None) -> float:
    """Mean NLTK METEOR over items (lower-cased whitespace tokens); `wordnet`: NLTK's corpus unless given."""
    from nltk.translate.meteor_score import meteor_score

    if wordnet is None:
        from nltk.corpus import wordnet
    scores = [meteor_score([r.lower().split() for r in refs], hyp.lower().split(), wordnet=wordnet)
              for hyp, refs in zip(hypotheses, references, strict=True)]
    return sum(scores) / len(scores)


def bertscore(hypotheses: list[str], references: list[list[str]], model: str, num_layers: int | None = None,
              device: str | None = None) -> dict[str, float]:
    """Mean BERTScore P / R / F1 from the bert-score package (num_layers: bert-score's table for known models)."""
    import bert_score
    from bert_score.utils import model2layers

    layers = num_layers if num_layers is not None else model2layers.get(model)
    if layers is None:
        raise ValueError(f"BERTScore model {model!r} is not in bert-score's layer table; give --bertscore-layers")
    precision, recall, f1 = bert_score.score(hypotheses, references, model_type=model, num_layers=layers,
                                             device=device)
    return {"P": float(precision.mean()), "R": float(recall.mean()), "F1": float(f1.mean()), "layer": layers}


def text_metrics(hypotheses: list[str], references: list[list[str]], bertscore_model: str | None = None,
                 bertscore_layers: int | None = None, device: str | None = None) -> dict[str, Any]:
    """Every available metric under its tool's name; unavailable ones are None with the reason in `unavailable`."""
    if len(hypotheses) != len(references) or not hypotheses:
        raise ValueError(f"need one reference list per hypothesis, got {len(hypotheses)} and {len(references)}")
    if any(not refs for refs in references):
        raise ValueError("every item needs at least one reference text")
    out: dict[str, Any] = {"sacrebleu": bleu(hypotheses, references),
                           "rouge_score": {"rougeL_f": rouge_l(hypotheses, references)}}
    unavailable: dict[str, str] = {}
    reason = wordnet_status()
    if reason is None:
        out["nltk"] = {"meteor": meteor(hypotheses, references)}
    else:
        out["nltk"] = {"meteor": None}
        unavailable["nltk.meteor"] = reason
    out["bert_score"] = {"F1": None}
    if bertscore_model is None:
        unavailable["bert_score"] = "not requested (no --bertscore-model)"
    else:
        try:
            out["bert_score"] = bertscore(hypotheses, references, bertscore_model, bertscore_layers, device)
        except OSError as e:  # the model is neither local nor downloadable here
            unavailable["bert_score"] = f"{bertscore_model} could not be loaded: {str(e).splitlines()[0]}"
    out["unavailable"] = unavailable
    return out
