"""Load any image file as an upright RGB PIL image, with transparency composited over white."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from media.errors import MediaError
from media.files import accepted, check_file
from media.limits import MediaLimits

# What PIL raises for broken image data, depending on the plugin (UnidentifiedImageError is an OSError).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error)
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "PA")
_WHITE = (255, 255, 255, 255)


def load_image(path: str | Path, limits: MediaLimits | None = None) -> Image.Image:
    """Decode `path` (first frame if animated) to an RGB image, EXIF orientation applied, within `limits`."""
    limits = limits or MediaLimits()
    p = check_file(path, limits)
    with _open(p) as image:
        width, height = image.size
        # The header gives the size, so an oversized image is refused before any pixel is decoded.
        if width * height > limits.max_image_pixels:
            raise MediaError(
                p,
                f"image is {width}x{height} = {width * height:,} pixels, over the "
                f"{limits.max_image_pixels:,} pixel limit",
            )
        if min(width, height) < limits.min_image_side:
            raise MediaError(
                p, f"image is {width}x{height}, smaller than {limits.min_image_side} pixels on a side"
            )
        try:
            # open() only reads the header; a full load() is what finds truncated or corrupt data.
            image.load()
            upright = ImageOps.exif_transpose(image)
        except _DECODE_ERRORS as e:
            raise MediaError(p, f"is truncated or corrupt ({e})") from e
    try:
        return _to_rgb(upright)
    except ValueError as e:
        raise MediaError(p, f"has an unsupported colour mode {upright.mode} ({e})") from e


def _open(p: Path) -> Image.Image:
    try:
        return Image.open(p)
    except Image.DecompressionBombError as e:
        raise MediaError(p, f"image has too many pixels to decode safely ({e})") from e
    except UnidentifiedImageError as e:
        raise MediaError(p, "is not a readable image file", accepted=accepted("image")) from e
    except _DECODE_ERRORS as e:
        raise MediaError(p, f"is truncated or corrupt ({e})") from e


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode.startswith("I"):
        image = _to_eight_bit(image)
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        # Plain convert("RGB") drops alpha and leaves transparent pixels their hidden colour, usually black.
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")
    return image.convert("RGB")


def _to_eight_bit(image: Image.Image) -> Image.Image:
    # PIL converts I;16 and I to L/RGB by clipping at 255, turning most 16-bit images white; scale instead.
    # Mode I holds 16-bit samples in practice (TIFF, older Pillow's PNG) unless its values fit in 8 bits.
    values = np.asarray(image, dtype=np.float64)
    if image.mode != "I" or values.max(initial=0) > 255:
        values = values / 257
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))
