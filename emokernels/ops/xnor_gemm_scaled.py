"""XNOR-popcount GEMM with the binary layers' epilogue fused in."""

from __future__ import annotations

import torch

from ._checks import xnor_gemm_scaled_output_shape


def xnor_gemm_scaled(a_bits: torch.Tensor, b_bits: torch.Tensor, k: int, scale: torch.Tensor,
                     bias: torch.Tensor | None = None,
                     offset: torch.Tensor | None = None,
                     offset_index: torch.Tensor | None = None) -> torch.Tensor:
    """``float(xnor_gemm(a_bits, b_bits, k) + offset[m % P]) * scale + bias`` in one pass.

    Args:
        a_bits, b_bits, k: as :func:`xnor_gemm` (int32 ``[M, W]``, ``[N, W]``).
        scale: float32 ``[N]``, multiplies each output column.
        bias: optional float32 ``[N]``, added after the scaling (a separate rounding, no FMA).
        offset: optional int32 ``[P, N]`` with ``P`` dividing ``M``, added to the integer dot
            of row ``m`` as ``offset[m % P]`` (a convolution's per-position correction).
        offset_index: optional int32 ``[P]`` with ``P`` dividing ``M``: row ``m`` then adds
            ``offset[offset_index[m % P]]`` (``offset`` ``[Q, N]``, each entry in ``[0, Q)``;
            checked, a device sync on CUDA). A convolution's correction takes a few distinct
            rows: as a table and an index per pixel it stays in cache.

    Returns:
        float32 ``[M, N]``.
    """
    return torch.ops.emokernels.xnor_gemm_scaled(a_bits, b_bits, k, scale, bias, offset,
                                                 offset_index)


@torch.library.register_fake("emokernels::xnor_gemm_scaled")
def _(a_bits, b_bits, k, scale, bias=None, offset=None, offset_index=None):
    shape = xnor_gemm_scaled_output_shape(a_bits, b_bits, k, scale, bias, offset, offset_index)
    return a_bits.new_empty(shape, dtype=torch.float32)


def _setup_context(ctx, inputs, output) -> None:
    a_bits, b_bits, k, scale, bias, offset, offset_index = inputs
    ctx.k = k
    ctx.has_bias = bias is not None
    ctx.save_for_backward(a_bits, b_bits, scale, offset, offset_index)


def _backward(ctx, grad: torch.Tensor):
    a_bits, b_bits, scale, offset, offset_index = ctx.saved_tensors
    grad_scale = grad_bias = None
    if ctx.needs_input_grad[3]:
        unscaled = xnor_gemm_scaled(a_bits, b_bits, ctx.k, torch.ones_like(scale), None, offset,
                                    offset_index)
        grad_scale = (grad * unscaled).sum(0)
    if ctx.has_bias and ctx.needs_input_grad[4]:
        grad_bias = grad.sum(0)
    return None, None, None, grad_scale, grad_bias, None, None


torch.library.register_autograd("emokernels::xnor_gemm_scaled", _backward,
                                setup_context=_setup_context)
