"""Per-channel interval tests of a feature map, packed: the float start of a binary chain."""

import torch

from ._checks import pack_channels_output_shape


def pack_channels(x: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """Packs per-channel interval tests of a feature map into channels-last words.

    The float start of a binary chain: a layer's output, the per-channel monotone modules after
    it and the next layer's sign reduce to one interval of values per channel.

    Args:
        x: float32 ``[B, C, H, W]``, any strides (NCHW and channels-last are read in place).
        lower, upper: float32 ``[C]``, inclusive bounds (``-inf`` / ``inf`` for none; an empty
            interval makes the channel -1 everywhere).

    Returns:
        int32 ``[B, H, W, ceil(C / 32)]``: bit ``j`` of word ``w`` is 1 iff
        ``lower[c] <= x[b, c, h, w] <= upper[c]`` for ``c = 32 w + j`` (NaN: 0); bits past
        ``C`` are 0. With ``lower = 0`` and ``upper = inf`` this is
        ``pack_bits(x.permute(0, 2, 3, 1))`` (NaN included).
    """
    return torch.ops.emokernels.pack_channels(x, lower, upper)


@torch.library.register_fake("emokernels::pack_channels")
def _(x, lower, upper):
    return x.new_empty(pack_channels_output_shape(x, lower, upper), dtype=torch.int32)
