"""Video analysis on clips made here: cuts within a frame, speech where the voice is, bad clips refused."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from bench.video_scoring import FPS, make_clip
from media.limits import MediaLimits
from media.video_analysis import analyze_video
from tests.media.helpers import rejects

CUTS = [1.2, 2.52, 3.6]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("va") / "clip.mp4", 5.0, CUTS, speech=(2.0, 4.0))


def test_cuts_land_within_one_frame(clip: Path) -> None:
    found = analyze_video(clip, speech=False)
    assert found.fps == FPS
    assert found.frames == 5 * FPS
    assert found.duration == pytest.approx(5.0)
    assert len(found.cuts) == len(CUTS)
    assert np.abs(np.array(found.cuts) - CUTS).max() <= 1 / FPS
    # The motion curve peaks on the cut frames and is quiet within shots.
    peaks = np.sort(np.argsort(found.motion)[-len(CUTS):])
    assert list(peaks) == [round(c * FPS) for c in CUTS]


def test_speech_is_found_where_the_voice_is(clip: Path) -> None:
    found = analyze_video(clip)
    assert found.audio is not None
    assert len(found.audio) == pytest.approx(5.0 * found.audio_rate, abs=0.05 * found.audio_rate)
    assert len(found.speech) >= 1
    start, end = found.speech[0][0], found.speech[-1][1]
    assert start == pytest.approx(2.0, abs=0.25)
    assert end == pytest.approx(4.0, abs=0.3)
    # Nothing outside the voiced second(s) counts as speech.
    assert all(a >= 2.0 - 0.25 and b <= 4.0 + 0.3 for a, b in found.speech)


def test_silent_clip_has_no_audio_and_no_speech(tmp_path: Path) -> None:
    found = analyze_video(make_clip(tmp_path / "mute.mp4", 2.0, [1.0], audio=False))
    assert found.audio is None
    assert found.speech == []
    assert found.cuts == [pytest.approx(1.0)]


def test_bad_clips_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with rejects(empty, "empty"):
        analyze_video(empty)
    song = tmp_path / "song.mp4"
    sf.write(tmp_path / "song.wav", np.zeros(8000, dtype=np.float32), 8000)
    (tmp_path / "song.wav").rename(song)
    with rejects(song, "no video stream"):
        analyze_video(song)
    clip = make_clip(tmp_path / "long.mp4", 3.0, [1.0], audio=False)
    with rejects(clip, "over the 2 s limit"):
        analyze_video(clip, MediaLimits(max_video_seconds=2.0))
    blink = tmp_path / "blink.mp4"
    with av.open(str(blink), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        for packet in [*stream.encode(av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8))),
                       *stream.encode()]:
            container.mux(packet)
    with rejects(blink, "at least 0.5 s"):
        analyze_video(blink)
