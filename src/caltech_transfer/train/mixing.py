"""Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019): each training batch blended with a shuffled copy of
itself, and the loss weighted by how much of each of the two images the blend keeps. Both fight the
overfitting of a network trained from random weights on 25 images a class. With both alphas set, each batch
takes one of the two at random, as timm's mixup does. The draws come from torch's global generator, which the
engine seeds per epoch, so a resumed run mixes as an uninterrupted one."""

import math

import torch


class BatchMixer:
    def __init__(self, mixup_alpha, cutmix_alpha):
        self.alphas = {kind: alpha for kind, alpha in (("mixup", mixup_alpha), ("cutmix", cutmix_alpha)) if alpha > 0}

    @classmethod
    def of(cls, recipe):
        """The recipe's mixer, or None where it mixes nothing."""
        mixer = cls(recipe.get("mixup_alpha", 0.0), recipe.get("cutmix_alpha", 0.0))
        return mixer if mixer.alphas else None

    def __call__(self, inputs, targets):
        """(mixed inputs, the targets of the images mixed in, the weight of the original targets)."""
        kinds = list(self.alphas)
        kind = kinds[int(torch.randint(len(kinds), ()))]
        alpha = self.alphas[kind]
        keep = float(torch.distributions.Beta(alpha, alpha).sample())
        order = torch.randperm(len(targets)).to(inputs.device)
        if kind == "mixup":
            mixed = inputs.float().mul(keep).add_(inputs[order].float(), alpha=1 - keep)
            return mixed, targets[order], keep
        mixed, kept = cutmix(inputs, order, keep)
        return mixed, targets[order], kept


def cut_box(height, width, keep):
    """The box (top, bottom, left, right) pasted from the other image: 1 - keep of the area, centred at a random
    point and clipped at the edges."""
    cut = math.sqrt(1 - keep)
    cy, cx = int(torch.randint(height, ())), int(torch.randint(width, ()))
    half_h, half_w = int(height * cut) // 2, int(width * cut) // 2
    return max(cy - half_h, 0), min(cy + half_h, height), max(cx - half_w, 0), min(cx + half_w, width)


def cutmix(inputs, order, keep):
    """(inputs with a box of the shuffled images pasted in, the fraction of each image left as it was)."""
    height, width = inputs.shape[-2:]
    top, bottom, left, right = cut_box(height, width, keep)
    mixed = inputs.clone()
    mixed[..., top:bottom, left:right] = inputs[order][..., top:bottom, left:right]
    return mixed, 1 - (bottom - top) * (right - left) / (height * width)
