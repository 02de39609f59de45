"""Training on several processes with DistributedDataParallel, launched by torchrun when `train.processes` asks
for more than one (NCCL on GPUs, gloo on the CPU). `train.<mode>.batch_size` stays the effective batch: each
process takes its share, so the learning rates mean the same whatever the number of processes. With one process
every function here is a no-op and the single-process path is unchanged."""

import math
import os
import subprocess
import sys

import torch
import torch.distributed as dist
from torch import nn

from ..core.errors import UserError


def relaunch(module, processes, batch_sizes):
    """Start `python -m <module>` with this command's arguments under torchrun with `processes` processes and
    exit with its status; nothing when one process is asked for or when this already is one of torchrun's."""
    if processes <= 1 or "LOCAL_RANK" in os.environ:
        return
    uneven = [name for name, size in batch_sizes.items() if size % processes]
    if uneven:
        raise UserError(
            f"train.{uneven[0]}.batch_size {batch_sizes[uneven[0]]} does not split evenly over "
            f"train.processes {processes}: make it a multiple of {processes}"
        )
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        module,
        *sys.argv[1:],
    ]
    sys.exit(subprocess.call(command))


def join(device):
    """Join the process group torchrun started (each process on its own GPU); the device to use."""
    if "LOCAL_RANK" not in os.environ or dist.is_initialized():
        return device
    if device == "cuda":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if device == "cuda" else "gloo")
    return device


def rank_and_size():
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def is_main():
    """Only the first process writes checkpoints, history, logs and metrics, and shows progress bars."""
    return rank_and_size()[0] == 0


def per_process(batch_size):
    return batch_size // rank_and_size()[1]


class ShardedSampler(torch.utils.data.Sampler):
    """This process's share of the indices: a permutation drawn from `generator` (seeded the same on every process
    each epoch, which makes it the epoch's shuffle) dealt out in turn, padded by wrapping around so that every
    process runs the same number of steps. Without shuffling, and for evaluation, no padding.

    `keyed`: each index comes with the seed of that image's random draws this epoch, `(index, seed)` (for
    `CachedImages`), a function of the generator's seed and the index alone: loader processes then crop and flip an
    image the same whichever of them reads it, whatever they read before, and however many there are."""

    def __init__(self, count, generator=None, shuffle=False, rank=None, size=None, keyed=False):
        self.count, self.generator, self.shuffle, self.keyed = count, generator, shuffle, keyed
        self.rank, self.size = (rank, size) if size else rank_and_size()

    def __len__(self):
        return math.ceil(self.count / self.size) if self.shuffle else len(range(self.rank, self.count, self.size))

    def __iter__(self):
        if not self.shuffle:
            return iter(range(self.rank, self.count, self.size))
        order = torch.randperm(self.count, generator=self.generator).tolist()
        order += order[: len(self) * self.size - self.count]
        mine = order[self.rank :: self.size]
        if not self.keyed:
            return iter(mine)
        epoch_draw = int(torch.randint(2**31, (), generator=self.generator))  # after the shuffle: it stays as it was
        return iter([(i, epoch_draw * self.count + i) for i in mine])


def wrap(net, device, batchnorm_trains, some_frozen_epochs):
    """The network that takes the training steps: `net` itself, or under torchrun its DDP wrapper, with batch
    norm synchronised across processes where it trains. Epochs with a frozen backbone leave parameters without
    gradients, which DDP must be told to expect."""
    if not dist.is_initialized():
        return net
    if batchnorm_trains and device == "cuda":  # SyncBatchNorm runs on GPUs only; on the CPU each process
        net = sync_batchnorm(net)  # normalises with its own share of the batch
    return nn.parallel.DistributedDataParallel(
        net,
        device_ids=[torch.cuda.current_device()] if device == "cuda" else None,
        find_unused_parameters=some_frozen_epochs,
    )


def sync_batchnorm(net):
    """`net` with every batch norm synchronised across processes and computing what it computed before. timm's
    conversion, not torch's: timm's BatchNormAct2d applies its activation inside the norm layer, and torch's
    conversion makes it a plain SyncBatchNorm that drops the activation (EfficientNet-Lite would lose every ReLU6).
    For torchvision's networks both conversions are the same."""
    from timm.layers import convert_sync_batchnorm

    return convert_sync_batchnorm(net)


def sum_over_processes(*values):
    """Each tensor summed over all processes (in place), for metrics each process computed on its share."""
    if dist.is_initialized():
        for value in values:
            moved = value.cuda() if dist.get_backend() == "nccl" else value  # NCCL reduces device tensors only
            dist.all_reduce(moved)
            value.copy_(moved)
    return values


def gather_in_order(outputs, count):
    """Rows computed by each process for its unpadded ShardedSampler share, put back in index order."""
    if not dist.is_initialized():
        return outputs
    rank, size = rank_and_size()
    longest = math.ceil(count / size)
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"  # NCCL moves device tensors only
    padded = torch.zeros((longest, *outputs.shape[1:]), dtype=outputs.dtype, device=device)
    padded[: len(outputs)] = outputs
    shards = [torch.empty_like(padded) for _ in range(size)]
    dist.all_gather(shards, padded)
    ordered = torch.stack(shards, 1).reshape(longest * size, *outputs.shape[1:])  # index i*size + r
    return ordered[:count].cpu()
