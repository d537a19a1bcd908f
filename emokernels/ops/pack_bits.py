"""Sign bit-packing: the layout every binary op consumes."""

import torch

from ._words import words_for_bits


def pack_bits(x: torch.Tensor) -> torch.Tensor:
    """Packs the signs of ``x`` along its last dimension.

    Args:
        x: floating tensor ``[..., K]`` (float32 / bfloat16 / float16 / float64), any strides.

    Returns:
        int32 tensor ``[..., ceil(K / 32)]``; bit ``j`` of word ``w`` is 1 iff
        ``x[..., 32 * w + j] >= 0`` (sign(0) = +1, NaN packs as -1); bits past ``K`` are 0.
    """
    return torch.ops.emokernels.pack_bits(x)


@torch.library.register_fake("emokernels::pack_bits")
def _(x: torch.Tensor) -> torch.Tensor:
    torch._check(x.dim() >= 1, lambda: "pack_bits: x must have at least 1 dimension")
    torch._check(x.dtype.is_floating_point, lambda: "pack_bits: x must be floating point")
    return x.new_empty((*x.shape[:-1], words_for_bits(x.shape[-1])), dtype=torch.int32)


def unpack_bits(bits: torch.Tensor, k: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Inverse of :func:`pack_bits` up to sign: int32 ``[..., W]`` -> ``[..., k]`` of +-1.

    Pure PyTorch (any device); used for gradients and references, not on hot paths.
    """
    if bits.dtype != torch.int32:
        raise TypeError(f"unpack_bits: bits must be int32, got {bits.dtype}")
    if not 1 <= k <= 32 * bits.shape[-1]:
        raise ValueError(f"unpack_bits: k={k} out of range for {bits.shape[-1]} words")
    shifts = torch.arange(32, device=bits.device, dtype=torch.int32)
    flat = ((bits.unsqueeze(-1) >> shifts) & 1).flatten(-2)[..., :k]
    return (flat * 2 - 1).to(dtype)
