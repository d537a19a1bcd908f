"""Binary-weight GEMM: float activations times packed +-1 weights with per-row scales."""

import torch

from ._checks import bwn_gemm_output_shape
from .pack_bits import unpack_bits


def bwn_gemm(x: torch.Tensor, w_bits: torch.Tensor, alpha: torch.Tensor, k: int) -> torch.Tensor:
    """``x @ (alpha[:, None] * sign(W)).T`` with ``W`` stored as packed sign bits.

    Args:
        x: float32, float16 or bfloat16 ``[M, k]``.
        w_bits: int32 ``[N, ceil(k / 32)]`` from :func:`pack_bits` of ``W [N, k]``.
        alpha: floating ``[N]``, the per-output-row scale.
        k: the reduction length, equal to ``x.shape[1]``.

    Returns:
        ``[M, N]`` in ``x``'s dtype, accumulated in float32. Differentiable in ``x`` and
        ``alpha``.
    """
    return torch.ops.emokernels.bwn_gemm(x, w_bits, alpha, k)


@torch.library.register_fake("emokernels::bwn_gemm")
def _(x: torch.Tensor, w_bits: torch.Tensor, alpha: torch.Tensor, k: int) -> torch.Tensor:
    return x.new_empty(bwn_gemm_output_shape(x, w_bits, alpha, k))


def _setup_context(ctx, inputs, output) -> None:
    x, w_bits, alpha, k = inputs
    ctx.k = k
    ctx.save_for_backward(x, w_bits, alpha)


def _backward(ctx, grad: torch.Tensor):
    x, w_bits, alpha = ctx.saved_tensors
    signs = unpack_bits(w_bits, ctx.k, torch.float32)
    grad32 = grad.float()
    grad_x = grad_alpha = None
    if ctx.needs_input_grad[0]:
        grad_x = ((grad32 * alpha.float()) @ signs).to(x.dtype)
    if ctx.needs_input_grad[2]:
        grad_alpha = (grad32 * (x.float() @ signs.T)).sum(0).to(alpha.dtype)
    return grad_x, None, grad_alpha, None


torch.library.register_autograd("emokernels::bwn_gemm", _backward, setup_context=_setup_context)
