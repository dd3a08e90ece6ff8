"""MusicGen / MusicGen-Melody decoder on tiny random models: conditioning, real CFG, seeds, edits, windows, loading."""

from __future__ import annotations

import re
from types import SimpleNamespace

import librosa
import numpy as np
import pytest
import torch
from transformers.audio_utils import chroma_filter_bank
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.musicgen_melody.feature_extraction_musicgen_melody import MusicgenMelodyFeatureExtractor

from checkpoints.sources import TINY_TOKENIZER
from generation.chroma import PITCH_CLASSES, chroma_features
from generation.config import DecoderConfig, SamplingSettings
from generation.interface import Conditioning, EditSource
from generation.musicgen import CROSSFADE_SECONDS, STREAM, MusicGenDecoder
from mumu.presets import MUSICGEN_ARCHS, MUSICGEN_CHECKPOINTS, TINY_MUSICGEN_ARCH, TINY_MUSICGEN_MELODY_ARCH

TINY_ARCHS = {"musicgen": TINY_MUSICGEN_ARCH, "musicgen_melody": TINY_MUSICGEN_MELODY_ARCH}
SR = 8000


def _build(kind: str, **cfg) -> MusicGenDecoder:
    torch.manual_seed(0)
    return MusicGenDecoder.from_config(DecoderConfig(kind=kind, tokenizer=TINY_TOKENIZER, arch=TINY_ARCHS[kind], **cfg))


@pytest.fixture(scope="module")
def musicgen() -> MusicGenDecoder:
    return _build("musicgen")


@pytest.fixture(scope="module")
def melody() -> MusicGenDecoder:
    return _build("musicgen_melody")


def _cond(seed: int = 0, tokens: int = 16) -> Conditioning:
    embeds = torch.randn(1, tokens, 32, generator=torch.Generator().manual_seed(seed))
    return Conditioning(embeds={STREAM: embeds}, masks={STREAM: torch.ones(1, tokens, dtype=torch.bool)})


def _run(decoder: MusicGenDecoder, cond: Conditioning, source: EditSource | None = None, **settings) -> np.ndarray:
    settings = {"duration": 0.5, "seed": 1, "guidance_scale": 3.0, **settings}
    return decoder.generate(cond, SamplingSettings(**settings), source).waveform


def _tone(freqs: list[float], seconds: float, sr: int) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (sum(np.sin(2 * np.pi * f * t) for f in freqs) * 0.3 / len(freqs)).astype(np.float32)


@pytest.mark.parametrize("kind", ["musicgen", "musicgen_melody"])
def test_shapes_rates_and_info(kind, musicgen, melody):
    decoder = musicgen if kind == "musicgen" else melody
    assert decoder.streams == {STREAM: (None, 32)}
    assert decoder.sample_rate == SR and decoder.frame_rate == 125
    for cond, mode in ((_cond(), "embeddings"), (Conditioning(caption="calm piano"), "caption")):
        out = decoder.generate(cond, SamplingSettings(duration=0.37, seed=3))
        assert out.waveform.dtype == np.float32 and out.waveform.shape == (round(0.37 * SR),)
        assert out.sample_rate == SR and np.isfinite(out.waveform).all()
        assert out.info["mode"] == mode and out.info["seed"] == 3 and out.info["guidance_scale"] == 3.0
        assert out.info["kind"] == kind and out.info["windows"] == 1
        assert out.info["null_condition"] == "zeros, mask 0 (as MusicGen was trained)"


def test_embeddings_win_over_caption(musicgen):
    both = _cond()
    both.caption = "loud drums"
    out = musicgen.generate(both, SamplingSettings(duration=0.3))
    assert out.info["mode"] == "embeddings"
    np.testing.assert_array_equal(out.waveform, _run(musicgen, _cond(), duration=0.3, seed=0))


def test_seed_determinism_sensitivity_and_global_rng(musicgen):
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a, b = _run(musicgen, _cond(), seed=7), _run(musicgen, _cond(), seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)  # caller's RNG untouched
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, _run(musicgen, _cond(), seed=8))
    assert not np.array_equal(a, _run(musicgen, _cond(seed=1), seed=7))  # the embeddings steer the music


