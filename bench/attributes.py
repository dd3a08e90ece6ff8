"""Synthetic media whose attributes are known, written in the published data formats, for bench/learning_probe.py.

Every music clip is a note sequence with seven independent binary attributes drawn at once (so each one has to
be read past the variation of the others): register, loudness, tempo, articulation, timbre, mode and contour.
Pictures are red or blue, videos show a square moving left or right. Each split is balanced per attribute.

Files written per split: MUCaps captions naming every attribute of a clip (stage 1), COCO and MUVideo caption
maps (stages 1 and 3: the published image/video stage-3 formats answer with music), and MusicQA with one
question per clip and attribute (stage 3).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import soundfile as sf
from PIL import Image

SR = 16_000
SECONDS = 2.0
NOISE_FLOOR = 0.002


@dataclass(frozen=True)
class Attribute:
    """A binary attribute: the modality it lives in, its two answer words and the question asked about it."""

    name: str
    modality: str
    values: tuple[str, str]
    question: str

    def value_in(self, text: str) -> str:
        """Which of the two values a text names (as a whole word)."""
        found = [v for v in self.values if re.search(rf"\b{v}\b", text)]
        if len(found) != 1:
            raise ValueError(f"{text!r} names {found or 'neither'} of {self.name}'s values {self.values}")
        return found[0]

    def with_value(self, text: str, value: str) -> str:
        """The text with this attribute's value replaced by `value`."""
        return re.sub(rf"\b({'|'.join(self.values)})\b", value, text)


def _music(name: str, values: tuple[str, str], question: str) -> Attribute:
    return Attribute(name, "music", values, question)


ATTRIBUTES: tuple[Attribute, ...] = (
    _music("register", ("low", "high"), "Is the register low or high?"),
    _music("loudness", ("quiet", "loud"), "Is it quiet or loud?"),
    _music("tempo", ("slow", "fast"), "Is the tempo slow or fast?"),
    _music("articulation", ("short", "long"), "Are the notes short or long?"),
    _music("timbre", ("pure", "bright"), "Is the timbre pure or bright?"),
    _music("mode", ("major", "minor"), "Is it major or minor?"),
    _music("contour", ("rising", "falling"), "Is the melody rising or falling?"),
    Attribute("colour", "image", ("red", "blue"), ""),
    Attribute("direction", "video", ("left", "right"), ""),
)
MUSIC = tuple(a for a in ATTRIBUTES if a.modality == "music")
BY_NAME = {a.name: a for a in ATTRIBUTES}
ANSWER = "It is {}."


# Media ---------------------------------------------------------------------------------------------------------
def melody(rng: np.random.Generator, values: dict[str, str]) -> np.ndarray:
    """A note sequence with the given music attribute values, over a fixed noise floor (so level is audible)."""
    root = rng.integers(40, 50) if values["register"] == "low" else rng.integers(72, 82)
    triad = (0, 4, 7) if values["mode"] == "major" else (0, 3, 7)
    rate = rng.uniform(2.0, 2.6) if values["tempo"] == "slow" else rng.uniform(6.5, 8.0)
    count = int(SECONDS * rate)
    ladder = np.array([octave * 12 + step for octave in range(3) for step in triad])
    steps = np.sort(rng.choice(ladder[: max(count, 4) + 2], size=count, replace=count > len(ladder)))
    steps = steps if values["contour"] == "rising" else steps[::-1]
    length = (0.2 if values["articulation"] == "short" else 0.95) / rate
    harmonics = 1 if values["timbre"] == "pure" else 8
    wav = np.zeros(int(SR * SECONDS))
    t = np.arange(int(length * SR)) / SR
    envelope = np.minimum(1, t / 0.005) * np.minimum(1, (length - t) / 0.01)
    for i, step in enumerate(steps):
        freq = 440 * 2 ** ((root + step - 69) / 12)
        tone = sum(np.sin(2 * np.pi * k * freq * t) / k for k in range(1, harmonics + 1) if k * freq < SR / 2)
        start = int(i / rate * SR)
        wav[start : start + len(t)] += (tone * envelope)[: len(wav) - start]
    peak = rng.uniform(0.03, 0.06) if values["loudness"] == "quiet" else rng.uniform(0.5, 0.9)
    wav = peak * wav / np.abs(wav).max() + NOISE_FLOOR * rng.standard_normal(len(wav))
    return wav.astype(np.float32)


def picture(rng: np.random.Generator, colour: str) -> Image.Image:
    """A noisy picture dominated by red or blue, with a random grey rectangle."""
    base = np.array([200, 40, 40] if colour == "red" else [40, 60, 200], dtype=np.float32)
    img = base + rng.normal(0, 30, (48, 48, 3))
    x, y = rng.integers(0, 32, 2)
    img[y : y + 12, x : x + 12] = rng.uniform(60, 200)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def clip(path: Path, rng: np.random.Generator, direction: str, frames: int = 8) -> None:
    """A bright square crossing a dark, noisy background to the left or to the right (H.264)."""
    y, size = int(rng.integers(4, 20)), 10
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        for i in range(frames):
            img = np.clip(rng.normal(30, 10, (32, 48, 3)), 0, 255).astype(np.uint8)
            x = int(4 + i * 30 / (frames - 1))
            x = x if direction == "right" else 48 - size - x
            img[y : y + size, x : x + size] = 240
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# Data files ----------------------------------------------------------------------------------------------------
def music_caption(values: dict[str, str]) -> str:
    """A stage-1 caption naming every music attribute of a clip."""
    v = values
    return (f"a {v['loudness']} {v['register']} {v['timbre']} melody, {v['tempo']}, {v['articulation']} notes, "
            f"{v['mode']}, {v['contour']}")


def balanced_values(rng: np.random.Generator, count: int) -> list[dict[str, str]]:
    """count samples, each attribute's two values on exactly half of them (count even), independently shuffled."""
    columns = {a.name: [a.values[i % 2] for i in rng.permutation(count)] for a in ATTRIBUTES}
    return [{name: column[i] for name, column in columns.items()} for i in range(count)]


def write_split(root: Path, split: str, count: int, rng: np.random.Generator) -> dict[str, Path]:
    """Media and data files of one split under root; returns data kind -> file."""
    for folder in ("audios", "images", "videos"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    mucaps, coco, videos, qa = {}, {}, {}, []
    for i, values in enumerate(balanced_values(rng, count)):
        audio, image, video = f"audios/{split}-{i}.wav", f"images/{split}-{i}.png", f"videos/{split}-{i}.mp4"
        sf.write(root / audio, melody(rng, values), SR, subtype="PCM_16")
        picture(rng, values["colour"]).save(root / image)
        clip(root / video, rng, values["direction"])
        mucaps[audio] = music_caption(values)
        coco[image] = f"a {values['colour']} picture"
        videos[video] = f"a square moving {values['direction']}"
        qa += [{"audio_name": audio, "conversation": [{"from": "human", "value": a.question},
                                                      {"from": "gpt", "value": ANSWER.format(values[a.name])}]}
               for a in MUSIC]
    files = {}
    for kind, data in (("mucaps", mucaps), ("coco", coco), ("muvideo-captions", videos), ("musicqa", qa)):
        files[kind] = root / f"{split}-{kind}.json"
        files[kind].write_text(json.dumps(data, indent=1))
    return files
