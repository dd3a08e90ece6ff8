"""The decoder registry: one class per kind of the DecoderKind Literal, imported on demand; unknown kinds named."""

from __future__ import annotations

import pytest

from choices import options
from generation.config import DecoderConfig, DecoderKind
from generation.interface import MusicDecoder
from generation.registry import DECODER_KINDS, DECODERS, build_decoder, check_kind, decoder_class


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
