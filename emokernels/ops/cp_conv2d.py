"""The CP-decomposed convolution of Lebedev et al.: a 1x1 projection to R channels, a kx1 and
a 1xk depthwise filter on each of them, and a 1x1 projection to N channels, as one op.

The dense kernel it stands for is ``W[n, c, y, x] = sum_r u_out[n, r] u_in[r, c] k_v[r, y]
k_h[r, x]``; with zero padding the op equals ``F.conv2d(x, W, bias, stride, padding)``.
On the CPU a fused C++ kernel keeps the R-channel intermediates of a block of output rows in
cache; on CUDA a fused Triton kernel keeps them in registers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch._prims_common import suggest_memory_format

from ._checks import cp_conv2d_output_shape


def cp_conv2d(x: torch.Tensor, u_in: torch.Tensor, k_v: torch.Tensor, k_h: torch.Tensor,
              u_out: torch.Tensor, bias: torch.Tensor | None = None,
              stride: Sequence[int] = (1, 1), padding: Sequence[int] = (0, 0)) -> torch.Tensor:
    """The CP convolution in one call.

    Args:
        x: ``[B, C, H, W]``, NCHW or channels-last; float32 on the CPU, float32 / float16 /
            bfloat16 on CUDA.
        u_in: ``[R, C]``, the first 1x1 projection.
        k_v: ``[R, kh]``, the vertical (kx1) depthwise filters.
        k_h: ``[R, kw]``, the horizontal (1xk) depthwise filters.
        u_out: ``[N, R]``, the last 1x1 projection.
        bias: optional ``[N]``. Every factor has ``x``'s dtype and device.
        stride, padding: pairs; zero padding, as ``F.conv2d``.

    Returns:
        ``[B, N, Ho, Wo]`` in ``x``'s dtype and memory format (channels-last in, channels-last
        out). Differentiable in ``x``, every factor and ``bias``.
    """
    stride, padding = [int(s) for s in stride], [int(p) for p in padding]
    if x.device.type == "cuda":
        from ..triton.cp_conv2d import cp_conv2d_triton
        return cp_conv2d_triton(x, u_in, k_v, k_h, u_out, bias, stride, padding)
    return torch.ops.emokernels.cp_conv2d(x, u_in, k_v, k_h, u_out, bias, stride, padding)


def cp_conv2d_reference(x: torch.Tensor, u_in: torch.Tensor, k_v: torch.Tensor,
                        k_h: torch.Tensor, u_out: torch.Tensor, bias: torch.Tensor | None = None,
                        stride: Sequence[int] = (1, 1),
                        padding: Sequence[int] = (0, 0)) -> torch.Tensor:
    """The same convolution as four ``F.conv2d`` stages (what the paper ran), with the
    arguments and result of :func:`cp_conv2d`; the slow reference of the fused kernels."""
    (sh, sw), (ph, pw) = stride, padding
    rank = u_in.shape[0]
    z = F.conv2d(x, u_in[:, :, None, None])
    z = F.conv2d(z, k_v[:, None, :, None], stride=(sh, 1), padding=(ph, 0), groups=rank)
    z = F.conv2d(z, k_h[:, None, None, :], stride=(1, sw), padding=(0, pw), groups=rank)
    return F.conv2d(z, u_out[:, :, None, None], bias)


def cp_dense_weight(u_in: torch.Tensor, k_v: torch.Tensor, k_h: torch.Tensor,
                    u_out: torch.Tensor) -> torch.Tensor:
    """The dense kernel ``[N, C, kh, kw]`` the factors stand for."""
    return torch.einsum("nr,rc,ry,rx->ncyx", u_out, u_in, k_v, k_h)


@torch.library.register_fake("emokernels::cp_conv2d")
def _(x, u_in, k_v, k_h, u_out, bias, stride, padding):
    shape = cp_conv2d_output_shape(x, u_in, k_v, k_h, u_out, bias, stride, padding)
    return x.new_empty(shape).contiguous(memory_format=suggest_memory_format(x))


def setup_cp_context(ctx, inputs, output) -> None:
    """``register_autograd`` context of the CP ops: every tensor input, and the geometry."""
    x, u_in, k_v, k_h, u_out, bias, stride, padding = inputs
    ctx.geometry = (list(stride), list(padding))
    ctx.has_bias = bias is not None
    ctx.save_for_backward(x, u_in, k_v, k_h, u_out)


def cp_backward(ctx, grad: torch.Tensor):
    """Gradients of the CP ops: the vector-Jacobian product of the four-stage composition
    (its intermediates recomputed, as the fused forward never stores them)."""
    x, u_in, k_v, k_h, u_out = ctx.saved_tensors
    stride, padding = ctx.geometry
    tensors = (x, u_in, k_v, k_h, u_out)

    def composed(x, u_in, k_v, k_h, u_out):
        return cp_conv2d_reference(x, u_in, k_v, k_h, u_out, None, stride, padding)

    _, vjp = torch.func.vjp(composed, *tensors)
    grads = vjp(grad.contiguous(memory_format=suggest_memory_format(grad)))
    grads = [g if need else None for g, need in zip(grads, ctx.needs_input_grad, strict=False)]
    grad_bias = grad.sum((0, 2, 3)) if ctx.has_bias and ctx.needs_input_grad[5] else None
    return (*grads, grad_bias, None, None)


torch.library.register_autograd("emokernels::cp_conv2d", cp_backward,
                                setup_context=setup_cp_context)


@torch.library.register_kernel("emokernels::cp_conv2d", "cuda")
def _(x, u_in, k_v, k_h, u_out, bias, stride, padding):
    # The op called directly on CUDA tensors runs the Triton kernel too (imported on first use:
    # triton is slow to import); cp_conv2d() calls the triton_op itself, which torch.compile
    # traces into.
    from ..triton.cp_conv2d import cp_conv2d_triton
    return cp_conv2d_triton(x, u_in, k_v, k_h, u_out, bias, stride, padding)
