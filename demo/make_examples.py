"""Generate the demo's example inputs (synthetic, so no licence questions): python -m demo.make_examples."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import soundfile as sf
from PIL import Image

EXAMPLES = Path(__file__).parent / "examples"
SR = 16_000


def piano_phrase() -> np.ndarray:
    """A C-major arpeggio of decaying harmonic tones, 3 s."""
    notes = [261.63, 329.63, 392.0, 523.25, 392.0, 329.63]
    out = np.zeros(3 * SR, dtype=np.float32)
    step = len(out) // len(notes)
    t = np.arange(step * 2) / SR
    for i, f in enumerate(notes):
        tone = sum(np.sin(2 * np.pi * f * k * t) / k**1.5 for k in (1, 2, 3, 4)) * np.exp(-3 * t)
        end = min(len(out), i * step + len(tone))
        out[i * step : end] += 0.25 * tone[: end - i * step]
    return out / np.abs(out).max() * 0.8


def sunset(width: int = 256, height: int = 160) -> Image.Image:
    """A warm gradient sky over a dark sea."""
    y = np.linspace(0, 1, height)[:, None, None]
    sky = np.concatenate([np.full_like(y, 1.0), 0.35 + 0.45 * y, 0.3 * (1 - y)], axis=2)
    img = np.broadcast_to(sky, (height, width, 3)).copy()
    img[int(height * 0.7) :] = [0.05, 0.08, 0.2]
    return Image.fromarray((img * 255).astype(np.uint8))


def write_clip(path: Path, seconds: int = 2, fps: int = 12) -> None:
    """A moving colour bar, H.264 without sound: the kind of clip a creator wants music for."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        for i in range(seconds * fps):
            frame = np.zeros((96, 128, 3), dtype=np.uint8)
            frame[:, :] = [20, 30, 60]
            x = int(i * 128 / (seconds * fps))
            frame[:, x : x + 16] = [250, 180, 60]
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def main() -> None:
    """Write every example file."""
    EXAMPLES.mkdir(exist_ok=True)
    sf.write(EXAMPLES / "piano.wav", piano_phrase(), SR, subtype="PCM_16")
    sunset().save(EXAMPLES / "sunset.png")
    write_clip(EXAMPLES / "clip.mp4")
    print(f"wrote examples to {EXAMPLES}")


if __name__ == "__main__":
    main()
