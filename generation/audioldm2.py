"""AudioLDM2 music decoder: projector embeddings (T5 + GPT-2 streams) or a caption -> 16 kHz mono waveform."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (
    AudioLDM2Pipeline,
    AudioLDM2ProjectionModel,
    AudioLDM2UNet2DConditionModel,
    AutoencoderKL,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
)
from transformers import (
    AutoTokenizer,
    ClapConfig,
    ClapFeatureExtractor,
    ClapModel,
    GenerationMixin,
    GPT2Config,
    GPT2LMHeadModel,
    RobertaTokenizer,
    SpeechT5HifiGan,
    SpeechT5HifiGanConfig,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

from checkpoints.sources import resolve_source
from generation.config import DecoderConfig, SamplingSettings
from generation.interface import Conditioning, DecodedAudio, EditSource, MusicDecoder

# encode_prompt feeds `prompt` only to these tokenizer classes and `transcription` to any other one
_PROMPT_TOKENIZERS = (RobertaTokenizer, T5Tokenizer)


def _prepare_tokenizer(tok: Any) -> Any:
    """Right padding (CLAP pools the first token; the negative prompt is padded to the T5 length) and a pad token."""
    if tok is not None:
        if tok.pad_token is None:
            tok.pad_token = tok.unk_token or tok.eos_token
        tok.padding_side = "right"
    return tok


def _slot_tokenizer(source: str, max_length: int) -> Any:
    """Load a text tokenizer for a CLAP or T5 slot, capped at what that encoder's positions allow."""
    tok = _prepare_tokenizer(AutoTokenizer.from_pretrained(resolve_source(source)))
    tok.model_max_length = max_length
    return tok


def _build_pipeline(arch: dict[str, Any], tokenizer: str | None, device: str | torch.device) -> AudioLDM2Pipeline:
    """Assemble an AudioLDM2Pipeline from random parts described by `arch` (seeded, so builds are identical)."""
    toks = [None, None]
    if tokenizer is not None:
        lengths = arch["tokenizer_max_length"]
        toks = [_slot_tokenizer(tokenizer, lengths["clap"]), _slot_tokenizer(tokenizer, lengths["t5"])]
        for tok, vocab in zip(toks, (arch["clap"]["text"]["vocab_size"], arch["t5"]["vocab_size"]), strict=True):
            if len(tok) > vocab:
                raise ValueError(f"tokenizer {tokenizer!r} has {len(tok)} ids but the text encoder only {vocab}")
    clap = arch["clap"]
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(arch.get("init_seed", 0))
        language_model = GPT2LMHeadModel(GPT2Config(**arch["gpt2"]))
        # AudioLDM2 always generates this many GPT-2 hidden states (the "sequence_gen_length")
        language_model.config.max_new_tokens = arch["lm_tokens"]
        pipe = AudioLDM2Pipeline(
            vae=AutoencoderKL(**arch["vae"]),
            text_encoder=ClapModel(ClapConfig(text_config=clap["text"], audio_config=clap["audio"],
                                              projection_dim=clap["projection_dim"])),
            text_encoder_2=T5EncoderModel(T5Config(**arch["t5"])),
            projection_model=AudioLDM2ProjectionModel(**arch["projection"]),
            language_model=language_model,
            tokenizer=toks[0],
            tokenizer_2=toks[1],
            feature_extractor=ClapFeatureExtractor(**arch["feature_extractor"]),
            unet=AudioLDM2UNet2DConditionModel(**arch["unet"]),
            scheduler=DDIMScheduler(**arch["scheduler"]),
            vocoder=SpeechT5HifiGan(SpeechT5HifiGanConfig(**arch["vocoder"])),
        )
    # fresh modules start in train mode: dropout would make sampling depend on the global RNG
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    return pipe


def _saved_without(path: str) -> dict[str, None]:
    """Components a local pipeline folder was saved without (e.g. tokenizer=None), to pass as None on load."""
    index = Path(path) / "model_index.json"
    if not index.is_file():
        return {}
    entries = json.loads(index.read_text())
    return {k: None for k, v in entries.items() if isinstance(v, list) and v == [None, None]}


