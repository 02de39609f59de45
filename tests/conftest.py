"""Synthetic Caltech-101-shaped data, archives of it, and a local HTTP server for download tests."""

import http.server
import io
import os
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PROJECT = Path(__file__).resolve().parents[1]
SHARED = PROJECT.parent / "shared"

# Distinct colours make the synthetic classes linearly separable, so a short run really learns. The noise is weak
# enough that a tiny network trained for a few epochs separates them on any CPU's kernels, not just most of the time.
COLOURS = [(220, 40, 40), (40, 200, 60), (50, 80, 230), (230, 200, 40), (200, 60, 210), (40, 210, 210)]
NOISE = 10
# Another draw of every synthetic image: `TEST_DATA_SEED=3 pytest ...` checks that a learning test's margin does not
# hang on one lucky draw.
DATA_SEED = int(os.environ.get("TEST_DATA_SEED", 0))


def synthetic_image(class_index, rng, size=(48, 40)):
    base = np.array(COLOURS[class_index % len(COLOURS)], dtype=np.float32)
    pixels = base + rng.normal(0, NOISE, size=(size[1], size[0], 3))
    # A class-specific texture besides the colour: vertical stripes, horizontal stripes or a checkerboard. Batch norm
    # over a few images of one class removes their mean colour, and a random crop moves a stripe anywhere, but the
    # orientation of a texture survives both.
    y, x = np.mgrid[0 : size[1], 0 : size[0]] // 4
    texture = (x % 2, y % 2, (x + y) % 2)[class_index % 3]
    pixels[texture == 1] = 255 - base
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_tree(root, per_class=(12, 12, 12), background=4, extras=True, seed=0):
    """root/101_ObjectCategories/<class>/image_NNNN.jpg; with extras, one grayscale and one CMYK image,
    a non-image file and a truncated JPEG, as in the real archive's odd corners."""
    rng = np.random.default_rng([seed, DATA_SEED])
    cats = Path(root) / "101_ObjectCategories"
    names = [f"class_{i:02d}" for i in range(len(per_class))]
    for index, (name, count) in enumerate(zip(names, per_class)):
        folder = cats / name
        folder.mkdir(parents=True)
        for n in range(count):
            synthetic_image(index, rng).save(folder / f"image_{n + 1:04d}.jpg", quality=95)
    if background:
        folder = cats / "BACKGROUND_Google"
        folder.mkdir()
        for n in range(background):
            synthetic_image(5, rng).save(folder / f"image_{n + 1:04d}.jpg")
        if extras:
            (folder / "tmp").write_bytes(b"not an image at all\n")
    if extras:
        synthetic_image(0, rng).convert("L").save(cats / names[0] / "image_0901.jpg")
        synthetic_image(1, rng).convert("CMYK").save(cats / names[1] / "image_0902.jpg")
        good = io.BytesIO()
        synthetic_image(2, rng).save(good, format="JPEG")
        (cats / names[2] / "image_0903.jpg").write_bytes(good.getvalue()[:200])
        (cats / names[1] / "image_0904.jpg").write_text("a text file with an image name\n")
    return cats


def make_tar_gz(categories, path):
    with tarfile.open(path, "w:gz") as tf:
        tf.add(categories, arcname="101_ObjectCategories")
    return path


def make_official_zip(categories, path):
    """A zip laid out like the official download: caltech-101/101_ObjectCategories.tar.gz inside."""
    inner = Path(path).with_name("inner.tar.gz")
    make_tar_gz(categories, inner)
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(inner, "caltech-101/101_ObjectCategories.tar.gz")
    inner.unlink()
    return path


