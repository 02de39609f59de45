"""What the training and evaluation stages share at run time: the device, the precision, and batched inference.
Read from the `runtime` params section, so a setting of the training loader alone (`train.workers`) reruns no
evaluate stage."""

import ctypes
import ctypes.util
import functools
import platform
from pathlib import Path

import torch
from tqdm import tqdm

from ..core.errors import UserError
from .distributed import is_main, join


def resolve_device(name):
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("runtime.device is cuda but no GPU is visible to torch; set runtime.device: auto or cpu")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def autocast_dtype(precision, device):
    """The autocast dtype, or None for fp32. auto: bf16 on CUDA GPUs that have it (Ampere and later), fp16 with the
    grad scaler on older ones (T4, V100: torch emulates bf16 there, slowly), fp32 on the CPU. On the CPU
    bf16 is neither reliably faster (it depends on the CPU, the network and the input size; emulated where the CPU
    lacks it) nor the same result (docs/performance.md), so fp32 keeps a run comparable across CPUs; bf16 is an
    opt-in there."""
    if precision == "auto":
        if device == "cpu":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    if precision == "fp16" and device == "cpu":
        raise UserError("runtime.precision fp16 needs CUDA; on CPU use bf16 or fp32")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


@functools.cache
def glibc():
    """The C library when it is glibc (it has mallopt and malloc_trim), else None (macOS, musl)."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    return libc if libc is not None and hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def keep_freed_memory():
    """Ask glibc to serve every allocation from its heap and not hand freed memory back to the kernel after each
    free. By default each tensor over 32 MB gets fresh pages from mmap and returns them on free, so every training
    step page-faults its activations in again, and the kernel's time for that dominates small CPUs
    (docs/performance.md has the measurements)."""
    libc = glibc()
    if libc is None:
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    no_mmap = libc.mallopt(M_MMAP_MAX, 0)
    return bool(no_mmap and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))  # the largest threshold an int holds


def release_freed_memory():
    """Hand the heap's free pages back to the kernel once (glibc's malloc_trim), for one page-fault pass
    afterwards. The training loop calls it every `engine.CHECK_EVERY` steps, at the end of each epoch and after
    validation, whose blocks rarely fit the training's tensors: that bounds the heap's slow growth within training
    (docs/performance.md, memory). Pure inference does not call it: one working set, reused batch after batch."""
    libc = glibc()
    if libc is not None:
        libc.malloc_trim(0)


PRECISION_NAMES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def cpu_model():
    """The CPU's model name as Linux reports it (e.g. "AMD EPYC"), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"


class Runtime:
    """Device, autocast dtype and memory format, resolved once from the `runtime` params."""

    def __init__(self, params):
        self.device = join(resolve_device(params["device"]))  # under torchrun: this process's GPU
        if self.device == "cpu":
            keep_freed_memory()
        self.amp_dtype = autocast_dtype(params["precision"], self.device)
        self.channels_last = params["channels_last"]
        self.compile = params["compile"]

    def describe(self):
        """Where and in which precision this process computes, as the run's summary records it."""
        if self.device == "cpu":
            where = f"{cpu_model()} ({torch.get_num_threads()} threads)"
        else:
            where = torch.cuda.get_device_name(self.device)
        return {"device": where, "precision": PRECISION_NAMES[self.amp_dtype]}

    def autocast(self):
        return torch.autocast(self.device, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None)

    def to_device(self, inputs):
        inputs = inputs.to(self.device, non_blocking=True)
        if self.channels_last and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return inputs

    def compiled(self, fn):
        """`fn` through torch.compile where runtime.compile asks for it (the weights stay in the original module,
        so checkpoints keep their keys); compiling costs a minute or more before the first batch."""
        return torch.compile(fn) if self.compile else fn

    def inference_workers(self, workers):
        """Loader processes for evaluation (`evaluate.workers`): none on the CPU, where the network's threads already
        use every core and the evaluation crop of cached pixels is cheap next to the network, so processes would only
        take cores from it (the benchmark, docs/performance.md, compares both)."""
        return workers if self.device != "cpu" else 0

    def place(self, model):
        return model.to(self.device, memory_format=torch.channels_last if self.channels_last else torch.preserve_format)

    def infer(self, fn, loader, desc):
        """fn(inputs) over a loader without gradients: (outputs as float32, labels), both on the CPU (device-made
        batches carry their labels on the device). They stay on the device until the end, so the host waits
        once, not once per batch."""
        outputs, labels = [], []
        with torch.inference_mode(), self.autocast():
            for inputs, targets in tqdm(loader, desc=desc, unit="batch", leave=False, disable=not is_main()):
                outputs.append(fn(self.to_device(inputs)).float())
                labels.append(targets)
        return torch.cat(outputs).cpu(), torch.cat(labels).cpu()

    def release_freed_memory(self):
        if self.device == "cpu":
            release_freed_memory()
