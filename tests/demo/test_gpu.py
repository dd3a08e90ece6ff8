"""ZeroGPU: the reservation grows with the music asked for and stays bounded; spaces.GPU gets the estimate."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import soundfile as sf

from demo.gpu import MAX_SECONDS, MIN_SECONDS, SCORE_SECONDS, chat_concurrency, gpu_seconds, on_gpu, turn_seconds
from demo.session import new_session
from mumu.pipeline import ChatOptions, MuMuPipeline


def test_reservation_grows_with_length_steps_and_a_first_load_and_is_bounded():
    assert gpu_seconds("never", 120, "musicgen", 25) == MIN_SECONDS  # text only
    short, long = gpu_seconds("always", 10, "musicgen", 25), gpu_seconds("always", 60, "musicgen", 25)
    assert MIN_SECONDS <= short < long <= MAX_SECONDS
    assert gpu_seconds("auto", 60, "musicgen", 25) == long  # auto may make music: reserve for it
    assert gpu_seconds("always", 30, "audioldm2", 200) > gpu_seconds("always", 30, "audioldm2", 25)
    assert gpu_seconds("always", 30, "audioldm2", 25) < gpu_seconds("always", 30, "musicgen_melody", 25)
    assert gpu_seconds("always", 20, "audioldm2", 25, loaded=False) > gpu_seconds("always", 20, "audioldm2", 25)
    assert gpu_seconds("always", 10_000, "musicgen", 25) == MAX_SECONDS
    assert gpu_seconds("always", 120, "musicgen", 25) >= 4 * 120 * 0.9  # 2 min of MusicGen gets minutes


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return MuMuPipeline.from_profile("tiny", out_dir=tmp_path_factory.mktemp("out"))


def _controls(duration=10.0, edit="(none)", fit_video=True, decoder=None, music="always"):
    return (music, duration, 0, False, 3.0, 0.0, 1.0, 25, edit, fit_video, decoder)


def test_turn_estimate_reads_the_handlers_arguments(pipeline, tmp_path):
    plain = turn_seconds(pipeline, {"text": "hi", "files": []}, None, *_controls())
    assert plain == gpu_seconds("always", 10.0, "musicgen", 25)
    # A decoder not loaded yet is loaded inside the reservation.
    assert turn_seconds(pipeline, None, None, *_controls(decoder="audioldm2")) == gpu_seconds(
        "always", 10.0, "audioldm2", 25, loaded=False)
    # A video (attached now, or earlier in the session) with "match its length" may need the longest music.
    video = {"text": "score it", "files": [{"path": "demo/examples/clip.mp4"}]}
    longest = gpu_seconds("always", pipeline.config.decoder.max_duration, "musicgen", 25)
    assert turn_seconds(pipeline, video, None, *_controls()) == longest
    assert turn_seconds(pipeline, video, None, *_controls(fit_video=False)) == plain
    session = new_session(pipeline)
    session.conversation.active["video"] = "video-1"
    assert turn_seconds(pipeline, {"text": "again"}, session, *_controls()) == longest
    # Continuing a track generates the track's length on top of the new music.
    song = tmp_path / "song.wav"
    sf.write(song, np.zeros(8000 * 5, dtype=np.float32), 8000)
    session = new_session(pipeline)
    pipeline.chat(session.conversation, "listen", audio=song)
    assert turn_seconds(pipeline, None, session, *_controls(edit="music-1")) == gpu_seconds(
        "always", 15.0, "musicgen", 25)
    assert turn_seconds(pipeline, None, None, *_controls(duration="ten")) == MIN_SECONDS  # the handler refuses it


def test_on_gpu_hands_spaces_the_estimate(monkeypatch):
    def handler(x):
        return x

    assert on_gpu(handler) is handler  # no spaces package here
    calls = []
    fake = types.ModuleType("spaces")

    def gpu(duration):
        calls.append(duration)
        return lambda fn: ("wrapped", fn)

    fake.GPU = gpu
    monkeypatch.setitem(sys.modules, "spaces", fake)

    def estimate(x):
        return 90

    assert on_gpu(handler, estimate) == ("wrapped", handler)
    assert calls == [estimate]


def test_the_demo_reserves_per_call_for_chat_and_retry(pipeline, monkeypatch):
    from demo.ui import build_demo

    estimates = []
    fake = types.ModuleType("spaces")
    fake.GPU = lambda duration: estimates.append(duration) or (lambda fn: fn)
    monkeypatch.setitem(sys.modules, "spaces", fake)
    build_demo(pipeline)
    score, chat, retry = estimates  # the Score-a-video tab is laid out before the chat's events are wired
    assert score == SCORE_SECONDS
    expected = gpu_seconds("always", 30.0, "audioldm2", 50, loaded=False)  # this pipeline never loads it
    controls = ("always", 30.0, 0, False, 3.0, 0.0, 1.0, 50, "(none)", True, "audioldm2")
    assert chat({"text": "hi", "files": []}, [], None, *controls) == expected
    session = new_session(pipeline)
    session.sent.append({"text": "score it", "files": ["demo/examples/clip.mp4"]})  # retry re-sends the clip
    assert retry([], session, *controls) == gpu_seconds("always", 120.0, "audioldm2", 50, loaded=False)
    assert retry([], None, *controls) == expected


def test_zero_gpu_keeps_the_scheduler_out_of_the_way(pipeline, monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert chat_concurrency(pipeline) == 2 * pipeline.config.pipeline.max_batch
    assert pipeline.scheduler.batching  # concurrent calls share decoding batches
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    try:
        chat_concurrency(pipeline)
        assert not pipeline.scheduler.batching  # each call decodes alone on its own GPU slice
        conv = pipeline.new_conversation()
        assert pipeline.chat(conv, "hello", options=ChatOptions(music="never", max_new_tokens=3)).text is not None
        assert pipeline.scheduler.text._worker is None  # decoded in the caller's thread
    finally:
        pipeline.scheduler.batching = True