@pytest.fixture(scope="session")
def caltech_tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("tree"))


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves one payload with Range support; `cut_first` requests are cut off half-way."""

    payload = b""
    cut_first = 0
    requests = []

    def do_GET(self):
        type(self).requests.append(self.headers.get("Range"))
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(self.payload) - 1}/{len(self.payload)}")
        else:
            self.send_response(200)
        body = self.payload[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if type(self).cut_first > 0:
            type(self).cut_first -= 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)  # drop the connection mid-transfer
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    """Start a server on 127.0.0.1; returns serve(payload, cut_first=0) -> URL of the payload."""
    handler = type("Handler", (_Handler,), {"requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def serve(payload, cut_first=0):
        handler.payload, handler.cut_first = payload, cut_first
        return f"http://127.0.0.1:{server.server_address[1]}/files/caltech-101.zip?download=1"

    serve.requests = handler.requests
    yield serve
    server.shutdown()
    server.server_close()


@pytest.fixture
def in_dir(tmp_path):
    old = os.getcwd()
    os.chdir(tmp_path)
    yield tmp_path
    os.chdir(old)


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    """Split and cache of 3 separable synthetic classes: 8 train, 4 val and 6 test images each, 40 px."""
    from caltech_transfer.data import split
    from caltech_transfer.data.cache import build_cache

    root = tmp_path_factory.mktemp("small")
    cats = make_tree(root / "raw", per_class=(18, 18, 18), background=0, extras=False)
    build_cache(cats, root / "cache", image_size=40, fit="pad", workers=1)
    split.run(
        root / "cache",
        root / "split",
        {
            "scheme": "standard",
            "train_per_class": 12,
            "val_per_class": 4,
            "test_per_class": None,
            "ratios": [0.8, 0.1, 0.1],
            "include_background": False,
        },
        seed=0,
    )
    return root


# A fine-tuning run of the tests' tiny network that learns the synthetic classes with margin on any CPU's kernels
# and draw of the data: batches of 8 (4 per process when two share them) keep batch norm's statistics usable, and
# 15 epochs leave validation at its ceiling well before the end.
LEARNS = {"train.finetune.epochs": 15, "train.finetune_lr": 1e-3, "train.head_lr": 1e-3, "train.finetune.batch_size": 8}


def stage_params(stage, **overrides):
    """The params of `stage` from the tests' own params file (never the tuned defaults of params.yaml),
    with dotted-key overrides, validated like a real run."""
    from caltech_transfer.core.params import declared_keys, read_yaml, set_dotted, validate, with_speed_settings

    raw = read_yaml(Path(__file__).with_name("params.yaml"))
    for dotted, value in overrides.items():
        set_dotted(raw, dotted, value)
    return validate(raw, with_speed_settings(declared_keys(stage, PROJECT / "dvc.yaml")))


def data_paths(data, out, mode, params, weights="none"):
    """RunPaths for a run of `params` on `data` (split/ and cache/) writing under `out`: its backbone's starting
    weights those `weights` names for model.arch, written to out/pretrained.pt as the `pretrained` stage writes them,
    and their features of the cache in out/features, as the `features` stage writes them."""
    from caltech_transfer.core.layout import RunPaths

    write_inputs(data / "cache", out, params, weights)
    return RunPaths(
        data / "split",
        data / "cache",
        out / "pretrained.pt",
        out / "features",
        out / f"{mode}.pt",
        out / "metrics",
        out / "logs",
    )


def scoring_paths(data, metrics, features=None):
    """RunPaths for scoring a model on `data`'s test split (split/ and cache/) into `metrics`; a feature-extraction
    model reads its test features from `features`."""
    from caltech_transfer.core.layout import RunPaths

    return RunPaths(data / "split", data / "cache", None, features, None, metrics, None)


def write_inputs(cache, out, params, weights="none"):
    """What the `pretrained` and `features` stages write, for `params`, into out/pretrained.pt and out/features."""
    from caltech_transfer.model.checkpoints import write_pretrained
    from caltech_transfer.train.features import write_features

    write_pretrained(params["model"]["arch"], weights, out / "pretrained.pt")
    write_features(cache, out / "pretrained.pt", out / "features", params["model"], params["runtime"], batch_size=16)


RUNTIME = {"device": "cpu", "precision": "fp32", "channels_last": False, "compile": False}


@pytest.fixture(scope="session")
def trained(small_dataset, tmp_path_factory):
    """A fine-tuned checkpoint of the small dataset, trained with the LEARNS recipe: models/ and metrics/ under it."""
    from caltech_transfer.train import engine

    out = tmp_path_factory.mktemp("trained")
    params = stage_params("train_finetune", **LEARNS)
    paths = data_paths(small_dataset, out / "models", "finetune", params)
    paths.metrics = out / "metrics" / "finetune"
    engine.train("finetune", params, paths)
    return out


@pytest.fixture(scope="module")
def halves(tmp_path_factory):
    """A one-split cache of identical images, black on the left half and white on the right."""
    import torch

    from caltech_transfer.batches.datasets import CachedImages

    root = tmp_path_factory.mktemp("halves")
    pixels = np.zeros((64, 32, 32, 3), dtype=np.uint8)
    pixels[:, :, 16:] = 255
    np.save(root / "train.npy", pixels)
    images = CachedImages.__new__(CachedImages)
    images.file, images.labels, images.rows = root / "train.npy", torch.arange(64) % 2, list(range(64))
    return images
