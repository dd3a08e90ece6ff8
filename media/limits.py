"""What a media input may be: sizes and lengths checked before anything is decoded."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class MediaLimits:
    """What a media input may be; anything beyond gets a MediaError naming the limit."""

    max_bytes: int = 512 * 2**20
    max_audio_seconds: float = 900.0
    min_audio_seconds: float = 0.05
    max_video_seconds: float = 900.0
    max_image_pixels: int = 64_000_000
    min_image_side: int = 8
