"""The decoder registry: one class per kind of the DecoderKind Literal, imported on demand; unknown kinds named."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from choices import options
from generation.config import DecoderConfig, DecoderKind, SamplingSettings
from generation.interface import Conditioning, EditSource, MusicDecoder
from generation.registry import (
    BATCH_MODES,
    DECODER_KINDS,
    DECODERS,
    batch_key,
    build_decoder,
    check_kind,
    decoder_class,
)


def test_every_kind_of_the_literal_has_a_decoder_class():
    assert DECODER_KINDS == options(DecoderKind) == tuple(DECODERS)
    for kind in DECODER_KINDS:
        cls = decoder_class(kind)
        assert issubclass(cls, MusicDecoder) and not getattr(cls, "__abstractmethods__", None)


def test_unknown_kinds_are_refused_with_the_known_ones_named():
    message = "decoder must be one of musicgen, musicgen_melody, audioldm2, got 'jukebox'"
    with pytest.raises(ValueError, match=message):
        check_kind("jukebox")
    with pytest.raises(ValueError, match=message):
        decoder_class("jukebox")
    with pytest.raises(ValueError, match=r"DecoderConfig\.kind must be one of musicgen, musicgen_melody, audioldm2"):
        DecoderConfig(kind="jukebox")


def test_build_decoder_hands_the_config_to_the_kinds_class():
    with pytest.raises(ValueError, match="no arch for 'musicgen_melody'"):
        build_decoder(DecoderConfig(kind="musicgen_melody"), weights=False)


def test_rows_share_a_batch_key_when_only_their_seeds_differ():
    embeds = {"encoder_hidden_states": torch.zeros(1, 8, 32)}
    cond, caption = Conditioning(embeds=embeds), Conditioning(caption="calm piano")
    key = batch_key("musicgen", cond, SamplingSettings(seed=1), None)
    assert key is not None and key == batch_key("musicgen", cond, SamplingSettings(seed=2), None)
    for other in (batch_key("musicgen", cond, SamplingSettings(seed=1, duration=5.0), None),
                  batch_key("musicgen", cond, SamplingSettings(seed=1, guidance_scale=1.0), None),
                  batch_key("musicgen", cond, SamplingSettings(seed=1, top_p=0.9), None),
                  batch_key("musicgen", caption, SamplingSettings(seed=1), None),
                  batch_key("musicgen_melody", cond, SamplingSettings(seed=1), None),
                  batch_key("musicgen", Conditioning(embeds={"encoder_hidden_states": torch.zeros(1, 9, 32)}),
                            SamplingSettings(seed=1), None)):
        assert other is not None and other != key
    # what cannot share a batch: edits, modes a kind does not batch, and AudioLDM2
    assert batch_key("musicgen", cond, SamplingSettings(), EditSource(np.zeros(800), 8000, "continue")) is None
    assert batch_key("musicgen_melody", caption, SamplingSettings(), None) is None
    assert batch_key("audioldm2", caption, SamplingSettings(), None) is None
    assert set(BATCH_MODES) == set(DECODER_KINDS)
