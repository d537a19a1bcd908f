"""XNOR-popcount GEMM whose epilogue writes the next binary layer's packed input."""

from __future__ import annotations

import torch

from ._checks import xnor_gemm_sign_output_shape


def xnor_gemm_sign(a_bits: torch.Tensor, b_bits: torch.Tensor, k: int, bounds: torch.Tensor,
                   offset: torch.Tensor | None = None,
                   offset_index: torch.Tensor | None = None) -> torch.Tensor:
    """Bit-packed ``lower[n] <= xnor_gemm(a_bits, b_bits, k)[m, n] + offset[m % P, n] <= upper[n]``.

    A binary layer's float epilogue, the BatchNorm after it and the next layer's sign are
    monotone in the integer dot, so per output channel they reduce exactly to an interval of
    dots; this op evaluates that interval and packs the result as :func:`pack_bits` would the
    float values.

    Args:
        a_bits, b_bits, k: as :func:`xnor_gemm` (int32 ``[M, W]``, ``[N, W]``).
        bounds: int32 ``[2, N]``: the lower bounds, then the upper bounds (inclusive; an empty
            interval, lower > upper, gives a channel that is always -1).
        offset: optional int32 ``[P, N]`` with ``P`` dividing ``M``, added to the integer dot
            of row ``m`` as ``offset[m % P]`` (wrapping as int32).
        offset_index: optional int32 ``[P]``, rows of ``offset`` ``[Q, N]`` picked per row as
            in :func:`xnor_gemm_scaled`.

    Returns:
        int32 ``[M, ceil(N / 32)]``: bit ``j`` of word ``w`` is output channel ``32 * w + j``
        (1: +1); bits past ``N`` are 0.
    """
    return torch.ops.emokernels.xnor_gemm_sign(a_bits, b_bits, k, bounds, offset, offset_index)


@torch.library.register_fake("emokernels::xnor_gemm_sign")
def _(a_bits, b_bits, k, bounds, offset=None, offset_index=None):
    shape = xnor_gemm_sign_output_shape(a_bits, b_bits, k, bounds, offset, offset_index)
    return a_bits.new_empty(shape, dtype=torch.int32)
