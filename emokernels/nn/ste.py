"""Sign with a straight-through estimator, and the binary-activation module."""

import torch
from torch import nn


class _SteSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


def ste_sign(x: torch.Tensor) -> torch.Tensor:
    """``+1`` where ``x >= 0`` else ``-1`` (same shape and dtype as ``x``).

    The gradient passes straight through where ``|x| <= 1`` and is 0 elsewhere.
    """
    return _SteSign.apply(x)


class BinaryActivation(nn.Module):
    """Binarizes activations to +-1 with :func:`ste_sign` (the "binary activations" variant)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ste_sign(x)
