"""A picture of a scored clip's timeline: soundtrack waveform, cuts, speech, beats before and after, hit points.

Drawn with PIL (matplotlib is not a dependency); one row per kind of event, all on the clip's time axis.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from mumu.scoring import ScoreResult

WIDTH, HEIGHT = 1200, 360
MARGIN = 150  # left column for the row labels
ROWS = ("waveform", "speech", "cuts", "hit points", "beats before", "beats after")
COLORS = {"waveform": (70, 110, 200), "speech": (250, 200, 90), "cuts": (90, 90, 90), "hit points": (220, 50, 50),
          "beats before": (150, 150, 150), "beats after": (40, 150, 80)}


def timeline_image(result: ScoreResult) -> Image.Image:
    """The timeline of one scored clip; downbeats are drawn taller than the other beats."""
    s = result.scored
    duration = s.clip.duration
    img = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(img)
    row_h = HEIGHT // len(ROWS)

    def x_of(t: float) -> int:
        return MARGIN + round((WIDTH - MARGIN - 10) * min(max(t / duration, 0.0), 1.0))

    def row(name: str) -> tuple[int, int]:
        top = ROWS.index(name) * row_h
        return top + 4, top + row_h - 4

    for name in ROWS:
        top, bottom = row(name)
        draw.text((8, (top + bottom) // 2 - 6), name, fill=COLORS[name])
        draw.line([(MARGIN, bottom + 3), (WIDTH - 10, bottom + 3)], fill=(230, 230, 230))
    _waveform(draw, result.mix.mix, row("waveform"), MARGIN, WIDTH - 10)
    top, bottom = row("speech")
    for a, b in s.clip.speech:
        draw.rectangle([x_of(a), top, x_of(b), bottom], fill=COLORS["speech"])
    for name, times in (("cuts", s.clip.cuts), ("hit points", s.hit_points)):
        top, bottom = row(name)
        for t in times:
            draw.line([(x_of(t), top), (x_of(t), bottom)], fill=COLORS[name], width=3)
    for name, beats, downbeats in (("beats before", s.before.beats, s.before.downbeats),
                                   ("beats after", s.fitted.beats, s.fitted.downbeats)):
        top, bottom = row(name)
        for t in beats[beats <= duration]:
            draw.line([(x_of(t), (top + bottom) // 2), (x_of(t), bottom)], fill=COLORS[name])
        for t in downbeats[downbeats <= duration]:
            draw.line([(x_of(t), top), (x_of(t), bottom)], fill=COLORS[name], width=3)
    for t in s.hit_points:  # the hit points, faintly across every row, show what should line up
        for y in range(0, HEIGHT, 6):
            draw.point((x_of(t), y), fill=COLORS["hit points"])
    draw.text((MARGIN, HEIGHT - 12), "0 s", fill=(0, 0, 0))
    draw.text((WIDTH - 60, HEIGHT - 12), f"{duration:.2f} s", fill=(0, 0, 0))
    return img


def _waveform(draw: ImageDraw.ImageDraw, wav: np.ndarray, rows: tuple[int, int], left: int, right: int) -> None:
    top, bottom = rows
    columns = right - left
    x = np.asarray(wav, dtype=np.float32)
    usable = len(x) // columns * columns
    if usable == 0:
        return
    peaks = np.abs(x[:usable]).reshape(columns, -1).max(axis=1)
    peaks = peaks / max(float(peaks.max()), 1e-9)
    mid, half = (top + bottom) // 2, (bottom - top) // 2
    for i, p in enumerate(peaks):
        draw.line([(left + i, mid - round(p * half)), (left + i, mid + round(p * half))], fill=COLORS["waveform"])