def _ensure_generation_lm(pipe: AudioLDM2Pipeline) -> None:
    """Wrap a bare GPT2Model language model in GPT2LMHeadModel: transformers 5 GPT2Model lacks the generation
    helpers AudioLDM2Pipeline.generate_language_model calls (diffusers issue #12630)."""
    lm = pipe.language_model
    if isinstance(lm, GenerationMixin):
        return
    with torch.device("meta"):
        head = GPT2LMHeadModel(lm.config)
    head.transformer = lm
    head.lm_head.weight = lm.wte.weight  # tied, as in GPT-2; only the hidden states are used anyway
    pipe.register_modules(language_model=head.eval())


def _own_aligned_memory(pipe: AudioLDM2Pipeline) -> None:
    """Copy CPU weights that safetensors left at unaligned file offsets into fresh storage: unaligned operands take
    other SIMD code paths, so a reloaded pipeline would differ from the in-memory one in the last bits."""
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            for tensor in (*component.parameters(), *component.buffers()):
                if tensor.device.type == "cpu":
                    tensor.data = tensor.data.clone()


@contextlib.contextmanager
def _numpy_seed(seed: int) -> Iterator[None]:
    """Seed numpy's global RNG for the block (ClapFeatureExtractor crops long audio with np.random), then restore it."""
    state = np.random.get_state()
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        np.random.set_state(state)