@pytest.mark.parametrize("kind", ["musicgen", "musicgen_melody"])
@pytest.mark.parametrize("mode", ["embeddings", "caption"])
def test_guidance_scale_changes_output(kind, mode, musicgen, melody):
    decoder = musicgen if kind == "musicgen" else melody
    cond = _cond() if mode == "embeddings" else Conditioning(caption="an upbeat jazz tune")
    assert not np.array_equal(_run(decoder, cond, guidance_scale=1.0), _run(decoder, cond, guidance_scale=4.0))


def test_guidance_one_is_plain_conditional_sampling(musicgen):
    cond = _cond()
    ours = _run(musicgen, cond, guidance_scale=1.0, duration=0.4)
    model = musicgen.model
    torch.manual_seed(1)
    with torch.inference_mode():
        stock = model.generate(encoder_outputs=BaseModelOutput(last_hidden_state=cond.embeds[STREAM]),
                               attention_mask=torch.ones(1, 16, dtype=torch.long), do_sample=True, top_k=250,
                               max_new_tokens=50 + 3)
    np.testing.assert_array_equal(ours, stock[0, 0].numpy()[: len(ours)])  # one window, decoded as stock does


@pytest.mark.parametrize("kind", ["musicgen", "musicgen_melody"])
def test_uncond_half_is_the_trained_null(kind, musicgen, melody):
    """CFG combines cond and null logits: conditioning on the null itself makes the guidance scale irrelevant."""
    decoder = musicgen if kind == "musicgen" else melody
    zeros = torch.zeros(1, 5, decoder.streams[STREAM][1])
    null = Conditioning(embeds={STREAM: zeros}, masks={STREAM: torch.zeros(1, 5, dtype=torch.bool)})
    at_one = _run(decoder, null, guidance_scale=1.0)
    np.testing.assert_array_equal(at_one, _run(decoder, null, guidance_scale=5.0))
    assert not np.array_equal(_run(decoder, _cond(), guidance_scale=1.0), _run(decoder, _cond(), guidance_scale=5.0))


@pytest.mark.parametrize("mode", ["embeddings", "caption"])
def test_decoder_sees_cond_and_null_rows(mode, musicgen):
    """What reaches enc_to_dec_proj under CFG: row 0 the condition, row 1 the null (zeros, as in training)."""
    seen = []
    hook = musicgen.model.enc_to_dec_proj.register_forward_hook(lambda m, args, out: seen.append(args[0].clone()))
    cond = _cond() if mode == "embeddings" else Conditioning(caption="a sad violin")
    try:
        _run(musicgen, cond, duration=0.1)
    finally:
        hook.remove()
    states = seen[0]
    assert states.shape[0] == 2
    if mode == "embeddings":
        torch.testing.assert_close(states[0], cond.embeds[STREAM][0])
    assert states[0].abs().sum() > 0
    assert not states[1].any()


def test_melody_changes_output(melody):
    tune = _tone([440.0], 1.0, 16000)
    plain = _run(melody, _cond())
    with_melody = melody.generate(_cond(), SamplingSettings(duration=0.5, seed=1), EditSource(tune, 16000, "melody"))
    assert with_melody.info["melody"] is True
    assert not np.array_equal(plain, with_melody.waveform)
    other = _run(melody, _cond(), EditSource(_tone([261.63], 1.0, 16000), 16000, "melody"))
    assert not np.array_equal(with_melody.waveform, other)


def test_melody_mode_needs_the_melody_decoder(musicgen):
    with pytest.raises(ValueError, match=r"musicgen_melody.*continue"):
        _run(musicgen, _cond(), EditSource(_tone([440.0], 1.0, SR), SR, "melody"))


