"""load_image: every PIL mode to RGB, transparency over white, EXIF orientation, limits and broken files."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from media.image_io import load_image
from media.limits import MediaLimits
from tests.media.helpers import rejects

WHITE, BLACK, RED, BLUE = (255, 255, 255), (0, 0, 0), (255, 0, 0), (0, 0, 255)


def two_halves(mode: str, left: object, right: object) -> Image.Image:
    """A 16x16 image of `mode`: columns 0-7 hold `left`, columns 8-15 hold `right`."""
    image = Image.new(mode, (16, 16), right)
    image.paste(left, (0, 0, 8, 16))
    return image


def palette_with_transparency() -> Image.Image:
    image = two_halves("P", 0, 1)
    image.putpalette([255, 0, 0, 0, 0, 0] + [0] * 762)
    image.info["transparency"] = 1
    return image


# (mode, file format, builder, expected RGB of the left half, expected RGB of the right half)
MODES: list[tuple[str, str, Callable[[], Image.Image], tuple, tuple]] = [
    ("1", "PNG", lambda: two_halves("1", 1, 0), WHITE, BLACK),
    ("L", "PNG", lambda: two_halves("L", 100, 200), (100,) * 3, (200,) * 3),
    ("LA", "PNG", lambda: two_halves("LA", (0, 0), (100, 255)), WHITE, (100,) * 3),
    ("P", "PNG", palette_with_transparency, RED, WHITE),
    ("RGB", "PNG", lambda: two_halves("RGB", RED, BLUE), RED, BLUE),
    ("RGBA", "PNG", lambda: two_halves("RGBA", (0, 0, 0, 0), (0, 0, 255, 255)), WHITE, BLUE),
    ("CMYK", "TIFF", lambda: two_halves("CMYK", (0, 0, 0, 0), (255, 0, 0, 0)), WHITE, (0, 255, 255)),
    ("I;16", "PNG", lambda: two_halves("I;16", 65535, 32896), WHITE, (128,) * 3),
    ("I;16B", "TIFF", lambda: two_halves("I;16B", 0, 65535), BLACK, WHITE),
    ("I", "TIFF", lambda: two_halves("I", 65535, 0), WHITE, BLACK),
]


@pytest.mark.parametrize(("mode", "fmt", "build", "left", "right"), MODES, ids=[m[0] for m in MODES])
def test_every_mode_becomes_rgb_with_the_right_colours(tmp_path, mode, fmt, build, left, right):
    path = tmp_path / f"image.{fmt.lower()}"
    build().save(path, format=fmt)
    with Image.open(path) as stored:
        assert stored.mode == mode
    image = load_image(path)
    assert image.mode == "RGB"
    assert image.size == (16, 16)
    assert image.getpixel((2, 8)) == left
    assert image.getpixel((12, 8)) == right


def test_partial_alpha_is_blended_over_white(tmp_path):
    path = tmp_path / "half.png"
    Image.new("RGBA", (16, 16), (255, 0, 0, 128)).save(path)
    red, green, blue = load_image(path).getpixel((5, 5))
    assert red == 255
    assert green == pytest.approx(127, abs=1)
    assert blue == pytest.approx(127, abs=1)


def test_mode_i_with_8_bit_values_is_not_rescaled(tmp_path):
    path = tmp_path / "eight.tiff"
    Image.new("I", (16, 16), 200).save(path)
    assert load_image(path).getpixel((3, 3)) == (200, 200, 200)


@pytest.mark.parametrize(
    ("orientation", "marker_at", "blank_at"), [(6, (15, 5), (5, 5)), (8, (5, 35), (5, 5))]
)
def test_exif_orientation_is_applied(tmp_path, orientation, marker_at, blank_at):
    # Stored 40 wide x 20 high with a red block in the top-left corner. Orientation 6 means "rotate
    # 90° clockwise to display" (the block ends top-right); 8 means counter-clockwise (bottom-left).
    stored = Image.new("RGB", (40, 20), WHITE)
    stored.paste(RED, (0, 0, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif.tobytes(), quality=95)
    image = load_image(path)
    assert image.size == (20, 40)
    red, green, blue = image.getpixel(marker_at)
    assert red > 200
    assert max(green, blue) < 60
    assert min(image.getpixel(blank_at)) > 200


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animations_give_their_first_frame(tmp_path, fmt):
    path = tmp_path / f"anim.{fmt.lower()}"
    frames = [Image.new("RGB", (16, 16), colour) for colour in (RED, BLUE, WHITE)]
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], duration=100, lossless=True)
    with Image.open(path) as stored:
        assert stored.n_frames == 3
    assert load_image(path).getpixel((8, 8)) == RED


def test_pixel_and_side_limits(tmp_path):
    path = tmp_path / "square.png"
    Image.new("RGB", (16, 16)).save(path)
    with rejects(path, r"16x16 = 256 pixels, over the 100 pixel limit"):
        load_image(path, limits=MediaLimits(max_image_pixels=100))
    thin = tmp_path / "thin.png"
    Image.new("RGB", (4, 32)).save(thin)
    with rejects(thin, r"4x32, smaller than 8 pixels on a side"):
        load_image(thin)


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims `width` x `height` (CRC fixed up, so PIL accepts the header)."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def test_pixel_limit_is_checked_from_the_header_before_decoding(tmp_path):
    # 81 Mpx is over the 64 Mpx default but under PIL's own bomb check; decoding would report truncation.
    path = png_claiming(tmp_path / "huge.png", 9_000, 9_000)
    with rejects(path, "9000x9000 = 81,000,000 pixels, over the 64,000,000 pixel limit"):
        load_image(path)


def test_pil_decompression_bomb_becomes_a_media_error(tmp_path):
    path = png_claiming(tmp_path / "bomb.png", 20_000, 20_000)
    with rejects(path, "too many pixels"):
        load_image(path, limits=MediaLimits(max_image_pixels=10**9))


def test_truncated_jpeg_is_rejected(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    whole = io.BytesIO()
    Image.fromarray(noise).save(whole, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    with rejects(path, "truncated"):
        load_image(path)


def test_non_images_are_rejected(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not pixels")
    with rejects(text, r"not a readable image file \(accepted: png, jpg, jpeg, webp"):
        load_image(text)
    sound = tmp_path / "sound.png"
    sf.write(sound, np.zeros(4_410, np.float32), 44_100, format="WAV")
    with rejects(sound, "not a readable image file"):
        load_image(sound)


def test_missing_empty_and_oversized_files_are_rejected(tmp_path):
    with rejects(tmp_path / "gone.png", "file not found"):
        load_image(tmp_path / "gone.png")
    empty = tmp_path / "empty.png"
    empty.touch()
    with rejects(empty, "empty"):
        load_image(empty)
    path = tmp_path / "ok.png"
    Image.new("RGB", (16, 16)).save(path)
    with rejects(path, "MB, over the .* MB limit"):
        load_image(path, limits=MediaLimits(max_bytes=10))
