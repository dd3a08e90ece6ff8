"""Put generated music under a video: the picture is copied untouched, the soundtrack replaced (PyAV)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import av
import librosa
import numpy as np

from media.levelling import Levelling, limit_true_peak

AAC_RATE = 48_000
AAC_BIT_RATE = 256_000
# AAC's own overshoot on decode: on a dense, bright loop limited to -1.5 dBTP the decoded track measured -1.48 dBTP at
# 256 kb/s (and about +1.2 dB over the limit at PyAV's default bit rate), so the encoder gets this much extra headroom.
AAC_HEADROOM_DB = 0.5


def mux_music(video: str | Path, music: np.ndarray, sample_rate: int, out: str | Path,
              ceiling_dbtp: float = -1.0) -> Path:
    """Write `out` (.mp4): `video`'s picture stream remuxed as is, plus `music` as AAC trimmed/padded to its length.

    The music is resampled to 48 kHz first and its true peaks are then held AAC_HEADROOM_DB under `ceiling_dbtp`
    (resampling moves inter-sample peaks, so limiting comes after it, never before; the headroom absorbs the
    codec's overshoot), so the decoded soundtrack peaks under `ceiling_dbtp`. Its loudness is left as it is.
    """
    video, out = Path(video), Path(out)
    if out.suffix.lower() != ".mp4":
        raise ValueError(f"cannot write '{out.name}': muxed videos are written as .mp4")
    audio = np.asarray(music, dtype=np.float32)
    if audio.ndim > 1:
        audio = audio.mean(axis=0)
    audio = librosa.resample(audio, orig_sr=sample_rate, target_sr=AAC_RATE) if sample_rate != AAC_RATE else audio
    headroom = Levelling(target_lufs=None, ceiling_dbtp=ceiling_dbtp - AAC_HEADROOM_DB)
    audio, _ = limit_true_peak(audio, AAC_RATE, headroom)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.stem}.", suffix=".part.mp4")
    os.close(fd)
    try:
        with av.open(str(video)) as source, av.open(tmp, "w") as target:
            picture = source.streams.video[0]
            copied = target.add_stream_from_template(picture)
            seconds = float(picture.duration * picture.time_base) if picture.duration else float(
                source.duration / av.time_base)
            length = round(seconds * AAC_RATE)
            audio = np.pad(audio[:length], (0, max(0, length - len(audio))))
            sound = target.add_stream("aac", rate=AAC_RATE, layout="mono")
            sound.bit_rate = AAC_BIT_RATE
            for packet in source.demux(picture):
                if packet.dts is None:  # the demuxer's final flush packet
                    continue
                packet.stream = copied
                target.mux(packet)
            frame = av.AudioFrame.from_ndarray(audio[None], format="fltp", layout="mono")
            frame.sample_rate = AAC_RATE
            for packet in sound.encode(frame):
                target.mux(packet)
            for packet in sound.encode(None):
                target.mux(packet)
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out
