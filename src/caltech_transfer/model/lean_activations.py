"""ReLU6 that keeps its output for the backward pass instead of a copy of its input.

PyTorch's ReLU6, in place or not, keeps its input for the gradient (in place, a clone of it), and the next
convolution keeps the output as well: two activation-sized tensors per ReLU6. The gradient is the same function
of the output (it passes where 0 < input < 6, that is where 0 < output < 6), so keeping only the output drops one
of them, a large share of a ReLU6 network's training memory (docs/performance.md). `tests/test_models.py` checks the
saving and that the gradients are bitwise the same."""

import torch
from torch import nn
from torch.nn import functional as F


class _ReLU6(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, inplace):
        if inplace:  # no new tensor, and no hole left in the CPU heap where the input was
            ctx.mark_dirty(x)
        out = F.hardtanh(x, 0.0, 6.0, inplace=inplace)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return torch.ops.aten.hardtanh_backward(grad, out, 0.0, 6.0), None


class LeanReLU6(nn.ReLU6):
    def forward(self, x):
        return _ReLU6.apply(x, self.inplace)


def keep_outputs_for_backward(model):
    """Make every ReLU6 in `model` a LeanReLU6 (same outputs, same gradients, one activation fewer kept)."""
    for module in model.modules():
        if type(module) is nn.ReLU6:
            module.__class__ = LeanReLU6
    return model
