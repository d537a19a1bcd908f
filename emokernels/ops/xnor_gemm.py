"""XNOR-popcount GEMM on bit-packed signs."""

import torch

from ._words import words_for_bits


def xnor_gemm(a_bits: torch.Tensor, b_bits: torch.Tensor, k: int) -> torch.Tensor:
    """Exact integer ``sign(A) @ sign(B).T`` from packed signs.

    Args:
        a_bits: int32 ``[M, W]`` from :func:`pack_bits` of ``A [M, k]``.
        b_bits: int32 ``[N, W]`` from :func:`pack_bits` of ``B [N, k]``.
        k: number of valid bit positions, ``W == ceil(k / 32)``; bits past ``k`` are ignored.

    Returns:
        int32 ``[M, N]``: ``out[m, n] = sum_{i<k} s(a[m, i]) * s(b[n, i])`` with ``s = +-1``.
    """
    return torch.ops.emokernels.xnor_gemm(a_bits, b_bits, k)


@torch.library.register_fake("emokernels::xnor_gemm")
def _(a_bits: torch.Tensor, b_bits: torch.Tensor, k: int) -> torch.Tensor:
    torch._check(a_bits.dim() == 2 and b_bits.dim() == 2, lambda: "xnor_gemm: operands must be 2-D")
    torch._check(a_bits.dtype == torch.int32 and b_bits.dtype == torch.int32,
                 lambda: "xnor_gemm: operands must be int32")
    torch._check(a_bits.shape[1] == b_bits.shape[1] == words_for_bits(k),
                 lambda: "xnor_gemm: word counts must equal ceil(k/32)")
    torch._check(a_bits.device == b_bits.device,
                 lambda: "xnor_gemm: all tensors must be on one device")
    return a_bits.new_empty((a_bits.shape[0], b_bits.shape[0]))
