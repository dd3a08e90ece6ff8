"""MusicGen and MusicGen-Melody (transformers) behind MusicDecoder: projector embeddings or a caption -> waveform.

Null condition for classifier-free guidance. transformers builds it for text prompts as zeros with attention mask 0
(MusicgenForConditionalGeneration._prepare_text_encoder_kwargs_for_generation; the melody model also zeroes the text
states and uses a one-hot-C chroma), so caption mode is left entirely to the stock `generate`. In embedding mode the
null half is, as the project chose, the model's own T5 encoding of the empty prompt "" (mask 1), stacked under the
projector embeddings by this module: stock `generate` only adds its zero half when it runs the text encoder itself
(see _generate). Note that audiocraft, which trained MusicGen, also nulls a text by masking "" to zeros.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import torch
from transformers import (
    AutoTokenizer,
    MusicgenConfig,
    MusicgenForConditionalGeneration,
    MusicgenMelodyConfig,
    MusicgenMelodyForConditionalGeneration,
)
from transformers.modeling_outputs import BaseModelOutput

from checkpoints.sources import resolve_source
from generation.chroma import chroma_features, stft_params
from generation.config import DecoderConfig, SamplingSettings
from generation.interface import Conditioning, DecodedAudio, EditSource, MusicDecoder

STREAM = "encoder_hidden_states"
CROSSFADE_SECONDS = 0.01  # where a window (or a continued source) meets the next one
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

    Outputs longer than config.window_seconds are made window by window, each prompted with the last
    config.overlap_seconds of audio so far. EditSource 'continue' keeps the source (mono, resampled, cut to whole
    codec frames) as the start of the output, which `duration` includes; 'melody' (musicgen_melody only) conditions
    every window on the chroma of the source, looped as audiocraft does. Settings steps, candidates and
    negative_prompt do not apply to MusicGen and are ignored.
    """

    def __init__(self, model: MusicgenForConditionalGeneration | MusicgenMelodyForConditionalGeneration,
                 tokenizer: Any, config: DecoderConfig, name: str) -> None:
        self.model = model.eval().requires_grad_(False)  # inference only: a frozen decoder
        self.tokenizer = tokenizer
        self.config = config
        self.name = name
        self.melody = config.kind == "musicgen_melody"
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
                elif source and Path(source).is_dir():
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
        return cls(model, tokenizer, cfg, name=name)

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
        cond.check()
        mode = "embeddings" if cond.embeds else "caption"
        if mode == "embeddings" and STREAM not in cond.embeds:
            raise ValueError(f"MusicGen reads the {STREAM!r} stream, got {sorted(cond.embeds)}")
        melody = prompt = None
        if source is not None:
            wav = self._source_audio(source)
            if source.mode == "melody":
                if not self.melody:
                    raise ValueError("melody conditioning needs the musicgen_melody decoder; with musicgen use "
                                     "mode='continue' to extend the audio instead")
                melody = wav
            elif source.mode == "continue":
                prompt = wav[: len(wav) // self.hop * self.hop]  # whole codec frames, so the prompt codes match it
                if len(prompt) == 0 or len(prompt) >= settings.duration * self.sample_rate:
                    raise ValueError(f"continue needs a source between {self.hop / self.sample_rate:g} s and the "
                                     f"duration ({settings.duration:g} s), got {len(wav) / self.sample_rate:.3f} s")
            else:
                raise ValueError(f"unknown edit mode {source.mode!r}: expected 'melody' or 'continue'")
        device = self.model.device
        with torch.inference_mode(), torch.random.fork_rng(devices=[device.index] if device.type == "cuda" else []):
            torch.manual_seed(settings.seed)
            if mode == "embeddings":
                text = self._embedding_states(cond, settings.guidance_scale)
            else:
                text = self._caption(cond)
            audio, windows = self._windows(text, mode, settings, prompt, melody)
        info = {"decoder": self.name, "kind": self.config.kind, "mode": mode, "seed": settings.seed,
                "guidance_scale": settings.guidance_scale, "temperature": settings.temperature,
                "top_k": settings.top_k, "top_p": settings.top_p, "windows": windows,
                "source_seconds": 0.0 if prompt is None else len(prompt) / self.sample_rate,
                "melody": melody is not None}
        if settings.guidance_scale > 1:
            info["null_condition"] = "zeros, mask 0 (as MusicGen was trained)"
        # The codec can overshoot [-1, 1] slightly; DecodedAudio promises that range.
        return DecodedAudio(np.clip(audio, -1.0, 1.0).astype(np.float32), self.sample_rate, info)

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

    @staticmethod
    def _null_states(embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """MusicGen's 'no condition' as it was trained: the empty prompt's states are zeros, fully masked."""
        return torch.zeros_like(embeds), torch.zeros(embeds.shape[:2], dtype=torch.long, device=embeds.device)

    def _embedding_states(self, cond: Conditioning, guidance: float) -> dict[str, torch.Tensor]:
        """Projector states (row 0) and, when guiding, the null condition (row 1)."""
        embeds = cond.embeds[STREAM].to(device=self.model.device, dtype=self.model.dtype)
        width = self.streams[STREAM][1]
        if embeds.ndim != 3 or embeds.shape[0] != 1 or embeds.shape[2] != width:
            raise ValueError(f"{STREAM} must be (1, N, {width}), got {tuple(embeds.shape)}")
        mask = cond.masks.get(STREAM)
        mask = torch.ones(embeds.shape[:2], dtype=torch.long) if mask is None else mask.long()
        rows = [(embeds, mask.to(self.model.device))]
        if guidance > 1:
            rows.append(self._null_states(embeds))
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

    def _windows(self, text: dict[str, torch.Tensor], mode: str, settings: SamplingSettings,
                 prompt: np.ndarray | None, melody: np.ndarray | None) -> tuple[np.ndarray, int]:
        """Generate window by window; each next one is prompted with the last overlap_seconds of audio so far."""
        hop, cfg = self.hop, self.config
        total = round(settings.duration * self.sample_rate)
        target = math.ceil(total / hop)
        window, overlap = int(cfg.window_seconds * self.frame_rate), int(cfg.overlap_seconds * self.frame_rate)
        fade = round(CROSSFADE_SECONDS * self.sample_rate)
        audio = np.zeros(0, np.float32) if prompt is None else prompt.copy()
        windows = 0
        while len(audio) // hop < target:
            have = len(audio) // hop
            context = min(have, overlap)
            new = min(window - context, target - have)
            chroma = None if melody is None else self._chroma(melody, (have - context) * hop)
            wav = self._generate(text, mode, settings, audio[len(audio) - context * hop :], new, chroma)
            head, fresh = wav[: context * hop], wav[context * hop : (context + new) * hop]
            if context and fade:
                # The codec re-decodes the prompt slightly differently; fade into that version so the seam is smooth.
                f = min(fade, len(head))
                ramp = np.linspace(0.0, 1.0, f, dtype=np.float32)
                audio[-f:] = audio[-f:] * (1 - ramp) + head[-f:] * ramp
            audio = np.concatenate([audio, fresh])
            windows += 1
        return audio[:total], windows

    def _generate(self, text: dict[str, torch.Tensor], mode: str, settings: SamplingSettings, prompt: np.ndarray,
                  new_frames: int, chroma: torch.Tensor | None) -> np.ndarray:
        """One stock generate call -> mono audio of (prompt frames + new_frames) codec frames."""
        model = self.model
        kwargs: dict[str, Any] = {}
        if len(prompt):
            # The prompt goes in as codes (what MusicGen's input_values path does), which MusicGen-Melody also takes.
            wav = torch.from_numpy(prompt).to(device=model.device, dtype=model.dtype)[None, None]
            codes = model.audio_encoder.encode(wav).audio_codes  # (1 chunk, 1, codebooks, frames)
            kwargs["decoder_input_ids"] = codes[0].reshape(-1, codes.shape[-1])
        if mode == "caption":
            kwargs.update(text)
            if chroma is not None:
                kwargs["input_features"] = chroma
        else:
            # Rows are [projector; null]. generate takes its batch size from `inputs`, so a 1-row placeholder
            # (never encoded: the states are given) makes it treat row 1 as the CFG half, repeat the decoder inputs
            # for it and combine the logits with its ClassifierFreeGuidanceLogitsProcessor.
            kwargs["inputs"] = torch.full((1, 1), -100, dtype=torch.long, device=model.device)
            if self.melody:
                kwargs["encoder_hidden_states"] = self._melody_prefix(text["states"], text["mask"], chroma)
                # Unused once states are given; passed so generate does not derive one from the placeholder.
                kwargs["attention_mask"] = torch.ones(1, 1, dtype=torch.long, device=model.device)
            else:
                kwargs["encoder_outputs"] = BaseModelOutput(last_hidden_state=text["states"])
                kwargs["attention_mask"] = text["mask"]
        out = model.generate(
            **kwargs, do_sample=True, guidance_scale=settings.guidance_scale, temperature=settings.temperature,
            top_k=settings.top_k, top_p=settings.top_p or 1.0,
            max_new_tokens=new_frames + model.decoder.num_codebooks - 1,  # the codebook delay pattern eats K-1 steps
        )
        return out[0, 0].float().cpu().numpy()
