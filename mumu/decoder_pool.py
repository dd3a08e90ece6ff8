"""The decoders a pipeline can make music with: the model's own, and others built on first use, then kept."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch

from generation.interface import EditMode, MusicDecoder
from generation.registry import DECODER_KINDS, EDIT_MODES, build_decoder, edit_mode
from mumu.builder import SeedOffset, seeded
from mumu.config import MuMuConfig, check_conditioning
from mumu.profiles import sibling_decoder


@dataclass(frozen=True)
class MusicPlan:
    """How one turn makes music: which decoder kind, conditioned on the projector's embeddings or on a caption."""

    kind: str
    mode: str
    own: bool


def build_seeded_decoder(config: MuMuConfig, kind: str, device: torch.device | str = "cpu",
                         dtype: torch.dtype | None = None) -> MusicDecoder:
    """Build a decoder of `kind` from the model's profile family; random-init parts are seeded from config.seed.

    Raises:
        OSError: the decoder's weights cannot be found or read (the message names the source).
    """
    cfg = sibling_decoder(config, kind)
    try:
        # Seeded apart from the model's own parts, so a random-init (tiny) decoder is the same in every process.
        with seeded(config.seed + SeedOffset.DECODERS + DECODER_KINDS.index(kind)):
            return build_decoder(cfg, device=device, dtype=dtype)
    except OSError as e:
        raise OSError(f"could not load the {kind} decoder{f' from {cfg.source}' if cfg.source else ''}: {e}") from e


class DecoderPool:
    """The model's own decoder (its projector was trained for it) plus caption-mode ones, built lazily, kept loaded."""

    def __init__(self, config: MuMuConfig, own: MusicDecoder) -> None:
        self.config = config
        self.own = own
        self._decoders: dict[str, MusicDecoder] = {config.decoder.kind: own}
        self._lock = threading.Lock()

    @property
    def own_kind(self) -> str:
        """The kind the output projector was trained for."""
        return self.config.decoder.kind

    @property
    def choices(self) -> tuple[str, ...]:
        """Decoder kinds a turn may pick: the model's own first, then the caption-mode ones."""
        return (self.own_kind, *(kind for kind in DECODER_KINDS if kind != self.own_kind))

    @property
    def loaded(self) -> tuple[str, ...]:
        """Decoder kinds built so far (the model's own always)."""
        return tuple(self._decoders)

    def check(self, kind: str) -> str:
        """Return `kind` if a turn may pick it, else raise a ValueError naming the choices."""
        if kind not in self.choices:
            raise ValueError(f"unknown decoder {kind!r}; choose one of {', '.join(self.choices)}")
        return kind

    def edit_mode(self, kind: str | None = None) -> EditMode | None:
        """How the decoder of a kind (None: the model's own) edits a track; None when it cannot. Builds nothing."""
        return edit_mode(self.own_kind if kind is None else self.check(kind))

    def plan(self, decoder: str | None, conditioning: str | None, edit: bool = False) -> MusicPlan:
        """The decoder and conditioning mode of a turn; a decoder other than the model's own means caption mode.

        Raises:
            ValueError: an unknown decoder or mode, embeddings asked of a decoder the projector was not trained for,
                or an edit asked of a decoder that cannot edit.
        """
        kind = self.own_kind if decoder is None else self.check(decoder)
        if edit and edit_mode(kind) is None:
            editors = ", ".join(f"{k} ({mode})" for k, mode in EDIT_MODES.items() if mode is not None)
            raise ValueError(f"the {kind} decoder cannot edit audio; choose one that can: {editors}")
        if conditioning is not None:
            check_conditioning(conditioning)
        if kind == self.own_kind:
            return MusicPlan(kind, conditioning or self.config.pipeline.conditioning, own=True)
        if conditioning == "embeddings":
            raise ValueError(f"conditioning='embeddings' needs the model's own decoder ({self.own_kind}): its "
                             f"projector was trained for that one; {kind} runs in caption mode")
        return MusicPlan(kind, "caption", own=False)

    def get(self, kind: str | None = None) -> MusicDecoder:
        """The decoder of a kind (None: the model's own); another kind is built on first use, then kept."""
        kind = self.own_kind if kind is None else self.check(kind)
        with self._lock:  # one build even when several turns ask at once
            if kind not in self._decoders:
                weights = next(p for module in self.own.components.values() for p in module.parameters())
                self._decoders[kind] = build_seeded_decoder(self.config, kind, weights.device, weights.dtype)
            return self._decoders[kind]
