"""Sign bit-packing: the layout every binary op consumes."""

import torch

from ._checks import pack_bits_output_shape


def pack_bits(x: torch.Tensor) -> torch.Tensor:
    """Packs the signs of ``x`` along its last dimension.

    Args:
        x: floating tensor ``[..., K]``, ``K >= 1`` (float32 / bfloat16 / float16 / float64),
            any strides. Signs are taken in ``x``'s own dtype.

    Returns:
        int32 tensor ``[..., ceil(K / 32)]``; bit ``j`` of word ``w`` is 1 iff
        ``x[..., 32 * w + j] >= 0`` (sign(0) = +1, NaN packs as -1); bits past ``K`` are 0.
    """
    return torch.ops.emokernels.pack_bits(x)


@torch.library.register_fake("emokernels::pack_bits")
def _(x: torch.Tensor) -> torch.Tensor:
    return x.new_empty(pack_bits_output_shape(x), dtype=torch.int32)


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
