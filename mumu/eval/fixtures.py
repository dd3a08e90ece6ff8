"""Small bundled-format benchmark files for every `mumu eval` task: `python -m mumu.eval.fixtures OUT_DIR`.

Writes synthetic media (click tracks at known tempi, flat-colour images, a video with hard cuts at known times)
and, beside them, the data files in the published layouts: `muchomusic.csv` (the official columns; audio found
by the published MusicCaps / Song Describer file names), `muchomusic.json` (prepare_prompts.py's form),
`captions.jsonl`, and one prompt file per generation task. One MuChoMusic item names a track that is not
there, so the skip-and-report path is exercised.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import av
import numpy as np
import soundfile as sf
from PIL import Image

from mumu.eval.data import LETTERS, categories, prompt_for

RATE = 24_000
SECONDS = 2.0
FPS = 10
CUTS = (0.5, 1.0, 1.5)  # seconds at which the fixture video cuts to a new flat colour
TRACKS = (("sdd", "1001", 120.0), ("sdd", "1002", 90.0), ("musiccaps", "abcDEF12345", 150.0),
          ("musiccaps", "xyzUVW67890", 100.0))
QUESTIONS = (
    ("What is the tempo of the click track?", "Moderate", "Very slow", "Heavy distortion", "A string quartet"),
    ("Which instrument plays?", "Synthetic clicks", "A church organ", "Slow tempo", "A choir"),
    ("What is the mood?", "Mechanical", "Romantic", "In 3/4 time", "Loud brass"),
    ("How is the rhythm?", "Steady pulse", "Free rubato", "Minor key", "Spoken word"),
)


def click_track(bpm: float, seconds: float = SECONDS, rate: int = RATE, pitch: float = 660.0) -> np.ndarray:
    """Short decaying tone bursts on every beat: an easy, known-tempo signal for beat trackers."""
    wave = np.zeros(int(seconds * rate), np.float32)
    burst = np.arange(int(0.04 * rate)) / rate
    click = (np.sin(2 * np.pi * pitch * burst) * np.exp(-burst * 80)).astype(np.float32) * 0.6
    for beat in np.arange(0.0, seconds, 60.0 / bpm):
        start = int(beat * rate)
        wave[start:start + len(click)] += click[: len(wave) - start]
    return wave


def write_cut_video(path: Path, seconds: float = SECONDS, cuts: tuple[float, ...] = CUTS) -> Path:
    """Lossless H.264 of flat colours that change exactly at `cuts` (seconds)."""
    colours = np.random.default_rng(0).integers(0, 256, (len(cuts) + 1, 3))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"crf": "0", "preset": "ultrafast"}
        for index in range(int(seconds * FPS)):
            shot = sum(index / FPS >= cut for cut in cuts)
            pixels = np.broadcast_to(colours[shot].astype(np.uint8), (48, 64, 3)).copy()
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _media(out: Path) -> dict[str, Path]:
    paths = {}
    for dataset, track, bpm in TRACKS:
        if dataset == "sdd":
            path = out / "sdd" / "audio" / track[-2:] / f"{track}.2min.mp3"
        else:
            path = out / "musiccaps" / "audio" / f"[{track}]-[30-40].wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, click_track(bpm, pitch=440.0 + bpm), RATE)
        paths[track] = path
    images = out / "images"
    images.mkdir(exist_ok=True)
    for i, colour in enumerate(((200, 40, 40), (40, 40, 200))):
        Image.new("RGB", (32, 32), colour).save(images / f"image{i}.png")
    (out / "videos").mkdir(exist_ok=True)
    write_cut_video(out / "videos" / "clip0.mp4")
    write_cut_video(out / "videos" / "clip1.mp4", cuts=(0.7, 1.3))
    return paths


def _muchomusic(out: Path) -> None:
    rows = []
    tracks = [*TRACKS, ("musiccaps", "missing0000", 0.0)]  # no audio written: skipped and reported
    for i, (dataset, track, _) in enumerate(tracks):
        question, correct, *distractors = QUESTIONS[i % len(QUESTIONS)]
        identifier = f"{track}.json" if dataset == "sdd" else f"{track}_{i}.json"
        rows.append({"question": question, "correct_answer": correct, "distractor_1_answer": distractors[0],
                     "distractor_2_answer": distractors[1], "distractor_3_answer": distractors[2],
                     "dataset": dataset, "dataset_identifier": identifier, "genre": ("Electronic", "Pop")[i % 2],
                     "music_reasoning": "['temporal and rhythm']" if i % 2 else "[]",
                     "music_knowledge": "['instrumentation']" if i % 3 == 0 else "[]"})
    with (out / "muchomusic.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    prepared = []
    for i, row in enumerate(rows[:4]):
        original = [row["correct_answer"], row["distractor_1_answer"], row["distractor_2_answer"],
                    row["distractor_3_answer"]]
        order = [(i + k) % 4 for k in range(4)]
        answers = [original[j] for j in order]
        audio = {1001: "sdd/audio/01/1001.2min.mp3", 1002: "sdd/audio/02/1002.2min.mp3"}
        track = TRACKS[i][1]
        path = audio.get(int(track)) if track.isdigit() else f"musiccaps/audio/[{track}]-[30-40].wav"
        prepared.append({"id": int(track) if track.isdigit() else track, "prompt": prompt_for(row["question"], answers),
                         "answers": answers, "answer_orders": order, "dataset": row["dataset"], "genre": row["genre"],
                         "reasoning": categories(row["music_reasoning"]),
                         "knowledge": categories(row["music_knowledge"]), "audio_path": path,
                         "model_output": LETTERS[0]})
    (out / "muchomusic.json").write_text(json.dumps(prepared, indent=1), encoding="utf-8")


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def _task_files(out: Path, audio: dict[str, Path]) -> None:
    tracks = [str(path.relative_to(out)) for path in audio.values()]
    captions = ["a steady synthetic click track", "slow clicks with a bright tone", "fast mechanical clicks",
                "a simple pulse of short beeps"]
    pairs = list(enumerate(zip(tracks, captions, strict=True)))
    _jsonl(out / "captions.jsonl", [{"id": f"cap{i}", "audio": track, "question": "Describe the music in detail",
                                     "answer": caption} for i, (track, caption) in pairs])
    _jsonl(out / "text2music.jsonl", [{"id": f"t2m{i}", "prompt": caption, "reference": track}
                                      for i, (track, caption) in pairs])
    _jsonl(out / "image2music.jsonl", [{"id": f"i2m{i}", "image": f"images/image{i}.png", "reference": tracks[i],
                                        "prompt": "Generate music that matches this image"} for i in range(2)])
    _jsonl(out / "video2music.jsonl", [{"id": f"v2m{i}", "video": f"videos/clip{i}.mp4", "reference": tracks[i],
                                        "prompt": "Generate music for this video"} for i in range(2)])
    _jsonl(out / "edit.jsonl", [{"id": f"edit{i}", "source": tracks[i], "reference": tracks[i + 2],
                                 "prompt": "Make it faster and brighter"} for i in range(2)])


def make_fixtures(out_dir: str | Path) -> Path:
    """Write every fixture under out_dir; returns it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    audio = _media(out)
    _muchomusic(out)
    _task_files(out, audio)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    print(make_fixtures(parser.parse_args().out_dir))
