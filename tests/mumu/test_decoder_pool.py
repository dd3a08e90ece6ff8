"""DecoderPool: the per-turn music plan, lazy builds, and seeded decoders that are the same in every process."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from generation.config import SamplingSettings
from generation.interface import Conditioning
from generation.registry import DECODER_KINDS
from mumu.decoder_pool import DecoderPool, MusicPlan, build_seeded_decoder
from mumu.profiles import tiny

_DIGEST = """
import hashlib, sys
from generation.config import SamplingSettings
from generation.interface import Conditioning
from mumu.pipeline import MuMuPipeline
pipe = MuMuPipeline.from_profile("tiny")
for kind in sys.argv[1:]:
    audio = pipe.decoder_for(kind).generate(Conditioning(caption="calm piano"), SamplingSettings(duration=0.3, seed=3))
    print(kind, hashlib.sha256(audio.waveform.tobytes()).hexdigest())
"""


@pytest.fixture(scope="module")
def pool() -> DecoderPool:
    config = tiny()
    return DecoderPool(config, build_seeded_decoder(config, config.decoder.kind))


def test_the_plan_follows_the_projector(pool):
    assert pool.choices == ("musicgen", "musicgen_melody", "audioldm2")
    assert pool.plan(None, None) == MusicPlan("musicgen", "embeddings", own=True)
    assert pool.plan("musicgen", "caption") == MusicPlan("musicgen", "caption", own=True)
    assert pool.plan("audioldm2", None) == MusicPlan("audioldm2", "caption", own=False)
    with pytest.raises(ValueError, match="needs the model's own decoder"):
        pool.plan("audioldm2", "embeddings")
    with pytest.raises(ValueError, match="unknown decoder 'jukebox'; choose one of musicgen, musicgen_melody"):
        pool.plan("jukebox", None)
    with pytest.raises(ValueError, match="conditioning must be one of embeddings, caption"):
        pool.plan(None, "lyrics")


def test_same_seed_gives_bit_identical_audio_in_another_process(pool):
    """Every decoder of the tiny profile is random-init: only seeded builds make --seed reproducible."""
    digests = {}
    for kind in DECODER_KINDS:
        audio = pool.get(kind).generate(Conditioning(caption="calm piano"), SamplingSettings(duration=0.3, seed=3))
        digests[kind] = hashlib.sha256(audio.waveform.tobytes()).hexdigest()
    assert pool.loaded == DECODER_KINDS
    out = subprocess.run([sys.executable, "-c", _DIGEST, *DECODER_KINDS], capture_output=True, text=True, check=True)
    assert dict(line.split() for line in out.stdout.splitlines()) == digests


def test_edit_mode_is_a_capability_known_without_building(pool):
    assert [pool.edit_mode(kind) for kind in DECODER_KINDS] == ["continue", "melody", None]
    assert pool.edit_mode() == "continue"  # the model's own (musicgen) continues a track
    assert pool.plan("musicgen_melody", None, edit=True).kind == "musicgen_melody"
    with pytest.raises(ValueError, match=r"audioldm2 decoder cannot edit audio; choose one that can: "
                                         r"musicgen \(continue\), musicgen_melody \(melody\)"):
        pool.plan("audioldm2", None, edit=True)
