"""MusicGen and MusicGen-Melody (transformers) behind MusicDecoder: projector embeddings or a caption -> waveform.

Null condition for classifier-free guidance: what MusicGen was trained with (audiocraft nulls a text by masking it to
zeros) and what transformers builds for text prompts (MusicgenForConditionalGeneration.
_prepare_text_encoder_kwargs_for_generation): zero states with attention mask 0; MusicGen-Melody's null melody is the
one-hot chroma of silence. Caption mode leaves all of it to the stock `generate`; in embedding mode this module
stacks that same null under the projector states (see _embedding_states), because stock `generate` only adds its
null half when it runs the text encoder itself.

Long outputs are made as audiocraft's MusicGen.generate does with extend_stride: windows of codes, each prompted with
the last overlap_seconds of the codes generated so far (never with re-encoded audio), and the whole code sequence
decoded once at the end, so no window edge of the codec's decoder reaches the output.

Batches (generate_batch, for rows that share everything but the seed): the rows' states are stacked [rows; nulls],
as stock generate lays out its classifier-free guidance, and _RowSampler samples each row from its own generator
seeded with its seed, doing per row exactly what a one-row call does with the global RNG seeded the same; each row's
codes are then decoded alone. So each row is bit for bit its one-row result (tests/generation/test_musicgen.py, on
CPU; per-row CUDA generators follow the same seeding but were not checked on a GPU here).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import torch
from transformers import (
    AutoTokenizer,
    ClassifierFreeGuidanceLogitsProcessor,
    LogitsProcessor,
    LogitsProcessorList,
    MusicgenConfig,
    MusicgenForConditionalGeneration,
    MusicgenMelodyConfig,
    MusicgenMelodyForConditionalGeneration,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.encodec.modeling_encodec import EncodecDecoderOutput

from checkpoints.sources import resolve_source
from generation.chroma import chroma_features, stft_params
from generation.config import DecoderConfig, SamplingSettings
from generation.interface import Conditioning, DecodedAudio, EditSource, MusicDecoder
from generation.registry import batch_key
from generation.separation import MELODY_STEMS, StemSeparator, load_separator

STREAM = "encoder_hidden_states"
CROSSFADE_SECONDS = 0.1  # a continued source fades into the codec's audio over its last 100 ms
_CLASSES = {"musicgen": (MusicgenConfig, MusicgenForConditionalGeneration),
            "musicgen_melody": (MusicgenMelodyConfig, MusicgenMelodyForConditionalGeneration)}


class _DropSpecialIdWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "integer within the vocabulary" not in record.getMessage()


@contextmanager
def _quiet_special_ids() -> Iterator[None]:
    """Hide transformers' generic sub-config warning about MusicGen's pad/BOS id.

    That id is the codebook size (one past the last code) by design, which MusicGen's own config check accepts;
    the generic check on the decoder sub-config flags it at every build, including the released checkpoints.
    """
    loggers = [logging.getLogger(name) for name in ("transformers.configuration_utils",
                                                     "transformers.models.musicgen.configuration_musicgen",
                                                     "transformers.models.musicgen_melody.configuration_musicgen_melody")]
    drop = _DropSpecialIdWarning()
    for log in loggers:
        log.addFilter(drop)
    try:
        yield
    finally:
        for log in loggers:
            log.removeFilter(drop)


class MusicGenDecoder(MusicDecoder):
    """MusicGen / MusicGen-Melody conditioned on projector embeddings (T5 width) or a caption, with real CFG.

    Outputs longer than config.window_seconds are made window by window of codes, each prompted with the last
    config.overlap_seconds of codes so far, and decoded once. EditSource 'continue' encodes the source (mono,
    resampled, cut to whole codec frames) once as the first codes and keeps the source itself as the start of the
    output, fading into the codec's audio over its last CROSSFADE_SECONDS; `duration` includes it. 'melody'
    (musicgen_melody only) conditions every window on the chroma of the source's vocals and other stems
    (config.separator; the full mix, noted in info, without one), looped as audiocraft does. Settings steps,
    candidates and negative_prompt do not apply to MusicGen and are ignored. Mono checkpoints only: a stereo one is
    refused when it is built.
    """

    def __init__(self, model: MusicgenForConditionalGeneration | MusicgenMelodyForConditionalGeneration,
                 tokenizer: Any, config: DecoderConfig, name: str, separator: StemSeparator | None = None,
                 separator_note: str | None = None) -> None:
        channels = model.config.decoder.audio_channels
        if channels != 1:
            raise ValueError(f"{name}: stereo MusicGen checkpoints (audio_channels={channels}, e.g. "
                             "facebook/musicgen-stereo-*) are not supported; the pipeline delivers mono tracks, so use "
                             "a mono checkpoint (musicgen-small/medium/large/melody)")
        self.model = model.eval().requires_grad_(False)  # inference only: a frozen decoder
        self.tokenizer = tokenizer
        self.config = config
        self.name = name
        self.melody = config.kind == "musicgen_melody"
        self.separator, self.separator_note = separator, separator_note
        codec = model.config.audio_encoder
        self.hop = codec.hop_length
        self.frame_rate = codec.sampling_rate / self.hop

    @classmethod
    def from_config(cls, cfg: DecoderConfig, device: str | torch.device | None = None,
                    dtype: torch.dtype | None = None, weights: bool = True) -> MusicGenDecoder:
        """Load cfg.source (dir or Hub id) or, with no source or weights=False, random-init cfg.arch (or a dir's)."""
        if cfg.kind not in _CLASSES:
            raise ValueError(f"MusicGenDecoder serves musicgen and musicgen_melody, not {cfg.kind!r}")
        if not 0 <= cfg.overlap_seconds < cfg.window_seconds:
            raise ValueError(f"need 0 <= overlap_seconds < window_seconds, got {cfg.overlap_seconds}, "
                             f"{cfg.window_seconds}")
        with _quiet_special_ids():
            config_class, model_class = _CLASSES[cfg.kind]
            source = cfg.source and resolve_source(cfg.source)
            tokenizer_source = cfg.tokenizer and resolve_source(cfg.tokenizer)
            if source and weights:
                model = model_class.from_pretrained(source, **({"dtype": dtype} if dtype else {}))
                tokenizer_source = tokenizer_source or source
            else:
                if cfg.arch:
                    config = config_class(**cfg.arch)
                elif source:  # a folder or a Hub id: its config.json alone (a weightless build downloads no weights)
                    config = config_class.from_pretrained(source)
                else:
                    raise ValueError(f"no arch for {cfg.source or cfg.kind!r}: set DecoderConfig.arch to build it "
                                     "without weights")
                with torch.device(device or "cpu"):
                    model = model_class(config)
                # EnCodec starts with all-zero codebooks (training fills them by k-means), so every code would decode
                # to the same sound and every encode to code 0: give the random codec random codebooks.
                with torch.no_grad():
                    for layer in model.audio_encoder.quantizer.layers:
                        layer.codebook.embed.normal_()
                start = model.config.decoder.vocab_size  # MusicGen's pad/BOS is the id just past the codebook
                gen = model.generation_config
                gen.pad_token_id = gen.bos_token_id = gen.decoder_start_token_id = start
                tokenizer_source = tokenizer_source or (source if source and Path(source).is_dir() else None)
        model = model.to(device=device, dtype=dtype)
        # Without weights only local tokenizers are read, so an arch-only build never touches the network.
        load_tokenizer = tokenizer_source and (weights or Path(tokenizer_source).is_dir())
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_source) if load_tokenizer else None
        name = cfg.source if source and weights else f"{cfg.source or cfg.kind} (random init)"
        separator = note = None
        if cfg.kind == "musicgen_melody":
            separator, note = load_separator(cfg.separator, pretrained=bool(source and weights), device=device)
        return cls(model, tokenizer, cfg, name=name, separator=separator, separator_note=note)

    @property
    def sample_rate(self) -> int:
        """The audio codec's rate: 32 kHz for the released models."""
        return int(self.model.config.audio_encoder.sampling_rate)

    @property
    def components(self) -> dict[str, torch.nn.Module]:
        """Text encoder, audio codec and the language model over codes (with its projections)."""
        model = self.model
        lm = {name: module for name, module in model.named_children() if name not in ("text_encoder", "audio_encoder")}
        return {"text_encoder": model.text_encoder, "audio_codec": model.audio_encoder,
                "decoder": torch.nn.ModuleDict(lm)}

    @property
    def streams(self) -> dict[str, tuple[int | None, int]]:
        """One stream in the text-encoder width; MusicGen's own enc_to_dec_proj maps it to the decoder width."""
        return {STREAM: (None, int(self.model.config.text_encoder.d_model))}

    def text_targets(self, captions: list[str]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """T5 states of each caption (what MusicGen's cross-attention reads) and their token masks."""
        if self.tokenizer is None:
            raise ValueError("text targets need the decoder's tokenizer: set DecoderConfig.tokenizer or a source")
        rows = []
        with torch.inference_mode():
            # one caption at a time: no pad token needed, and each caption's states are exactly its own
            for caption in captions:
                ids = self.tokenizer(caption, return_tensors="pt", truncation=True,
                                     max_length=self.config.max_text_tokens).input_ids.to(self.model.device)
                rows.append(self.model.text_encoder(input_ids=ids).last_hidden_state[0].float())
        states = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
        mask = torch.arange(states.shape[1])[None] < torch.tensor([len(r) for r in rows])[:, None]
        return {STREAM: states}, {STREAM: mask.to(states.device)}

    def generate(
        self, cond: Conditioning, settings: SamplingSettings, source: EditSource | None = None
    ) -> DecodedAudio:
        """Sample `duration` seconds. Embeddings win over a caption when both are given."""
        settings.validate(self.config.max_duration)
        self._check(cond)
        melody = prompt = None
        if source is not None:
            wav = self._source_audio(source)
            if source.mode == "melody":
                if not self.melody:
                    raise ValueError("melody conditioning needs the musicgen_melody decoder; with musicgen use "
                                     "mode='continue' to extend the audio instead")
                melody = wav if self.separator is None else self.separator.melody(wav, self.sample_rate)
            elif source.mode == "continue":
                prompt = wav[: len(wav) // self.hop * self.hop]  # whole codec frames, so the codes cover it exactly
                if len(prompt) == 0 or len(prompt) >= settings.duration * self.sample_rate:
                    raise ValueError(f"continue needs a source between {self.hop / self.sample_rate:g} s and the "
                                     f"duration ({settings.duration:g} s), got {len(wav) / self.sample_rate:.3f} s")
            else:
                raise ValueError(f"unknown edit mode {source.mode!r}: expected 'melody' or 'continue'")
        with self._sampling():
            torch.manual_seed(settings.seed)
            if cond.mode == "embeddings":
                text = self._with_null([self._embedding_rows(cond)], settings.guidance_scale)
            else:
                text = self._caption(cond)
            codes = None if prompt is None else self._encode(prompt)[None]
            codes, windows = self._windows(text, settings, codes, melody)
            audio = self._decode(codes[0])[: round(settings.duration * self.sample_rate)]
        if prompt is not None:
            audio = self._fade_in_from(prompt, audio)
        info = self._info(cond, settings, windows)
        info["source_seconds"] = 0.0 if prompt is None else len(prompt) / self.sample_rate
        info["melody"] = melody is not None
        if melody is not None:
            stems = "+".join(MELODY_STEMS)
            info["melody_from"] = f"{stems} stems ({self.separator.name})" if self.separator else "full mix"
            if self.separator is None:
                info["notes"] = [self.separator_note]
        # Not clipped: the codec may overshoot full scale a little, and delivery levelling (media.levelling) limits it.
        return DecodedAudio(audio.astype(np.float32), self.sample_rate, info)

    def generate_batch(
        self, conds: Sequence[Conditioning], settings: Sequence[SamplingSettings],
        sources: Sequence[EditSource | None],
    ) -> list[DecodedAudio]:
        """Rows that may share a batch (generation.registry.batch_key) are sampled together, each from a generator
        seeded with its own seed, so each gets bit for bit what `generate` makes of it alone; others one by one."""
        keys = {batch_key(self.config.kind, c, s, src) for c, s, src in zip(conds, settings, sources, strict=True)}
        if len(conds) < 2 or len(keys) != 1 or None in keys:
            return super().generate_batch(conds, settings, sources)
        shared = settings[0].validate(self.config.max_duration)
        for cond in conds:
            self._check(cond)
        with self._sampling():
            rows = [self._embedding_rows(c) if c.mode == "embeddings" else self._caption_rows(c) for c in conds]
            text = self._with_null(rows, shared.guidance_scale)
            generators = [torch.Generator(self.model.device).manual_seed(s.seed) for s in settings]
            codes, windows = self._windows(text, shared, None, None, generators)
            audio = [self._decode(row)[: round(shared.duration * self.sample_rate)] for row in codes]
        return [DecodedAudio(wave.astype(np.float32), self.sample_rate,
                             {**self._info(c, s, windows), "source_seconds": 0.0, "melody": False})
                for wave, c, s in zip(audio, conds, settings, strict=True)]

    def _check(self, cond: Conditioning) -> None:
        cond.check()
        if cond.mode == "embeddings" and STREAM not in cond.embeds:
            raise ValueError(f"MusicGen reads the {STREAM!r} stream, got {sorted(cond.embeds)}")

    @contextmanager
    def _sampling(self) -> Iterator[None]:
        """No autograd, and the caller's global RNG left as it was (the one-row path seeds it for its sampling; stock
        sampling draws from it in a batch too, from one-hot probabilities)."""
        device = self.model.device
        with torch.inference_mode(), torch.random.fork_rng(devices=[device.index] if device.type == "cuda" else []):
            yield

    def _info(self, cond: Conditioning, settings: SamplingSettings, windows: int) -> dict[str, Any]:
        info = {"decoder": self.name, "kind": self.config.kind, "mode": cond.mode, "seed": settings.seed,
                "guidance_scale": settings.guidance_scale, "temperature": settings.temperature,
                "top_k": settings.top_k, "top_p": settings.top_p, "windows": windows}
        if settings.guidance_scale > 1:
            info["null_condition"] = "zeros, mask 0 (as MusicGen was trained)"
        return info

    def _source_audio(self, source: EditSource) -> np.ndarray:
        wav = np.asarray(source.audio, dtype=np.float32)
        if wav.ndim == 2:  # (channels, samples) or (samples, channels): average the shorter axis
            wav = wav.mean(axis=int(wav.shape[0] > wav.shape[1]))
        if wav.ndim != 1 or wav.size == 0:
            raise ValueError(f"source audio must be non-empty mono or multichannel, got shape {np.shape(source.audio)}")
        if source.sample_rate != self.sample_rate:
            wav = librosa.resample(wav, orig_sr=source.sample_rate, target_sr=self.sample_rate)
        return wav.astype(np.float32)

    def _caption(self, cond: Conditioning) -> dict[str, torch.Tensor]:
        if self.tokenizer is None:
            raise ValueError("caption mode needs a tokenizer: set DecoderConfig.tokenizer or load from a source")
        tokens = self.tokenizer(cond.caption, return_tensors="pt")
        return {"input_ids": tokens.input_ids.to(self.model.device),
                "attention_mask": tokens.attention_mask.to(self.model.device)}

    def _caption_rows(self, cond: Conditioning) -> tuple[torch.Tensor, torch.Tensor]:
        """The caption's text-encoder states and mask, computed alone as stock `generate` computes them for one row."""
        tokens = self._caption(cond)
        states = self.model.text_encoder(**tokens).last_hidden_state
        return states, tokens["attention_mask"]

    @staticmethod
    def _null_states(embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """MusicGen's 'no condition' as it was trained: the empty prompt's states are zeros, fully masked."""
        return torch.zeros_like(embeds), torch.zeros(embeds.shape[:2], dtype=torch.long, device=embeds.device)

    def _embedding_rows(self, cond: Conditioning) -> tuple[torch.Tensor, torch.Tensor]:
        """The projector's (1, N, W) states on the decoder, and their (1, N) mask."""
        embeds = cond.embeds[STREAM].to(device=self.model.device, dtype=self.model.dtype)
        width = self.streams[STREAM][1]
        if embeds.ndim != 3 or embeds.shape[0] != 1 or embeds.shape[2] != width:
            raise ValueError(f"{STREAM} must be (1, N, {width}), got {tuple(embeds.shape)}")
        mask = cond.masks.get(STREAM)
        mask = torch.ones(embeds.shape[:2], dtype=torch.long) if mask is None else mask.long()
        return embeds, mask.to(self.model.device)

    def _with_null(self, rows: list[tuple[torch.Tensor, torch.Tensor]], guidance: float) -> dict[str, torch.Tensor]:
        """The rows' states (padded to one length, the padding masked) and, when guiding, the null condition of each
        below them: [rows; nulls], the layout stock `generate` gives its classifier-free guidance."""
        length = max(states.shape[1] for states, _ in rows)
        rows = [(torch.nn.functional.pad(s, (0, 0, 0, length - s.shape[1])),
                 torch.nn.functional.pad(m, (0, length - m.shape[1]))) for s, m in rows]
        if guidance > 1:
            rows += [self._null_states(states) for states, _ in rows]
        return {"states": torch.cat([s for s, _ in rows]), "mask": torch.cat([m for _, m in rows])}

    def _chroma(self, melody: np.ndarray, start: int) -> torch.Tensor:
        """One-hot chroma of the melody from sample `start`, looped, spanning the model's chroma_length frames."""
        _, hop = stft_params(self.sample_rate)
        span = (self.model.config.chroma_length - 1) * hop  # center=True adds one frame: exactly chroma_length
        wav = melody[(start + np.arange(span)) % len(melody)]  # audiocraft loops the melody over long outputs too
        chroma = chroma_features(wav, self.sample_rate, num_chroma=self.model.config.num_chroma)
        return torch.from_numpy(chroma)[None].to(device=self.model.device, dtype=self.model.dtype)

    def _melody_prefix(self, states: torch.Tensor, mask: torch.Tensor, chroma: torch.Tensor | None) -> torch.Tensor:
        """MusicGen-Melody's decoder prefix [chroma; text], as its generate builds it for text (row 1: null chroma)."""
        model, config = self.model, self.model.config
        null = torch.zeros(1, 1, config.num_chroma, device=model.device, dtype=model.dtype)
        null[..., 0] = 1  # transformers' (and audiocraft's) null melody: the one-hot chroma of silence
        rows = [chroma if chroma is not None else null] + [null] * (states.shape[0] - 1)
        length = config.chroma_length
        feats = torch.cat([r.repeat(1, math.ceil(length / r.shape[1]), 1)[:, :length] for r in rows])
        if config.num_chroma != config.decoder.hidden_size:
            feats = model.audio_enc_to_dec_proj(feats)
        if config.text_encoder.hidden_size != config.decoder.hidden_size:
            states = model.enc_to_dec_proj(states)
        return torch.cat([feats, states * mask[..., None].to(states.dtype)], dim=1)

    def _windows(self, text: dict[str, torch.Tensor], settings: SamplingSettings, codes: torch.Tensor | None,
                 melody: np.ndarray | None, generators: list[torch.Generator] | None = None,
                 ) -> tuple[torch.Tensor, int]:
        """(rows, codebooks, frames) codes covering `duration`: window by window, each prompted with the last overlap
        of the codes so far (the source's codes first, when continuing), as audiocraft's extend_stride loop does.

        generators: one per row, each row sampled from its own (a batch); None: one row, sampled as stock generate does.
        """
        cfg = self.config
        target = math.ceil(settings.duration * self.sample_rate / self.hop)
        window, overlap = int(cfg.window_seconds * self.frame_rate), int(cfg.overlap_seconds * self.frame_rate)
        if codes is None:
            rows = 1 if generators is None else len(generators)
            codes = torch.zeros(rows, self.model.decoder.num_codebooks, 0, dtype=torch.long, device=self.model.device)
        windows = 0
        while codes.shape[-1] < target:
            have = codes.shape[-1]
            context = min(have, overlap)
            new = min(window - context, target - have)
            chroma = None if melody is None else self._chroma(melody, (have - context) * self.hop)
            out = self._generate_codes(text, settings, codes[..., have - context :], new, chroma, generators)
            codes = torch.cat([codes, out[..., context:]], dim=-1)
            windows += 1
        return codes, windows

    def _encode(self, wav: np.ndarray) -> torch.Tensor:
        """(codebooks, frames) codes of mono audio, as MusicGen's input_values path makes them."""
        x = torch.from_numpy(wav).to(device=self.model.device, dtype=self.model.dtype)[None, None]
        return self.model.audio_encoder.encode(x).audio_codes[0, 0]  # (1 chunk, 1, codebooks, frames) -> (K, T)

    def _decode(self, codes: torch.Tensor) -> np.ndarray:
        """The whole code sequence through the codec's decoder at once (no window edge inside the output)."""
        audio = self.model.audio_encoder.decode(codes[None, None], [None]).audio_values
        return audio[0, 0].float().cpu().numpy()

    def _fade_in_from(self, source: np.ndarray, audio: np.ndarray) -> np.ndarray:
        """The source itself up to its last CROSSFADE_SECONDS, faded there into the codec's rendering of it."""
        fade = min(round(CROSSFADE_SECONDS * self.sample_rate), len(source))
        out = audio.copy()
        start = len(source) - fade
        out[:start] = source[:start]
        ramp = np.linspace(0.0, 1.0, fade + 2, dtype=np.float32)[1:-1]  # both ends strictly inside (0, 1)
        out[start : len(source)] = source[start:] * (1 - ramp) + audio[start : len(source)] * ramp
        return out

    def _generate_codes(self, text: dict[str, torch.Tensor], settings: SamplingSettings, prompt: torch.Tensor,
                        new_frames: int, chroma: torch.Tensor | None, generators: list[torch.Generator] | None,
                        ) -> torch.Tensor:
        """One stock generate call -> (rows, codebooks, prompt frames + new_frames) codes, the prompt's unchanged."""
        model = self.model
        rows, codebooks = prompt.shape[:2]
        kwargs: dict[str, Any] = {}
        if prompt.shape[-1]:
            kwargs["decoder_input_ids"] = prompt.reshape(rows * codebooks, -1)  # as MusicGen-Melody also takes
        if "input_ids" in text:  # a caption: the stock text-encoder path
            kwargs.update(text)
            if chroma is not None:
                kwargs["input_features"] = chroma
        else:
            # States are [rows; nulls]. generate takes its batch size from `inputs`, so a placeholder of `rows` rows
            # (never encoded: the states are given) makes it treat the rest as the CFG half, repeat the decoder inputs
            # for it and combine the logits with its ClassifierFreeGuidanceLogitsProcessor.
            kwargs["inputs"] = torch.full((rows, 1), -100, dtype=torch.long, device=model.device)
            if self.melody:
                kwargs["encoder_hidden_states"] = self._melody_prefix(text["states"], text["mask"], chroma)
                # Unused once states are given; passed so generate does not derive one from the placeholder.
                kwargs["attention_mask"] = torch.ones(rows, 1, dtype=torch.long, device=model.device)
            else:
                kwargs["encoder_outputs"] = BaseModelOutput(last_hidden_state=text["states"])
                kwargs["attention_mask"] = text["mask"]
        if generators is None:
            kwargs.update(temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p or 1.0)
        else:  # the row sampler applies these itself: stock generate's own warpers stay off
            kwargs.update(temperature=1.0, top_k=0, top_p=1.0, logits_processor=LogitsProcessorList(
                [_RowSampler(generators, codebooks, settings)]))
        with _kept_codes(model.audio_encoder) as kept:
            model.generate(
                **kwargs, do_sample=True, guidance_scale=settings.guidance_scale,
                max_new_tokens=new_frames + codebooks - 1,  # the delay pattern eats K-1 steps
            )
        return kept[0][0]  # (1 chunk, rows, codebooks, frames) -> (rows, K, T)


class _RowSampler(LogitsProcessor):
    """Samples each row's next codes from its own generator, exactly as stock `generate` samples a batch of one row.

    Stock `generate` draws the whole batch from the global RNG, so a row's codes would depend on its neighbours.
    This processor is the last one stock `generate` applies before its own guidance and sampling (custom processors
    come before the guidance processor MusicGen adds and before the warpers, which are therefore turned off), so for
    each row it does what those would do with the same settings: guidance of its [cond; null] logits, temperature,
    top-k, top-p, softmax and one multinomial draw from the row's generator over its (codebooks, vocabulary)
    probabilities -- the draw a one-row call makes from the global RNG seeded with the same seed. It returns scores
    that leave stock guidance and sampling no choice but that token: 0 for it and -inf elsewhere in the cond half,
    zeros in the null half (guidance then keeps 0 / -inf; softmax makes it one-hot).
    """

    def __init__(self, generators: list[torch.Generator], codebooks: int, settings: SamplingSettings) -> None:
        self.generators, self.codebooks = generators, codebooks
        self.guidance = (ClassifierFreeGuidanceLogitsProcessor(settings.guidance_scale)
                         if settings.guidance_scale > 1 else None)
        top_p = settings.top_p or 1.0
        self.warpers = LogitsProcessorList(
            ([TemperatureLogitsWarper(settings.temperature)] if settings.temperature != 1.0 else [])
            + ([TopKLogitsWarper(settings.top_k, min_tokens_to_keep=1)] if settings.top_k else [])
            + ([TopPLogitsWarper(top_p, min_tokens_to_keep=1)] if top_p < 1.0 else []))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        guided = len(self.generators) * self.codebooks  # rows of cond logits; the null ones follow when guiding
        out = torch.full_like(scores, -math.inf)
        if self.guidance is not None:
            out[guided:] = 0.0
        for row, generator in enumerate(self.generators):
            part = slice(row * self.codebooks, (row + 1) * self.codebooks)
            ids, row_scores = input_ids[part], scores[part]
            if self.guidance is not None:
                null = slice(guided + part.start, guided + part.stop)
                row_scores = self.guidance(ids, torch.cat([row_scores, scores[null]]))
            probs = torch.nn.functional.softmax(self.warpers(ids, row_scores), dim=-1)
            out[part].scatter_(1, torch.multinomial(probs, num_samples=1, generator=generator), 0.0)
        return out


@contextmanager
def _kept_codes(codec: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """Keep the codes a stock MusicGen `generate` makes instead of decoding them.

    transformers' generate ends by decoding its codes and returns only the audio; windowed generation needs the
    codes themselves (to prompt the next window and decode the whole sequence once), so the codec's decode is
    replaced, for this instance and this call only, by one that records its input and returns an empty waveform.
    """
    kept: list[torch.Tensor] = []

    def record(audio_codes: torch.Tensor, audio_scales: Any = None, **_: Any) -> EncodecDecoderOutput:
        kept.append(audio_codes)
        return EncodecDecoderOutput(audio_values=audio_codes.new_zeros((audio_codes.shape[1], 1, 0), dtype=torch.float))

    codec.decode = record
    try:
        yield kept
    finally:
        del codec.decode
