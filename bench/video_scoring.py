"""Video scoring on generated clips: BHS / BCS before vs after fitting, and fitting time per minute of video.

    OMP_NUM_THREADS=1 python -m bench.video_scoring [--clips 6] [--seconds 60]

Each clip has random scene cuts (solid colour shots), each track a random tempo with an accented bass downbeat;
the same generators make the test fixtures (tests/media, tests/mumu).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from scipy.signal import butter, find_peaks, sosfiltfilt

SR = 48_000
FPS = 25


def speechlike(seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Syllables of a voiced source through vowel formants with a falling pitch, each led by a short fricative."""
    vowels = [(730, 1090, 2440), (270, 2290, 3010), (530, 1840, 2480), (300, 870, 2240), (660, 1720, 2410)]
    out = np.zeros(round(seconds * sr))
    pos = 0
    while pos < len(out):
        n = int(rng.uniform(0.12, 0.25) * sr)
        formants = vowels[rng.integers(len(vowels))]
        f0 = np.linspace(rng.uniform(120, 180), rng.uniform(90, 130), n)
        phase = 2 * np.pi * np.cumsum(f0) / sr
        syllable = sum(
            (sum(np.exp(-(((h * f0) - f) / (80 + 40 * k)) ** 2) / (k + 1) for k, f in enumerate(formants)) + 0.05 / h)
            * np.sin(h * phase) for h in range(1, 40))
        gap = int(rng.uniform(0.03, 0.08) * sr)
        chunk = np.concatenate([0.1 * rng.standard_normal(gap) * np.hanning(gap), syllable * np.hanning(n)])
        out[pos : pos + len(chunk)] = chunk[: len(out) - pos]
        pos += len(chunk)
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


def click_track(bpm: float, seconds: float, sr: int = SR) -> tuple[np.ndarray, np.ndarray]:
    """A 4/4 track: a bass thump on every downbeat, a high click on the other beats, over a held A major chord.

    Its peak-to-loudness ratio (~15 dB) is a mixed track's, so levelling to -14 LUFS needs under 3 dB of limiting.
    Returns (wav, downbeat times)."""
    n = round(seconds * sr)
    x = sum(0.1 * np.sin(2 * np.pi * f * np.arange(n) / sr) for f in (220.0, 277.18, 329.63)).astype(np.float32)
    t = np.arange(round(0.1 * sr)) / sr
    thump = (0.5 * np.sin(2 * np.pi * 80 * t) * np.exp(-t * 30)).astype(np.float32)
    click = (0.25 * np.sin(2 * np.pi * 1760 * t) * np.exp(-t * 60)).astype(np.float32)
    beat = 60.0 / bpm
    downbeats = []
    for i in range(int(seconds / beat) + 1):
        start = round(i * beat * sr)
        if start >= len(x):
            break
        sound = thump if i % 4 == 0 else click
        x[start : start + len(sound)] += sound[: len(x) - start]
        if i % 4 == 0:
            downbeats.append(i * beat)
    return x, np.array(downbeats)


def downbeat_onsets(wav: np.ndarray, sr: int) -> np.ndarray:
    """Where the bass thumps start (an independent detector: low-pass energy peaks, 5 ms steps)."""
    low = sosfiltfilt(butter(4, 150, "low", fs=sr, output="sos"), np.asarray(wav, dtype=np.float64))
    hop = round(0.005 * sr)
    energy = np.square(low[: len(low) // hop * hop]).reshape(-1, hop).mean(axis=1)
    rise = np.diff(energy, prepend=[0.0, 0.0])  # two leading zeros: a thump on the first frame is a peak too
    peaks, _ = find_peaks(rise, height=0.2 * rise.max(), distance=round(0.3 * sr / hop))
    return (peaks - 1) * hop / sr


def make_clip(path: Path, seconds: float, cuts: list[float], speech: tuple[float, float] | None = None,
              audio: bool = True, seed: int = 0, size: tuple[int, int] = (64, 48)) -> Path:
    """An H.264 clip of solid-colour shots changing at `cuts`, with an AAC soundtrack (speech-like where asked)."""
    rng = np.random.default_rng(seed)
    colors = rng.integers(0, 256, (len(cuts) + 1, 3))
    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        sound = container.add_stream("aac", rate=SR, layout="mono") if audio else None
        for i in range(round(seconds * FPS)):
            shot = sum(i >= round(c * FPS) for c in cuts)
            img = np.clip(colors[shot] + rng.normal(0, 3, (height, width, 3)), 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if sound is not None:
            track = (0.002 * rng.standard_normal(round(seconds * SR))).astype(np.float32)
            if speech is not None:
                a, b = round(speech[0] * SR), round(speech[1] * SR)
                track[a:b] += speechlike((b - a) / SR, SR, rng)
            frame = av.AudioFrame.from_ndarray(track[None], format="fltp", layout="mono")
            frame.sample_rate = SR
            for packet in [*sound.encode(frame), *sound.encode(None)]:
                container.mux(packet)
    return path


def _random_clip(folder: Path, i: int, seconds: float, rng: np.random.Generator) -> tuple[Path, np.ndarray, float]:
    cuts = np.sort(rng.uniform(1.0, seconds - 1.5, max(1, int(seconds / 3))))
    cuts = [float(c) for k, c in enumerate(cuts) if k == 0 or c - cuts[k - 1] > 0.8]
    clip = make_clip(folder / f"clip{i}.mp4", seconds, cuts, seed=i, size=(32, 24))
    bpm = float(rng.uniform(80, 140))
    music, _ = click_track(bpm, seconds * 0.6, SR)  # shorter than the clip: fitting also loops bars
    return clip, music, bpm


def main() -> None:
    from media.video_analysis import analyze_video
    from mumu.scoring import fit_for_video

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each generated clip")
    args = parser.parse_args()
    av.logging.set_level(av.logging.ERROR)  # no encoder statistics between the rows
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for i in range(args.clips):
            path, music, bpm = _random_clip(Path(folder), i, args.seconds, rng)
            clip = analyze_video(path, speech=False)
            tick = time.perf_counter()
            scored = fit_for_video(clip, music, SR)
            total = time.perf_counter() - tick
            rows.append((bpm, len(scored.hit_points), scored.scores, scored.seconds["fitting"], total, clip.duration))
    print(f"{'clip':>4} {'bpm':>6} {'hits':>4} {'BHS before':>10} {'BHS after':>9} {'BCS before':>10} "
          f"{'BCS after':>9} {'fit s/min':>9} {'+analysis':>9}")
    for i, (bpm, hits, scores, fit, total, duration) in enumerate(rows):
        b, a = scores["before"], scores["after"]
        print(f"{i:>4} {bpm:>6.1f} {hits:>4} {b['bhs']:>10.2f} {a['bhs']:>9.2f} {b['bcs']:>10.2f} {a['bcs']:>9.2f} "
              f"{60 * fit / duration:>9.2f} {60 * total / duration:>9.2f}")
    before, after = (np.mean([r[2][when]["bhs"] for r in rows]) for when in ("before", "after"))
    fit, total = (np.mean([60 * r[k] / r[5] for r in rows]) for k in (3, 4))
    print(f"mean BHS {before:.2f} -> {after:.2f}; fitting {fit:.2f} s per minute of video (target < 5 s), "
          f"{total:.2f} s with the music analysis")


if __name__ == "__main__":
    main()
