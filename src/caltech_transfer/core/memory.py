"""How much memory a stage took: the peak resident size, which counts the pages of the memory-mapped image cache
it read (page cache the kernel drops when it needs them), and the peak anonymous memory (heap, tensors), which is
what a machine runs out of."""

import os
import resource
import sys
import threading
from pathlib import Path

SAMPLE_SECONDS = 0.1  # a peak shorter than this may be missed; training's peaks last whole steps
CHILDREN_EVERY = 10  # samples between looks at the children: reading their page tables costs milliseconds


def status_bytes(pid, field):
    """A size from /proc/<pid>/status (RssAnon: the anonymous resident memory), 0 where the process has ended."""
    return _field(f"/proc/{pid}/status", field)


def private_bytes(pid):
    """Memory a forked child wrote after the fork (its private dirty pages): what it adds to its parent's, which
    it shares until written. Its RssAnon would count the shared pages once more in every child."""
    return _field(f"/proc/{pid}/smaps_rollup", "Private_Dirty")


def _field(path, field):
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def descendants(pid):
    """The process ids of every child of `pid`, their children, and so on (loader workers, torchrun's processes)."""
    found, todo = [], [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
            found += children
            todo += children
    return found


class AnonymousPeak:
    """Samples, in a daemon thread from its creation on, this process's anonymous memory plus what its descendants
    added to it; `gib` is the largest sum seen, or None where /proc cannot tell (macOS)."""

    def __init__(self):
        self.peak = 0
        self.available = Path(f"/proc/{os.getpid()}/smaps_rollup").exists()
        if self.available:
            threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self):
        pid, children, n = os.getpid(), 0, 0
        while True:
            if n % CHILDREN_EVERY == 0:
                children = sum(private_bytes(child) for child in descendants(pid))
            self.peak = max(self.peak, status_bytes(pid, "RssAnon") + children)
            n += 1
            threading.Event().wait(SAMPLE_SECONDS)

    @property
    def gib(self):
        return self.peak / 2**30 if self.available else None


def peak_memory(anonymous=None):
    """The largest resident size this process and any one of its children (loader workers) reached, the peak
    anonymous memory of all of them together where `anonymous` sampled it, and the GPU memory allocated where CUDA
    was used (torch is looked up, not imported: data stages never load it)."""
    own, child = (resource.getrusage(who).ru_maxrss / 2**20 for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    text = f"peak memory {own:.2f} GiB (largest child process {child:.2f} GiB)"  # ru_maxrss is in KiB on Linux
    if anonymous is not None and anonymous.gib is not None:
        text += f", anonymous {anonymous.gib:.2f} GiB (with its children)"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        text += f", GPU {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
    return text
