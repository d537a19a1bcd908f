"""Binary-weight convolution on channels-last images (inference)."""

from __future__ import annotations

import torch

from ._words import words_for_bits


def bwn_conv2d(x: torch.Tensor, w_bits: torch.Tensor, alpha: torch.Tensor, kernel_size,
               stride=(1, 1), dilation=(1, 1)) -> torch.Tensor:
    """Convolution of an already zero-padded channels-last image with packed +-1 weights.

    Args:
        x: float32 or bfloat16 ``[B, H, W, C]``.
        w_bits: int32 ``[O, ceil(kh*kw*C / 32)]``, :func:`pack_bits` of the weights permuted
            to ``[O, kh, kw, C]`` and flattened.
        alpha: floating ``[O]``, the per-output-channel scale.
        kernel_size, stride, dilation: pairs of ints.

    Returns:
        ``[B, Ho, Wo, O]`` in ``x``'s dtype: ``alpha * conv(x, sign(W))``, float32 sums.
        Inference only (no gradient).
    """
    return torch.ops.emokernels.bwn_conv2d(x, w_bits, alpha, list(kernel_size), list(stride),
                                           list(dilation))


@torch.library.register_fake("emokernels::bwn_conv2d")
def _(x, w_bits, alpha, kernel_size, stride, dilation):
    torch._check(x.dim() == 4, lambda: "bwn_conv2d: x must be [B, H, W, C]")
    b, h, w, c = x.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
    torch._check(w_bits.shape[1] == words_for_bits(kh * kw * c),
                 lambda: "bwn_conv2d: w_bits must hold ceil(kh*kw*C/32) words per row")
    ho = (h - dh * (kh - 1) - 1) // sh + 1
    wo = (w - dw * (kw - 1) - 1) // sw + 1
    return x.new_empty((b, ho, wo, w_bits.shape[0]))


def _no_backward(ctx, grad):
    raise RuntimeError("bwn_conv2d is inference-only: train BinaryConv2d in train mode, which "
                       "computes in float with a straight-through estimator")


torch.library.register_autograd("emokernels::bwn_conv2d", _no_backward)
