"""AudioLDM2 decoder on a tiny random pipeline (CPU, offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import RobertaTokenizer, T5Tokenizer

from checkpoints.sources import TINY_TOKENIZER
from generation.audioldm2 import AudioLDM2Decoder
from generation.config import DecoderConfig, SamplingSettings
from generation.interface import Conditioning, EditSource
from mumu.presets import AUDIOLDM2_MUSIC_ARCH, TINY_AUDIOLDM2_ARCH

CAPTION = "a calm piano melody"
TINY = DecoderConfig(kind="audioldm2", tokenizer=TINY_TOKENIZER, arch=TINY_AUDIOLDM2_ARCH)
BARE = DecoderConfig(kind="audioldm2", arch=TINY_AUDIOLDM2_ARCH)  # no tokenizers: embeddings only

# diffusers' DPM-Solver builds np.array from a torch tensor with copy=False; harmless, and not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def fast(**kw: object) -> SamplingSettings:
    """Short, few-step settings so each generation takes a few tens of milliseconds."""
    return SamplingSettings(**{"duration": 0.25, "steps": 3, **kw})


@pytest.fixture(scope="module")
def decoder() -> AudioLDM2Decoder:
    return AudioLDM2Decoder.from_config(TINY)


@pytest.fixture(scope="module")
def bare() -> AudioLDM2Decoder:
    """Same random weights, no tokenizers: embeddings only."""
    return AudioLDM2Decoder.from_config(BARE)


@pytest.fixture
def cond() -> Conditioning:
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(1, 12, dtype=torch.bool)
    mask[0, 10:] = False
    return Conditioning(
        embeds={"prompt_embeds": torch.randn(1, 12, 32, generator=g),
                "generated_prompt_embeds": torch.randn(1, 8, 16, generator=g)},
        masks={"prompt_embeds": mask},
    )


def differ(a: np.ndarray, b: np.ndarray) -> bool:
    """Clearly different, not just last-bit noise."""
    return float(np.abs(a - b).max()) > 1e-4 * float(np.abs(a).max())


def test_streams_and_sample_rate(decoder: AudioLDM2Decoder) -> None:
    assert decoder.streams == {"prompt_embeds": (None, 32), "generated_prompt_embeds": (8, 16)}
    assert decoder.sample_rate == 16000


@pytest.mark.parametrize("duration", [0.3, 0.3037])
def test_exact_length_mono_float32(decoder: AudioLDM2Decoder, cond: Conditioning, duration: float) -> None:
    out = decoder.generate(cond, fast(duration=duration))
    target = round(duration * 16000)
    assert out.waveform.shape == (target,)
    assert out.waveform.dtype == np.float32
    assert out.sample_rate == 16000
    assert np.isfinite(out.waveform).all()
    assert np.abs(out.waveform).max() > 1e-3  # the tiny vocoder is initialised to be audible, not ~1e-7
    samples = out.info["samples"]
    assert samples["asked"] == target and samples["padded"] == 0
    assert samples["generated"] - samples["trimmed"] == target  # whole 10 ms frames, trimmed to the sample
    assert out.info | {"samples": None} == {
        "decoder": "audioldm2", "seed": 0, "steps": 3, "guidance_scale": 3.0, "mode": "embeddings",
        "candidates": 1, "ranked": False, "negative": "negative_prompt", "samples": None,
    }


def test_seed_determinism_and_sensitivity(decoder: AudioLDM2Decoder, cond: Conditioning) -> None:
    a = decoder.generate(cond, fast(seed=7)).waveform
    b = decoder.generate(cond, fast(seed=7)).waveform
    c = decoder.generate(cond, fast(seed=8)).waveform
    assert np.array_equal(a, b)
    assert differ(a, c)


def test_guidance_is_applied_with_encoded_negatives(decoder: AudioLDM2Decoder, cond: Conditioning) -> None:
    plain = decoder.generate(cond, fast(guidance_scale=1.0))
    guided = decoder.generate(cond, fast(guidance_scale=3.0))
    stronger = decoder.generate(cond, fast(guidance_scale=6.0))
    other_negative = decoder.generate(cond, fast(guidance_scale=3.0, negative_prompt="Noisy drums."))
    assert "negative" not in plain.info and guided.info["negative"] == "negative_prompt"
    assert differ(plain.waveform, guided.waveform)
    assert differ(guided.waveform, stronger.waveform)  # the scale itself matters, not only guidance on/off
    assert differ(guided.waveform, other_negative.waveform)  # negatives come from encoding the negative prompt


def test_negative_embeddings_match_pipeline_encoding(
    decoder: AudioLDM2Decoder, cond: Conditioning, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipe = decoder.pipe
    seen = {}
    original = pipe.unet.forward

    def spy(sample: torch.Tensor, timestep: torch.Tensor, **kw: torch.Tensor) -> object:
        seen.setdefault("kw", kw)
        return original(sample, timestep, **kw)

    monkeypatch.setattr(pipe.unet, "forward", spy)
    decoder.generate(cond, fast(steps=1))
    monkeypatch.undo()
    with torch.inference_mode():
        neg_pe, neg_mask, neg_ge = pipe.encode_prompt(
            "Low quality.", "cpu", 1, False, transcription="Low quality.", max_new_tokens=8
        )
    n = neg_pe.shape[1]
    assert n < 12  # the tiny tokenizer gives fewer tokens than the prompt: padded and masked out
    kw = seen["kw"]  # the unet batch is [negative; positive]
    t5, mask, gpt2 = kw["encoder_hidden_states_1"], kw["encoder_attention_mask_1"], kw["encoder_hidden_states"]
    assert torch.equal(t5[0, :n], neg_pe[0]) and not t5[0, n:].any()
    assert mask[0].tolist() == neg_mask[0].tolist() + [0] * (12 - n)
    assert torch.equal(gpt2[0], neg_ge[0])
    assert torch.equal(t5[1], cond.embeds["prompt_embeds"][0])
    assert mask[1].tolist() == [1] * 10 + [0] * 2


def test_empty_negative_prompt_is_the_encoded_empty_string(
    decoder: AudioLDM2Decoder, cond: Conditioning, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As diffusers does for negative_prompt=None: the null condition is the encoding of "", not zeros."""
    seen = {}
    original = decoder.pipe.unet.forward
    monkeypatch.setattr(decoder.pipe.unet, "forward",
                        lambda sample, t, **kw: seen.setdefault("kw", kw) and original(sample, t, **kw))
    out = decoder.generate(cond, fast(steps=1, negative_prompt=""))
    monkeypatch.undo()
    assert out.info["negative"] == "empty string"
    pipe = decoder.pipe
    with torch.inference_mode():  # diffusers' own negative branch, run with the positives it sees here
        t5_tokens = pipe.tokenizer_2([""], padding="max_length", max_length=12, truncation=True, return_tensors="pt")
        t5 = pipe.text_encoder_2(t5_tokens.input_ids, attention_mask=t5_tokens.attention_mask)[0]
    kw = seen["kw"]
    torch.testing.assert_close(kw["encoder_hidden_states_1"][0], t5[0])
    assert kw["encoder_attention_mask_1"][0].tolist() == t5_tokens.attention_mask[0].tolist()
    gpt2 = kw["encoder_hidden_states"][0]
    assert gpt2.abs().sum() > 0 and not torch.equal(gpt2, kw["encoder_hidden_states"][1])  # not all-zero


