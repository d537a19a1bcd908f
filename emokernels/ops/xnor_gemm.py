"""XNOR-popcount GEMM on bit-packed signs."""

import torch

from ._checks import xnor_gemm_output_shape


def xnor_gemm(a_bits: torch.Tensor, b_bits: torch.Tensor, k: int) -> torch.Tensor:
    """Exact integer ``sign(A) @ sign(B).T`` from packed signs.

    Args:
        a_bits: int32 ``[M, W]`` from :func:`pack_bits` of ``A [M, k]``.
        b_bits: int32 ``[N, W]`` from :func:`pack_bits` of ``B [N, k]``.
        k: number of valid bit positions, ``1 <= k < 2**31``, ``W == ceil(k / 32)``; bits past
            ``k`` are ignored.

    Returns:
        int32 ``[M, N]``: ``out[m, n] = sum_{i<k} s(a[m, i]) * s(b[n, i])`` with ``s = +-1``.
    """
    return torch.ops.emokernels.xnor_gemm(a_bits, b_bits, k)


@torch.library.register_fake("emokernels::xnor_gemm")
def _(a_bits: torch.Tensor, b_bits: torch.Tensor, k: int) -> torch.Tensor:
    return a_bits.new_empty(xnor_gemm_output_shape(a_bits, b_bits, k))
