"""The GPU path's own checks, `pytest -m cuda` (benchmarks/gpu.sh runs them). Skipped without a GPU; with
`CUDA_TESTS_ON=cpu` their code runs on the CPU instead (gpu.sh's dry run), so that a GPU run cannot fail on a
mistake the CPU could have shown. What only a GPU can show (host waits, fp16) is checked on the GPU only."""

import os
import warnings

import pytest
import torch

from caltech_transfer.batches.device_batches import DeviceBatches
from caltech_transfer.train import engine
from caltech_transfer.train.runtime import Runtime
from conftest import LEARNS
from test_engine import run

pytestmark = pytest.mark.cuda


@pytest.fixture
def device():
    device = os.environ.get("CUDA_TESTS_ON", "cuda")
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (CUDA_TESTS_ON=cpu runs this code on the CPU)")
    return device


def test_training_on_the_gpu_waits_for_it_only_every_few_steps(device, halves, monkeypatch):
    """CUDA's sync debug mode warns at every host wait: one per CHECK_EVERY steps and the epoch's totals, not one
    per step, on the path a GPU user takes (device-resident batches, autocast, channels_last)."""
    runtime = Runtime({"device": device, "precision": "auto", "channels_last": True, "compile": False})
    batches = DeviceBatches(halves, 2, runtime.device, 24, train=True, generator=torch.Generator().manual_seed(0))
    net = runtime.place(
        torch.nn.Sequential(
            torch.nn.BatchNorm2d(3), torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 22 * 22, 2)
        )
    )  # batch norm: the pixels are 0-255
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    scaler = torch.amp.GradScaler(device, enabled=runtime.amp_dtype == torch.float16)
    steps = engine.Optimization(optimizer, scheduler, scaler, torch.nn.CrossEntropyLoss(), grad_clip=0.0, mixer=None)
    monkeypatch.setattr(engine, "CHECK_EVERY", 10)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            *_, seen = engine.train_one_epoch(net, batches, steps, runtime, "sync test")
    finally:
        if device == "cuda":
            torch.cuda.set_sync_debug_mode("default")
    waits = [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message)]
    # 32 steps: the loss is looked at after steps 10, 20, 30 and the last; at the end the image count goes to the
    # device and the totals come back. A bound rather than an exact list, so a harmless change of the loop passes;
    # three waits per step (host copies from pageable memory) would exceed it many times over.
    assert seen == 64 and len(waits) <= 6, waits


def test_fp16_with_the_grad_scaler_and_a_compiled_network_learn(device, small_dataset, tmp_path):
    """The GPU's other paths: fp16 autocast with the grad scaler (auto's choice on GPUs without native bf16) and
    torch.compile, on the device-resident batches (fp32 on the CPU, which refuses fp16)."""
    settings = {
        **LEARNS,
        "runtime.device": device,
        "runtime.precision": "fp16" if device == "cuda" else "fp32",
        "runtime.compile": True,
        "train.data_path": "device",
    }
    summary, checkpoint = run("finetune", small_dataset, tmp_path, **settings)
    assert summary["best_val_accuracy"] >= 0.9  # chance is 1/3
    assert not any(key.startswith("_orig_mod") for key in checkpoint["state_dict"])  # the module's own keys