def test_guidance_is_applied_in_caption_mode(decoder: AudioLDM2Decoder) -> None:
    caption = Conditioning(caption=CAPTION)
    plain = decoder.generate(caption, fast(guidance_scale=1.0))
    guided = decoder.generate(caption, fast(guidance_scale=3.0))
    assert guided.info["mode"] == "caption"
    assert differ(plain.waveform, guided.waveform)


def test_a_caption_longer_than_the_tokenizers_take_is_cut_not_fatal(decoder: AudioLDM2Decoder) -> None:
    # an LLM reply used as a caption can be hundreds of tokens: the text encoders see their maximum, GPT-2 fits it
    long = " ".join([CAPTION] * 200)
    assert len(decoder.pipe.tokenizer_2(long).input_ids) > decoder.pipe.tokenizer_2.model_max_length
    assert decoder.generate(Conditioning(caption=long), fast()).waveform.shape == (4000,)


def test_caption_is_only_used_for_ranking_when_embeddings_are_given(
    decoder: AudioLDM2Decoder, cond: Conditioning
) -> None:
    with_caption = Conditioning(embeds=cond.embeds, masks=cond.masks, caption=CAPTION)
    a = decoder.generate(cond, fast())
    b = decoder.generate(with_caption, fast())
    assert b.info["mode"] == "embeddings"
    assert np.array_equal(a.waveform, b.waveform)