def _fit_tokens(embeds: torch.Tensor, mask: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Trim or zero-pad (masked out) a (1, L, W) sequence and its (1, L) mask to n tokens."""
    if embeds.shape[1] >= n:
        return embeds[:, :n], mask[:, :n]
    pad = n - embeds.shape[1]
    return F.pad(embeds, (0, 0, 0, pad)), F.pad(mask, (0, pad))


class AudioLDM2Decoder(MusicDecoder):
    """AudioLDM2 (latent diffusion) conditioned on the projector's T5-width and GPT-2-width streams, or a caption."""

    def __init__(self, pipe: AudioLDM2Pipeline, config: DecoderConfig) -> None:
        self.pipe = pipe
        self.config = config
        # DPM-Solver++ reaches good quality in ~25 steps instead of DDIM's published 200 (diffusers AudioLDM2 blog)
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        _ensure_generation_lm(pipe)
        for module in self.components.values():
            module.requires_grad_(False)  # inference only: a frozen decoder
        # tokenizer settings such as padding_side do not survive save_pretrained/from_pretrained
        _prepare_tokenizer(pipe.tokenizer)
        _prepare_tokenizer(pipe.tokenizer_2)

    @classmethod
    def from_config(
        cls,
        cfg: DecoderConfig,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        weights: bool = True,
    ) -> AudioLDM2Decoder:
        """Load cfg.source with diffusers, or (no source / weights=False) build random parts from cfg.arch offline."""
        if cfg.kind != "audioldm2":
            raise ValueError(f"AudioLDM2Decoder needs DecoderConfig.kind='audioldm2', got {cfg.kind!r}")
        if cfg.source is not None and weights:
            src = resolve_source(cfg.source)
            pipe = AudioLDM2Pipeline.from_pretrained(src, dtype=dtype, **_saved_without(src))
            if device is not None:
                pipe.to(device=device)
            _own_aligned_memory(pipe)
        else:
            # initialised on the CPU so the random weights do not depend on the device; "meta" allocates nothing
            # (parameter counting of the full arch)
            on_meta = device is not None and torch.device(device).type == "meta"
            if not cfg.arch:
                raise ValueError(f"no arch for {cfg.source or cfg.kind!r}: set DecoderConfig.arch to build it "
                                 "without weights")
            pipe = _build_pipeline(cfg.arch, cfg.tokenizer, "meta" if on_meta else "cpu")
            if not on_meta:
                pipe.to(device=device, dtype=dtype)
        return cls(pipe, cfg)

    @property
    def sample_rate(self) -> int:
        """The vocoder's output rate (16 kHz for the published checkpoints)."""
        return int(self.pipe.vocoder.config.sampling_rate)

    @property
    def lm_tokens(self) -> int:
        """How many GPT-2 hidden states AudioLDM2 conditions on (8)."""
        return int(getattr(self.pipe.language_model.config, "max_new_tokens", None) or 8)

    @property
    def components(self) -> dict[str, torch.nn.Module]:
        """The pipeline's modules (UNet, VAE, CLAP, T5, GPT-2, projection, vocoder)."""
        return {name: module for name, module in self.pipe.components.items() if isinstance(module, torch.nn.Module)}

    @property
    def streams(self) -> dict[str, tuple[int | None, int]]:
        """prompt_embeds: any number of T5-width tokens; generated_prompt_embeds: 8 GPT-2-width tokens."""
        return {
            "prompt_embeds": (None, int(self.pipe.text_encoder_2.config.d_model)),
            "generated_prompt_embeds": (self.lm_tokens, int(self.pipe.language_model.config.n_embd)),
        }

    def _transcription(self, text: str) -> str | None:
        """Text for tokenizers encode_prompt only reaches through `transcription` (e.g. the tiny Llama tokenizer)."""
        pipe = self.pipe
        return None if all(isinstance(t, _PROMPT_TOKENIZERS) for t in (pipe.tokenizer, pipe.tokenizer_2)) else text

    def _has_tokenizers(self) -> bool:
        return self.pipe.tokenizer is not None and self.pipe.tokenizer_2 is not None

    def _embedding_inputs(self, cond: Conditioning, settings: SamplingSettings, info: dict[str, Any]) -> dict:
        """Pipeline kwargs for embedding mode; negatives are the pipeline's own encoding of the negative prompt."""
        pipe, streams = self.pipe, self.streams
        for name, (_, width) in streams.items():
            x = cond.embeds.get(name)
            if x is None or x.ndim != 3 or x.shape[0] != 1 or x.shape[2] != width:
                got = None if x is None else tuple(x.shape)
                raise ValueError(f"AudioLDM2 needs embeds[{name!r}] of shape (1, N, {width}), got {got}")
        device = pipe._execution_device
        pe = cond.embeds["prompt_embeds"].to(device, pipe.text_encoder_2.dtype)
        ge = cond.embeds["generated_prompt_embeds"].to(device, pipe.language_model.dtype)
        mask = cond.masks.get("prompt_embeds")
        mask = torch.ones(pe.shape[:2], dtype=torch.long) if mask is None else mask.long()
        kwargs = {"prompt_embeds": pe, "attention_mask": mask.to(device), "generated_prompt_embeds": ge}
        if settings.guidance_scale <= 1.0:
            return kwargs
        negative = settings.negative_prompt.strip()
        if not negative and self._has_tokenizers():
            # no negatives given: the pipeline encodes "" itself (negative_prompt=None), padded to the prompt's length
            info["negative"] = "empty string"
            return kwargs
        if negative and self._has_tokenizers():
            neg_pe, neg_mask, neg_ge = pipe.encode_prompt(
                negative, device, 1, False, transcription=self._transcription(negative), max_new_tokens=ge.shape[1]
            )
            # the pipeline requires negatives shaped like the positives: fit the T5 sequence to N tokens
            neg_pe, neg_mask = _fit_tokens(neg_pe, neg_mask, pe.shape[1])
            info["negative"] = "negative_prompt"
        else:
            # no text side to encode with: all-zero embeddings are the null condition
            neg_pe, neg_ge = torch.zeros_like(pe), torch.zeros_like(ge)
            neg_mask = torch.ones_like(kwargs["attention_mask"])
            info["negative"] = "zeros (no tokenizers)"
        kwargs.update(negative_prompt_embeds=neg_pe, negative_attention_mask=neg_mask,
                      negative_generated_prompt_embeds=neg_ge)
        return kwargs

    def text_targets(self, captions: list[str]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The pipeline's own encode_prompt: T5 states with their mask, and the 8 GPT-2 states generated from them."""
        if not self._has_tokenizers():
            raise ValueError("text targets need the pipeline's tokenizers: set DecoderConfig.tokenizer or a source")
        pipe, embeds, masks = self.pipe, {}, {}
        with torch.inference_mode():
            # one caption at a time: encode_prompt pads T5 to the batch's longest caption, the GPT-2 pass then
            # reads the padding too, so batching would change a caption's generated states
            for caption in captions:
                pe, mask, ge = pipe.encode_prompt(caption, pipe._execution_device, 1, False,
                                                  transcription=self._transcription(caption),
                                                  max_new_tokens=self.lm_tokens)
                embeds.setdefault("prompt_embeds", []).append(pe[0].float())
                masks.setdefault("prompt_embeds", []).append(mask[0].bool())
                embeds.setdefault("generated_prompt_embeds", []).append(ge[0].float())
        out = {name: torch.nn.utils.rnn.pad_sequence(rows, batch_first=True) for name, rows in embeds.items()}
        mask = {name: torch.nn.utils.rnn.pad_sequence(rows, batch_first=True) for name, rows in masks.items()}
        mask["generated_prompt_embeds"] = torch.ones(out["generated_prompt_embeds"].shape[:2], dtype=torch.bool)
        return out, mask

    def generate(
        self, cond: Conditioning, settings: SamplingSettings, source: EditSource | None = None
    ) -> DecodedAudio:
        """Make music from embeddings or from a caption; same seed, same audio.

        Several candidates are ranked by the pipeline's CLAP scorer: in caption mode against the caption (the pipeline
        scores its own prompt), in embedding mode against cond.ranking_text, else the caption.
        """
        if source is not None:
            raise ValueError("the AudioLDM2 decoder cannot edit audio; use the musicgen_melody decoder for edits")
        settings.validate(self.config.max_duration)
        cond.check()
        pipe, n = self.pipe, settings.candidates
        caption = cond.caption.strip() if cond.caption and cond.caption.strip() else None
        ranking = (cond.ranking_text or "").strip() or caption
        mode = "embeddings" if cond.embeds else "caption"
        if mode == "caption" and not self._has_tokenizers():
            raise ValueError("caption mode needs the pipeline's tokenizers: set DecoderConfig.tokenizer or a source")
        info: dict[str, Any] = {"decoder": "audioldm2", "seed": settings.seed, "steps": settings.steps,
                                "guidance_scale": settings.guidance_scale, "mode": mode, "candidates": n}
        # Ask for whole vocoder frames covering the target (+half a frame so the pipeline's int() floor cannot drop
        # one), then trim to the exact sample count.
        target = max(1, round(settings.duration * self.sample_rate))
        hop = int(np.prod(pipe.vocoder.config.upsample_rates))
        frames = max(math.ceil(target / hop), pipe.vae_scale_factor)
        common = {
            "audio_length_in_s": (frames + 0.5) * hop / self.sample_rate,
            "num_inference_steps": settings.steps,
            "guidance_scale": settings.guidance_scale,
            "num_waveforms_per_prompt": n,
            "generator": torch.Generator(device="cpu").manual_seed(settings.seed),
            "output_type": "pt",
        }
        ranked = False
        with torch.inference_mode(), _numpy_seed(settings.seed):
            if mode == "embeddings":
                audios = pipe(**self._embedding_inputs(cond, settings, info), **common).audios
                if n > 1 and ranking and self._has_tokenizers():
                    audios = pipe.score_waveforms(ranking, audios, n, pipe._execution_device, pipe.text_encoder.dtype)
                    ranked = True
            else:
                negative = settings.negative_prompt.strip() or None
                # with prompt= and n > 1 the pipeline ranks candidates with its CLAP scorer itself
                audios = pipe(prompt=caption, transcription=self._transcription(caption), negative_prompt=negative,
                              max_new_tokens=self.lm_tokens, **common).audios
                ranked = n > 1
                if settings.guidance_scale > 1.0:
                    info["negative"] = "negative_prompt" if negative else "empty string"
        if n > 1 and not ranked:
            info["ranking"] = ("not ranked: ranking candidates needs a ranking text or caption (and tokenizers); "
                               "returned the first")
        info["ranked"] = ranked
        wave = audios[0].float().cpu().numpy()
        generated = wave.shape[0]
        wave = wave[:target] if generated >= target else np.pad(wave, (0, target - generated))
        info["samples"] = {"asked": target, "generated": generated, "trimmed": max(0, generated - target),
                           "padded": max(0, target - generated)}
        return DecodedAudio(waveform=np.ascontiguousarray(wave, dtype=np.float32), sample_rate=self.sample_rate,
                            info=info)