def test_chroma_of_a_tone_and_a_triad():
    a = chroma_features(_tone([440.0], 2.0, 32000), 32000)
    assert a.shape == (1 + 64000 // 4096, 12) and set(a.sum(axis=1)) == {1.0}
    assert {PITCH_CLASSES[i] for i in a.argmax(axis=1)} == {"A"}
    triad = _tone([261.63, 329.63, 392.00], 2.0, 32000)
    raw = chroma_features(triad, 32000, one_hot=False)
    for frame in raw[1:-1]:  # edge frames see the reflect padding
        assert {PITCH_CLASSES[i] for i in np.argsort(frame)[-3:]} == {"C", "E", "G"}
    assert {PITCH_CLASSES[i] for i in chroma_features(triad, 32000).argmax(axis=1)} <= {"C", "E", "G"}


@pytest.mark.parametrize("seconds", [0.25, 3.1])
def test_chroma_matches_the_transformers_extractor(seconds):
    """Run MusicgenMelodyFeatureExtractor's own chroma code, with torch.stft standing in for torchaudio."""
    n_fft, hop = 16384, 4096
    window = torch.hann_window(n_fft)

    def spectrogram(wav):  # torchaudio.transforms.Spectrogram(power=2, normalized=True, center=True)
        spec = torch.stft(wav, n_fft, hop, n_fft, window, center=True, pad_mode="reflect", return_complex=True)
        return (spec / window.pow(2).sum().sqrt()).abs().pow(2)

    fake = SimpleNamespace(n_fft=n_fft, spectrogram=spectrogram, chroma_filters=torch.from_numpy(
        chroma_filter_bank(sampling_rate=32000, num_frequency_bins=n_fft, tuning=0, num_chroma=12)).float())
    wav = _tone([440.0, 293.66], seconds, 32000) + np.random.default_rng(0).normal(0, 0.01, int(seconds * 32000))
    wav = wav.astype(np.float32)
    expected = MusicgenMelodyFeatureExtractor._torch_extract_fbank_features(fake, torch.from_numpy(wav)[None])
    np.testing.assert_array_equal(chroma_features(wav, 32000), expected[0].numpy())


def test_continuation_starts_with_the_source_and_fades_into_the_codec(musicgen, monkeypatch):
    source = _tone([330.0], 0.5, 16000)
    encoded, rendered = [], []
    encode, decode = musicgen._encode, musicgen._decode
    monkeypatch.setattr(musicgen, "_encode", lambda wav: encoded.append(wav) or encode(wav))
    monkeypatch.setattr(musicgen, "_decode", lambda codes: rendered.append(decode(codes)) or rendered[-1])
    out = musicgen.generate(_cond(), SamplingSettings(duration=1.0, seed=2), EditSource(source, 16000, "continue"))
    expected = librosa.resample(source, orig_sr=16000, target_sr=SR)
    kept = len(expected) // musicgen.hop * musicgen.hop
    assert len(encoded) == 1 and len(encoded[0]) == kept  # the source is encoded once
    assert out.waveform.shape == (SR,) and out.info["source_seconds"] == kept / SR
    fade = round(CROSSFADE_SECONDS * SR)
    assert CROSSFADE_SECONDS >= 0.1
    np.testing.assert_allclose(out.waveform[: kept - fade], expected[: kept - fade], atol=1e-6)
    # the last 100 ms of the source blend linearly into the codec's audio: the weight of the source falls 1 -> 0
    codec = rendered[0][kept - fade : kept]
    blend = out.waveform[kept - fade : kept]
    usable = np.abs(expected[kept - fade : kept] - codec) > 1e-2
    weight = (blend - codec)[usable] / (expected[kept - fade : kept] - codec)[usable]
    ramp = 1 - np.arange(1, fade + 1) / (fade + 1)
    np.testing.assert_allclose(weight, ramp[usable], atol=1e-3)
    np.testing.assert_array_equal(out.waveform[kept:], rendered[0][kept:SR])  # then the codec's audio, as decoded
    with pytest.raises(ValueError, match="continue needs a source"):
        _run(musicgen, _cond(), EditSource(source, 16000, "continue"), duration=0.4)


def _spy_windows(decoder, monkeypatch):
    """Record each window's prompt codes and the codes its generate call returned (of the first row)."""
    calls = []
    original = decoder._generate_codes

    def spy(text, settings, prompt, new, chroma, generators):
        out = original(text, settings, prompt, new, chroma, generators)
        calls.append((prompt[0].clone(), new, out[0].clone()))
        return out

    monkeypatch.setattr(decoder, "_generate_codes", spy)
    decoded = []
    decode = decoder._decode
    monkeypatch.setattr(decoder, "_decode", lambda codes: decoded.append(codes) or decode(codes))
    return calls, decoded


@pytest.mark.parametrize("kind", ["musicgen", "musicgen_melody"])
def test_windows_prompt_with_their_own_codes_and_decode_once(kind, monkeypatch):
    decoder = _build(kind, window_seconds=0.5, overlap_seconds=0.2)
    calls, decoded = _spy_windows(decoder, monkeypatch)
    out = decoder.generate(_cond(), SamplingSettings(duration=1.2, seed=4))
    assert out.waveform.shape == (round(1.2 * SR),) and out.info["windows"] == 4
    # 125 frames/s: windows of 62 frames, prompts of the last 25, 150 frames in all.
    assert [(p.shape[-1], n) for p, n, _ in calls] == [(0, 62), (25, 37), (25, 37), (25, 14)]
    assert len(decoded) == 1 and decoded[0].shape == (4, 150)
    codes, pos = decoded[0], 0
    for prompt, new, window in calls:
        torch.testing.assert_close(window[:, : prompt.shape[-1]], prompt, rtol=0, atol=0)  # prompt kept verbatim
        torch.testing.assert_close(prompt, codes[:, pos - prompt.shape[-1] : pos], rtol=0, atol=0)
        torch.testing.assert_close(window[:, prompt.shape[-1] :], codes[:, pos : pos + new], rtol=0, atol=0)
        pos += new
    np.testing.assert_allclose(out.waveform, decoder._decode(codes)[: len(out.waveform)], atol=1e-6)


def test_codec_overshoot_is_not_clipped(musicgen, monkeypatch):
    decode = musicgen._decode
    monkeypatch.setattr(musicgen, "_decode", lambda codes: 20 * decode(codes))
    out = _run(musicgen, _cond(), duration=0.3)
    assert np.abs(out).max() > 1.0 and len(np.unique(np.round(np.abs(out), 6))) > 0.9 * len(out)  # no flat tops


@pytest.mark.slow
def test_seventy_seconds_join_seamlessly_and_match_one_uninterrupted_run(monkeypatch):
    """70 s in five windows (20 s, prompts of 5 s): no seam is a larger step than the signal's own largest step, and
    the first window's codes are those of one uninterrupted 20 s generation with the same seed."""
    decoder = _build("musicgen", window_seconds=20.0, overlap_seconds=5.0)
    calls, decoded = _spy_windows(decoder, monkeypatch)
    out = decoder.generate(_cond(), SamplingSettings(duration=70.0, seed=5)).waveform
    assert out.shape == (70 * SR,) and len(calls) == 5 and len(decoded) == 1
    codes = decoded[0]
    steps = np.abs(np.diff(out))
    seams, pos = [], 0
    for prompt, new, window in calls:
        torch.testing.assert_close(window[:, : prompt.shape[-1]], prompt, rtol=0, atol=0)
        pos += new
        seams.append(pos * decoder.hop)
    interior = np.ones(len(steps), bool)
    for seam in seams[:-1]:
        interior[seam - 200 : seam + 200] = False  # 25 ms either side of each window boundary
    largest_own_step = steps[interior].max()
    for seam in seams[:-1]:
        assert steps[seam - 200 : seam + 200].max() <= largest_own_step
    # one uninterrupted generation: the same seed, one window of the same 2500 frames
    single = _build("musicgen", window_seconds=20.0, overlap_seconds=5.0)
    _, single_decoded = _spy_windows(single, monkeypatch)
    single.generate(_cond(), SamplingSettings(duration=20.0, seed=5))
    alone = single_decoded[0]
    k = alone.shape[0]
    # the delay pattern pads codebook k of the last k frames of a window, so all codebooks agree up to K-1 frames
    # before its end and codebook 0 all the way
    torch.testing.assert_close(codes[:, : 2500 - (k - 1)], alone[:, : 2500 - (k - 1)], rtol=0, atol=0)
    torch.testing.assert_close(codes[0, :2500], alone[0], rtol=0, atol=0)


def test_stereo_checkpoints_are_refused_at_load():
    arch = {**TINY_MUSICGEN_ARCH, "decoder": {**TINY_MUSICGEN_ARCH["decoder"], "audio_channels": 2, "num_codebooks": 8}}
    with pytest.raises(ValueError, match=r"stereo MusicGen checkpoints \(audio_channels=2.*mono checkpoint"):
        MusicGenDecoder.from_config(DecoderConfig(kind="musicgen", arch=arch))


def test_out_of_range_settings_raise_the_validate_message(musicgen):
    for bad in (SamplingSettings(duration=500.0), SamplingSettings(guidance_scale=0.5), SamplingSettings(top_p=2.0)):
        with pytest.raises(ValueError, match="is out of range") as expected:
            bad.validate(musicgen.config.max_duration)
        with pytest.raises(ValueError, match=re.escape(str(expected.value))):
            musicgen.generate(_cond(), bad)


def test_bad_conditioning_raises(musicgen):
    with pytest.raises(ValueError, match="non-empty caption"):
        musicgen.generate(Conditioning(), SamplingSettings(duration=0.2))
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        musicgen.generate(Conditioning(embeds={"prompt_embeds": torch.zeros(1, 2, 32)}), SamplingSettings())
    with pytest.raises(ValueError, match=re.escape("must be (1, N, 32), got (1, 2, 768)")):
        musicgen.generate(Conditioning(embeds={STREAM: torch.zeros(1, 2, 768)}), SamplingSettings())


def test_config_errors():
    with pytest.raises(ValueError, match="overlap_seconds < window_seconds"):
        MusicGenDecoder.from_config(DecoderConfig(window_seconds=5.0, overlap_seconds=5.0))
    with pytest.raises(ValueError, match="not 'audioldm2'"):
        MusicGenDecoder.from_config(DecoderConfig(kind="audioldm2"))


def test_a_config_with_neither_source_nor_arch_is_refused():
    with pytest.raises(ValueError, match=r"no arch for 'musicgen_melody': set DecoderConfig\.arch"):
        MusicGenDecoder.from_config(DecoderConfig(kind="musicgen_melody"))


def test_a_weightless_build_of_a_source_reads_only_its_config(tmp_path):
    from transformers import MusicgenConfig

    MusicgenConfig(**TINY_MUSICGEN_ARCH).save_pretrained(tmp_path)  # config.json only: no weights to read
    decoder = MusicGenDecoder.from_config(DecoderConfig(source=str(tmp_path), tokenizer=TINY_TOKENIZER), weights=False)
    assert decoder.model.config.decoder.hidden_size == TINY_MUSICGEN_ARCH["decoder"]["hidden_size"]


@pytest.mark.parametrize("kind", ["musicgen", "musicgen_melody"])
def test_save_and_load_through_source(kind, tmp_path, musicgen, melody):
    decoder = musicgen if kind == "musicgen" else melody
    decoder.model.save_pretrained(tmp_path)
    decoder.tokenizer.save_pretrained(tmp_path)
    loaded = MusicGenDecoder.from_config(DecoderConfig(kind=kind, source=str(tmp_path), separator=None))
    assert loaded.name == str(tmp_path)
    for cond in (_cond(), Conditioning(caption="a folk song")):
        np.testing.assert_array_equal(_run(loaded, cond), _run(decoder, cond))
    arch_only = MusicGenDecoder.from_config(DecoderConfig(kind=kind, source=str(tmp_path), separator=None),
                                            weights=False)
    assert arch_only.tokenizer is not None and arch_only.name.endswith("(random init)")
    assert arch_only.model.num_parameters() == decoder.model.num_parameters()


@pytest.mark.parametrize(("preset", "total", "lm"), [
    ("small", 586_884_674, 419_584_000),
    ("medium", 2_005_251_138, 1_837_556_736),
    ("large", 3_423_470_146, 3_255_382_016),
    ("melody", 1_552_138_818, 1_384_424_448),
])
def test_full_presets_build_on_meta_without_weights(preset, total, lm):
    kind = "musicgen_melody" if preset == "melody" else "musicgen"
    cfg = DecoderConfig(kind=kind, source=MUSICGEN_CHECKPOINTS[preset], arch=MUSICGEN_ARCHS[preset])
    decoder = MusicGenDecoder.from_config(cfg, device="meta", weights=False)
    model = decoder.model
    assert model.device.type == "meta" and decoder.tokenizer is None  # nothing fetched
    assert decoder.streams == {STREAM: (None, 768)} and decoder.sample_rate == 32000 and decoder.frame_rate == 50
    assert model.config.audio_encoder.num_quantizers == model.decoder.num_codebooks == 4
    assert sum(p.numel() for p in model.parameters()) == total
    assert sum(p.numel() for p in model.decoder.parameters()) == lm
    assert sum(p.numel() for p in model.text_encoder.parameters()) == 109_628_544  # T5-base encoder
    assert sum(p.numel() for p in model.audio_encoder.parameters()) == 56_884_674  # EnCodec 32 kHz
    assert decoder.name == f"{MUSICGEN_CHECKPOINTS[preset]} (random init)"


def _rows_per_call(decoder, monkeypatch) -> list[int]:
    """Record how many rows each window's generate call sampled."""
    rows = []
    original = decoder._generate_codes

    def spy(text, settings, prompt, *rest):
        rows.append(prompt.shape[0])
        return original(text, settings, prompt, *rest)

    monkeypatch.setattr(decoder, "_generate_codes", spy)
    return rows


def _batch_conds(mode: str) -> list[Conditioning]:
    if mode == "embeddings":
        return [_cond(seed) for seed in range(3)]
    return [Conditioning(caption=c) for c in ("calm piano", "loud drums and a fast bass line at night", "rain")]


@pytest.mark.parametrize(("kind", "mode"), [("musicgen", "embeddings"), ("musicgen", "caption"),
                                            ("musicgen_melody", "embeddings")])
@pytest.mark.parametrize("sampling", [{}, {"temperature": 0.7, "top_p": 0.9, "top_k": 50}])
def test_a_batch_gives_each_row_exactly_what_it_makes_alone(kind, mode, sampling, monkeypatch):
    """Three rows with their own seeds (and captions of different lengths), CFG on, over two windows."""
    decoder = _build(kind, window_seconds=0.5, overlap_seconds=0.2)
    conds = _batch_conds(mode)
    settings = [SamplingSettings(duration=0.7, seed=seed, guidance_scale=3.0, **sampling) for seed in (7, 8, 9)]
    alone = [decoder.generate(c, s) for c, s in zip(conds, settings, strict=True)]
    rows = _rows_per_call(decoder, monkeypatch)
    together = decoder.generate_batch(conds, settings, [None] * 3)
    assert rows == [3, 3]  # both windows sampled the three rows as one batch
    for one, row in zip(alone, together, strict=True):
        assert np.array_equal(row.waveform, one.waveform)  # bit for bit
        assert row.info == {**one.info, "windows": 2}
    assert not np.array_equal(together[0].waveform, together[1].waveform)  # the seeds differ, so do the rows


def test_rows_that_may_not_share_a_batch_are_made_one_by_one(melody, musicgen, monkeypatch):
    captions = [Conditioning(caption="calm piano"), Conditioning(caption="loud drums")]
    cases = [(melody, captions, [SamplingSettings(duration=0.3, seed=s) for s in (1, 2)], [None, None]),
             (musicgen, [_cond(), _cond(1)], [SamplingSettings(duration=0.3), SamplingSettings(duration=0.4)],
              [None, None]),
             (musicgen, [_cond(), _cond(1)], [SamplingSettings(duration=0.4)] * 2,
              [EditSource(_tone([220], 0.1, SR), SR, "continue"), None])]
    for decoder, conds, settings, sources in cases:
        alone = [decoder.generate(c, s, src).waveform for c, s, src in zip(conds, settings, sources, strict=True)]
        rows = _rows_per_call(decoder, monkeypatch)
        together = decoder.generate_batch(conds, settings, sources)
        monkeypatch.undo()
        assert rows == [1, 1]
        for one, row in zip(alone, together, strict=True):
            assert np.array_equal(row.waveform, one)
