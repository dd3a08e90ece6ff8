"""Muxing music under a video: picture copied untouched, soundtrack trimmed or padded to the clip."""

from __future__ import annotations

import av
import numpy as np
import pytest

from demo.make_examples import write_clip
from media.mux import mux_music


def _streams(path):
    with av.open(str(path)) as c:
        video = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        audio = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1)[0] if c.streams.audio else None
    return video, audio


@pytest.mark.parametrize("music_seconds", [1.0, 5.0])
def test_picture_is_kept_and_music_fits_the_clip(tmp_path, music_seconds):
    clip = tmp_path / "clip.mp4"
    write_clip(clip, seconds=2)
    sr = 16000
    music = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(sr * music_seconds)) / sr)).astype(np.float32)
    out = mux_music(clip, music, sr, tmp_path / "out.mp4")
    before, none = _streams(clip)
    after, audio = _streams(out)
    assert none is None
    assert len(after) == len(before) and all(np.array_equal(a, b) for a, b in zip(after, before, strict=True))
    assert len(audio) / 48000 == pytest.approx(2.0, abs=0.05)
    spectrum = np.abs(np.fft.rfft(audio[4800:24000]))
    assert np.argmax(spectrum) * 48000 / 19200 == pytest.approx(440, abs=5)
    assert not list(tmp_path.glob(".*part*"))


def test_only_mp4_output(tmp_path):
    with pytest.raises(ValueError, match=r"written as \.mp4"):
        mux_music("demo/examples/clip.mp4", np.zeros(100, np.float32), 16000, tmp_path / "out.mov")
