"""Binary-weight convolution on channels-last images."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import bwn_conv2d_output_shape
from .pack_bits import unpack_bits


def bwn_conv2d(x: torch.Tensor, w_bits: torch.Tensor, alpha: torch.Tensor, kernel_size,
               stride=(1, 1), dilation=(1, 1)) -> torch.Tensor:
    """Convolution of an already zero-padded channels-last image with packed +-1 weights.

    Args:
        x: float32, float16 or bfloat16 ``[B, H, W, C]``.
        w_bits: int32 ``[O, ceil(kh*kw*C / 32)]``, :func:`pack_bits` of the weights permuted
            to ``[O, kh, kw, C]`` and flattened.
        alpha: floating ``[O]``, the per-output-channel scale.
        kernel_size, stride, dilation: pairs of ints >= 1; the dilated kernel must fit in
            ``[H, W]``.

    Returns:
        ``[B, Ho, Wo, O]`` in ``x``'s dtype: ``alpha * conv(x, sign(W))``, float32 sums.
        Differentiable in ``x`` and ``alpha`` (like :func:`bwn_gemm`).
    """
    return torch.ops.emokernels.bwn_conv2d(x, w_bits, alpha, list(kernel_size), list(stride),
                                           list(dilation))


@torch.library.register_fake("emokernels::bwn_conv2d")
def _(x, w_bits, alpha, kernel_size, stride, dilation):
    return x.new_empty(bwn_conv2d_output_shape(x, w_bits, alpha, kernel_size, stride, dilation))


def unpack_conv_weight(w_bits: torch.Tensor, kernel_size, channels: int) -> torch.Tensor:
    """float32 ``[O, C, kh, kw]`` of +-1 from ``w_bits`` as :func:`bwn_conv2d` takes them
    (packed in (ky, kx, c) order)."""
    kh, kw = kernel_size
    signs = unpack_bits(w_bits, kh * kw * channels, torch.float32)
    return signs.view(-1, kh, kw, channels).permute(0, 3, 1, 2)


def _setup_context(ctx, inputs, output) -> None:
    x, w_bits, alpha, kernel_size, stride, dilation = inputs
    ctx.geometry = (list(kernel_size), list(stride), list(dilation))
    ctx.save_for_backward(x, w_bits, alpha)


def _backward(ctx, grad: torch.Tensor):
    x, w_bits, alpha = ctx.saved_tensors
    kernel_size, stride, dilation = ctx.geometry
    weight = unpack_conv_weight(w_bits, kernel_size, x.shape[3])
    grad32 = grad.float().permute(0, 3, 1, 2)  # [B, O, Ho, Wo]
    grad_x = grad_alpha = None
    if ctx.needs_input_grad[0]:
        image_shape = (x.shape[0], x.shape[3], x.shape[1], x.shape[2])
        scaled = grad32 * alpha.float()[:, None, None]
        grad_x = torch.nn.grad.conv2d_input(image_shape, weight, scaled, stride, 0, dilation)
        grad_x = grad_x.permute(0, 2, 3, 1).to(x.dtype)
    if ctx.needs_input_grad[2]:
        unscaled = F.conv2d(x.float().permute(0, 3, 1, 2), weight, None, stride, 0, dilation)
        grad_alpha = (grad32 * unscaled).sum((0, 2, 3)).to(alpha.dtype)
    return grad_x, None, grad_alpha, None, None, None


torch.library.register_autograd("emokernels::bwn_conv2d", _backward,
                                setup_context=_setup_context)
