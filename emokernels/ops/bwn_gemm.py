"""Binary-weight GEMM: float activations times packed +-1 weights with per-row scales."""

import torch

from ._words import words_for_bits
from .pack_bits import unpack_bits


def bwn_gemm(x: torch.Tensor, w_bits: torch.Tensor, alpha: torch.Tensor, k: int) -> torch.Tensor:
    """``x @ (alpha[:, None] * sign(W)).T`` with ``W`` stored as packed sign bits.

    Args:
        x: float32 or bfloat16 ``[M, k]``.
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
    torch._check(x.dim() == 2 and w_bits.dim() == 2 and alpha.dim() == 1,
                 lambda: "bwn_gemm: x and w_bits must be 2-D, alpha 1-D")
    torch._check(x.shape[1] == k and w_bits.shape[1] == words_for_bits(k),
                 lambda: "bwn_gemm: shapes do not match k")
    torch._check(alpha.shape[0] == w_bits.shape[0], lambda: "bwn_gemm: alpha must have N entries")
    torch._check(x.device == w_bits.device == alpha.device,
                 lambda: "bwn_gemm: all tensors must be on one device")
    return x.new_empty((x.shape[0], w_bits.shape[0]))


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
