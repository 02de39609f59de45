"""Every image mode PIL opens is decoded to the RGB picture a viewer shows, not merely without an error."""

import numpy as np
import pytest
from PIL import Image

from caltech_transfer.data.images import load_rgb


def decode(img, tmp_path, name, **save):
    path = tmp_path / name
    img.save(path, **save)
    return np.asarray(load_rgb(path)).astype(int)


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
    pixels = decode(Image.fromarray(ramp), tmp_path, "deep.png")
    assert pixels.shape == (8, 64, 3) and (pixels[..., 0] == pixels[..., 2]).all()
    assert pixels[0, 0, 0] == 0 and pixels[0, -1, 0] == 255
    assert abs(pixels[0, 32, 0] - 132) <= 2  # mid-grey, where clipping would give white


def test_float_images_in_zero_to_one_are_scaled(tmp_path):
    ramp = np.tile(np.linspace(0, 1, 32, dtype=np.float32), (4, 1))
    pixels = decode(Image.fromarray(ramp, "F"), tmp_path, "float.tif")
    assert pixels[0, 0, 0] == 0 and pixels[0, -1, 0] == 255 and 100 < pixels[0, 16, 0] < 160


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparent_pixels_show_white_as_in_a_viewer(tmp_path, mode):
    rgba = np.zeros((10, 20, 4), dtype=np.uint8)
    rgba[:, :10] = (0, 0, 0, 255)  # opaque black on the left
    rgba[:, 10:] = (0, 0, 0, 0)  # transparent on the right (black underneath)
    pixels = decode(Image.fromarray(rgba, "RGBA").convert(mode), tmp_path, f"{mode}.png")
    assert (pixels[:, :10] == 0).all() and (pixels[:, 10:] == 255).all()


def test_palette_with_a_transparent_index(tmp_path):
    img = Image.new("P", (8, 4))
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.paste(1, (4, 0, 8, 4))  # right half: index 1 (blue), which is declared transparent
    pixels = decode(img, tmp_path, "palette.png", transparency=1)
    assert (pixels[:, :4] == (255, 0, 0)).all() and (pixels[:, 4:] == 255).all()


def test_one_bit_images_stay_black_and_white(tmp_path):
    bits = np.zeros((8, 8), dtype=bool)
    bits[:, 4:] = True
    pixels = decode(Image.fromarray(bits).convert("1"), tmp_path, "bits.png")
    assert (pixels[:, :4] == 0).all() and (pixels[:, 4:] == 255).all()


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: a viewer turns it 90 degrees
    pixels = decode(img, tmp_path, "sideways.jpg", exif=exif.tobytes())
    assert pixels.shape[:2] == (40, 20)


def test_cmyk_and_grayscale_jpegs(tmp_path):
    cmyk = decode(Image.new("RGB", (8, 8), (200, 30, 30)).convert("CMYK"), tmp_path, "cmyk.jpg", quality=100)
    assert abs(cmyk[..., 0].mean() - 200) < 8 and cmyk[..., 1].mean() < 45
    gray = decode(Image.new("L", (8, 8), 90), tmp_path, "gray.jpg", quality=100)
    assert (gray[..., 0] == gray[..., 1]).all() and abs(gray.mean() - 90) < 3
