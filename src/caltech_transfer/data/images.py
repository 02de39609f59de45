"""Decoding an image as a viewer shows it, and fitting it to a square in one of three ways (`cache.fit`): the
one path every image takes, into the cache and into `caltech-predict` alike."""

import numpy as np
from PIL import Image, ImageOps

HIGH_DEPTH = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535, "F": 1.0}  # full scale


def load_rgb(path):
    """Decode any image as the RGB picture a viewer shows: EXIF orientation applied, transparent pixels over
    white, 16-bit and float pixels scaled to 8 bits (a plain convert clips them to white)."""
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        if img.mode in HIGH_DEPTH:
            pixels = np.asarray(img, dtype=np.float64) * (255.0 / HIGH_DEPTH[img.mode])
            img = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "L")
        if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
            rgba = img.convert("RGBA")
            return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
        return img.convert("RGB")


PAD_COLOUR = (124, 116, 104)  # the ImageNet mean, which normalisation maps to about zero


def centre_crop(img, size):
    """Shorter side to `size`, then the centre square: the image's long sides are lost."""
    scale = size / min(img.size)
    w, h = max(size, round(img.width * scale)), max(size, round(img.height * scale))
    img = img.resize((w, h), Image.BICUBIC)
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def pad(img, size):
    """Longer side to `size`, centred on PAD_COLOUR: the whole image, and its shape (Caltech's `Faces` are
    landscape photos, its `Faces_easy` portrait crops of the same photos)."""
    scale = size / max(img.size)
    w, h = max(1, round(img.width * scale)), max(1, round(img.height * scale))
    square = Image.new("RGB", (size, size), PAD_COLOUR)
    square.paste(img.resize((w, h), Image.BICUBIC), ((size - w) // 2, (size - h) // 2))
    return square


def squash(img, size):
    """Both sides to `size`: the whole image, stretched."""
    return img.resize((size, size), Image.BICUBIC)


FITS = {"crop": centre_crop, "pad": pad, "squash": squash}  # the choices of `cache.fit`


def fit_square(img, size, fit):
    """The image as a size x size square, fitted as FITS[fit] does (bicubic, antialiased)."""
    img.draft("RGB", (size, size))  # lets JPEG decode at a reduced scale when the image is much larger
    return FITS[fit](img, size)