def clap_argmax(decoder: AudioLDM2Decoder, text: str, audio: torch.Tensor) -> int:
    """The pipeline scorer's criterion, recomputed: CLAP text-audio similarity of each candidate."""
    pipe = decoder.pipe
    assert pipe.feature_extractor.sampling_rate == decoder.sample_rate  # no resampling needed here
    text_inputs = pipe.tokenizer(text, return_tensors="pt", padding=True)
    features = pipe.feature_extractor(list(audio.numpy()), return_tensors="pt", sampling_rate=decoder.sample_rate)
    with torch.inference_mode():
        logits = pipe.text_encoder(**text_inputs, input_features=features.input_features).logits_per_text[0]
    return int(logits.argmax())


@pytest.mark.parametrize("mode", ["caption", "embeddings", "embeddings+ranking_text"])
def test_candidates_are_ranked_by_the_pipeline_scorer(
    decoder: AudioLDM2Decoder, cond: Conditioning, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    pipe = decoder.pipe
    scored = []
    original = pipe.score_waveforms

    def spy(text: str, audio: torch.Tensor, *args: object, **kw: object) -> torch.Tensor:
        scored.append((text, audio.clone()))
        return original(text, audio, *args, **kw)

    monkeypatch.setattr(pipe, "score_waveforms", spy)
    c = {"caption": Conditioning(caption=CAPTION), "embeddings": Conditioning(cond.embeds, cond.masks, CAPTION),
         "embeddings+ranking_text": Conditioning(cond.embeds, cond.masks, ranking_text=CAPTION)}[mode]
    out = decoder.generate(c, fast(candidates=3, seed=3))  # seed 3: the best candidate is not the first one
    assert len(scored) == 1
    text, candidates = scored[0]
    assert text == CAPTION and candidates.shape[0] == 3
    best = clap_argmax(decoder, CAPTION, candidates)
    assert best != 0
    assert np.array_equal(out.waveform, candidates[best, : len(out.waveform)].numpy())
    assert out.info["ranked"] is True and out.info["candidates"] == 3 and out.info["mode"] == mode.split("+")[0]


def test_candidates_without_caption_return_the_first(
    decoder: AudioLDM2Decoder, cond: Conditioning, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kw: object) -> None:
        raise AssertionError("no caption: the scorer must not run")

    monkeypatch.setattr(decoder.pipe, "score_waveforms", fail)
    out = decoder.generate(cond, fast(candidates=2))
    assert out.info["ranked"] is False
    assert "needs a ranking text or caption" in out.info["ranking"]


def test_source_audio_is_rejected(decoder: AudioLDM2Decoder, cond: Conditioning) -> None:
    source = EditSource(audio=np.zeros(16000, dtype=np.float32), sample_rate=16000)
    with pytest.raises(ValueError, match="cannot edit audio; use the musicgen_melody decoder"):
        decoder.generate(cond, fast(), source=source)


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        (fast(duration=121.0), "duration"),
        (fast(duration=0.0), "duration"),
        (fast(steps=0), "steps"),
        (fast(candidates=9), "candidates"),
        (fast(guidance_scale=0.5), "guidance_scale"),
    ],
)
def test_out_of_range_settings_raise(
    decoder: AudioLDM2Decoder, cond: Conditioning, settings: SamplingSettings, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        decoder.generate(cond, settings)


def test_bad_conditioning_raises(decoder: AudioLDM2Decoder, bare: AudioLDM2Decoder, cond: Conditioning) -> None:
    wrong = Conditioning(embeds={**cond.embeds, "prompt_embeds": torch.zeros(1, 4, 16)})
    with pytest.raises(ValueError, match=r"prompt_embeds.*\(1, N, 32\)"):
        decoder.generate(wrong, fast())
    with pytest.raises(ValueError, match="generated_prompt_embeds"):
        decoder.generate(Conditioning(embeds={"prompt_embeds": cond.embeds["prompt_embeds"]}), fast())
    with pytest.raises(ValueError, match="tokenizers"):
        bare.generate(Conditioning(caption=CAPTION), fast())
    with pytest.raises(ValueError, match="kind='audioldm2'"):
        AudioLDM2Decoder.from_config(DecoderConfig(kind="musicgen"))
    with pytest.raises(ValueError, match="no arch for 'cvssp/audioldm2-music'"):
        AudioLDM2Decoder.from_config(DecoderConfig(kind="audioldm2", source="cvssp/audioldm2-music"), weights=False)


def test_without_tokenizers_guidance_uses_zero_negatives(bare: AudioLDM2Decoder, cond: Conditioning) -> None:
    out = bare.generate(cond, fast())
    assert out.info["negative"] == "zeros (no tokenizers)"
    assert differ(out.waveform, bare.generate(cond, fast(guidance_scale=1.0)).waveform)


def test_weights_false_builds_offline(cond: Conditioning) -> None:
    cfg = DecoderConfig(kind="audioldm2", source="cvssp/audioldm2-music", arch=TINY_AUDIOLDM2_ARCH)
    tiny = AudioLDM2Decoder.from_config(cfg, weights=False)  # must not touch the network
    assert tiny.streams["prompt_embeds"] == (None, 32)
    assert tiny.generate(cond, fast()).waveform.shape == (4000,)


def test_full_arch_on_meta_counts_parameters() -> None:
    cfg = DecoderConfig(kind="audioldm2", source="cvssp/audioldm2-music", arch=AUDIOLDM2_MUSIC_ARCH)
    full = AudioLDM2Decoder.from_config(cfg, device="meta", weights=False)
    assert full.streams == {"prompt_embeds": (None, 1024), "generated_prompt_embeds": (8, 768)}
    names = ("unet", "vae", "text_encoder", "text_encoder_2", "language_model", "projection_model", "vocoder")
    counts = {n: sum(p.numel() for p in getattr(full.pipe, n).parameters()) for n in names}
    assert all(p.is_meta for p in full.pipe.unet.parameters())
    # published sizes: UNet 350M, 1.1B in total
    assert 340e6 < counts["unet"] < 360e6
    assert 1.0e9 < sum(counts.values()) < 1.15e9


def test_bare_gpt2_language_model_is_wrapped(decoder: AudioLDM2Decoder, cond: Conditioning) -> None:
    expected = decoder.generate(cond, fast()).waveform
    other = AudioLDM2Decoder.from_config(TINY)
    # transformers 5 GPT2Model has no generation helpers (diffusers #12630): the decoder must wrap it
    other.pipe.register_modules(language_model=other.pipe.language_model.transformer)
    wrapped = AudioLDM2Decoder(other.pipe, other.config)
    assert type(wrapped.pipe.language_model).__name__ == "GPT2LMHeadModel"
    assert np.array_equal(wrapped.generate(cond, fast()).waveform, expected)


def test_roberta_and_t5_tokenizer_classes_take_the_prompt_path() -> None:
    """The published pipeline's tokenizer classes get `prompt` directly (no `transcription` detour)."""
    words = ["▁a", "▁calm", "▁piano", "▁melody", "▁loud", "▁drums", "▁low", "▁quality", "."]
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(w, -1.0) for w in words]
    t5 = T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=128)
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}
    vocab |= {ch: 5 + i for i, ch in enumerate("abcdefghijklmnopqrstuvwxyzĠ.")}
    roberta = RobertaTokenizer(vocab=vocab, merges=[], model_max_length=64)  # pipeline pads CLAP input to this
    dec = AudioLDM2Decoder.from_config(BARE)
    dec.pipe.register_modules(tokenizer=roberta, tokenizer_2=t5)
    assert dec._transcription(CAPTION) is None
    calm = dec.generate(Conditioning(caption=CAPTION), fast(candidates=2))
    loud = dec.generate(Conditioning(caption="loud drums"), fast(candidates=2))
    assert calm.info["ranked"] is True
    assert differ(calm.waveform, loud.waveform)


@pytest.mark.slow
def test_save_and_load_through_source_gives_identical_audio(
    decoder: AudioLDM2Decoder, bare: AudioLDM2Decoder, cond: Conditioning, tmp_path: Path
) -> None:
    decoder.pipe.save_pretrained(tmp_path / "with_tokenizers")
    loaded = AudioLDM2Decoder.from_config(DecoderConfig(kind="audioldm2", source=str(tmp_path / "with_tokenizers")))
    settings = fast(candidates=2, seed=5)
    for c in (cond, Conditioning(caption=CAPTION)):
        assert np.array_equal(decoder.generate(c, settings).waveform, loaded.generate(c, settings).waveform)
    # saved with tokenizer=None: model_index.json lists them as [null, null], which from_pretrained needs passed
    bare.pipe.save_pretrained(tmp_path / "no_tokenizers")
    reloaded = AudioLDM2Decoder.from_config(DecoderConfig(kind="audioldm2", source=str(tmp_path / "no_tokenizers")))
    assert reloaded.pipe.tokenizer is None
    assert np.array_equal(bare.generate(cond, settings).waveform, reloaded.generate(cond, settings).waveform)
