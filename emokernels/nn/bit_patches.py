"""im2col in channels-last order: float patches for BWN, packed-word patches for XNOR."""

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops


def conv_output_size(module: nn.Conv2d, x: torch.Tensor) -> tuple[int, int]:
    """``(Ho, Wo)`` of ``module`` on ``x``; a ``ValueError`` for an input of another rank or
    channel count, or one smaller than the dilated kernel (checked in Python integers: no
    geometry can wrap around)."""
    if x.dim() != 4 or x.shape[1] != module.in_channels:
        raise ValueError(f"{type(module).__name__}: expected input [B, {module.in_channels}, H, W]"
                         f", got {tuple(x.shape)}")
    out = []
    for size, k, s, p, d in zip(x.shape[2:], module.kernel_size, module.stride, module.padding,
                                module.dilation, strict=True):
        if size + 2 * p < d * (k - 1) + 1:
            raise ValueError(f"{type(module).__name__}: input of size {tuple(x.shape[2:])} "
                             f"(padding {module.padding}) is smaller than the kernel "
                             f"{module.kernel_size} at dilation {module.dilation}")
        out.append((size + 2 * p - d * (k - 1) - 1) // s + 1)
    return out[0], out[1]


def patches_nhwc(t: torch.Tensor, kernel_size, stride, padding, dilation):
    """im2col of a channels-last tensor in one copy.

    Args:
        t: ``[B, H, W, D]`` of any dtype (D: channels, or packed channel words).

    Returns:
        ``(patches, Ho, Wo)``: ``[B*Ho*Wo, kh*kw*D]`` in ``(ky, kx, d)`` order; zero padding.
    """
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    t = F.pad(t, (0, 0, pw, pw, ph, ph)) if ph or pw else t.contiguous()
    b, hp, wp, depth = t.shape
    ho = (hp - dh * (kh - 1) - 1) // sh + 1
    wo = (wp - dw * (kw - 1) - 1) // sw + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"input of size {(hp - 2 * ph, wp - 2 * pw)} is smaller than the kernel")
    s0, s1, s2, s3 = t.stride()
    view = t.as_strided((b, ho, wo, kh, kw, depth), (s0, sh * s1, sw * s2, dh * s1, dw * s2, s3))
    return view.reshape(b * ho * wo, kh * kw * depth), ho, wo


def pack_patches(x: torch.Tensor, kernel_size, stride, padding, dilation):
    """Bit-packed receptive fields of ``x`` (floating ``[B, C, H, W]``).

    Returns ``(patches, Ho, Wo)``: int32 ``[B*Ho*Wo, kh*kw*ceil(C/32)]``, word order
    ``(ky, kx, channel word)``; padded pixels are all-zero words.
    """
    return patches_nhwc(pack_signs_nhwc(x), kernel_size, stride, padding, dilation)


def pack_signs_nhwc(x: torch.Tensor) -> torch.Tensor:
    """``pack_bits(x.permute(0, 2, 3, 1))`` of a floating ``[B, C, H, W]``: int32
    ``[B, H, W, ceil(C/32)]``. float32 maps are packed in place by ``pack_channels`` (the
    interval ``[0, inf]`` is the sign, NaN included); on the CPU a permuted view would first
    be copied to channels-last, which costs more than the packing. (The CUDA pack_channels
    reads NCHW only: a channels-last map there goes to pack_bits, which reads it in place.)"""
    if x.dtype != torch.float32 or (x.device.type != "cpu" and not x.is_contiguous()):
        return ops.pack_bits(x.permute(0, 2, 3, 1))
    c = x.shape[1]
    return ops.pack_channels(x, x.new_zeros(c), x.new_full((c,), float("inf")))


def padding_indicator(height: int, width: int, padding, device) -> torch.Tensor:
    """float32 ``[1, 1, H + 2ph, W + 2pw]``: 1 on the zero-padding border, 0 inside."""
    ph, pw = padding
    ind = torch.ones(1, 1, height + 2 * ph, width + 2 * pw, device=device)
    ind[:, :, ph : ph + height, pw : pw + width] = 0
    return ind


def xnor_count_fix(bits: torch.Tensor, in_channels: int, kernel_size, height: int, width: int,
                   stride, padding, dilation) -> tuple[torch.Tensor, torch.Tensor]:
    """What to add to the raw XNOR counts of a convolution of an input of this size with the
    packed weight ``bits`` (int32 ``[O, kh*kw*words]``, each tap's channels padded to whole
    words): ``(table, index)``, int32 ``[Q, O]`` and ``[Ho*Wo]``, output pixel ``p`` adding
    ``table[index[p]]`` (the ``offset`` and ``offset_index`` of the fused XNOR GEMMs).

    Padded pixels pack as all-zero words (-1 in every real channel) where float training has
    0: add back ``sum sign(W)`` over each output's padded taps. Channel padding bits are 0 in
    both operands and count +1 each: subtract them. Only the pixels near the border differ, so
    there are few distinct rows (one inside, a few per border class): as a table they stay in
    cache, where the full ``[Ho*Wo, O]`` matrix streamed from memory at every forward (it was
    the largest operand of a layer with packed outputs).
    """
    kh, kw = kernel_size
    words = bits.shape[1] // (kh * kw)
    indicator = padding_indicator(height, width, padding, bits.device)
    # sum_c sign(W) of each tap = 2 * (set bits) - C, counted on the packed words (channel
    # padding bits are 0): unpacking would hold the weight in float, 32x the bits.
    ones = sum((bits >> b) & 1 for b in range(32)).view(-1, kh * kw, words).sum(2)
    tap_sums = (2 * ones - in_channels).float().view(-1, 1, kh, kw)
    fix = F.conv2d(indicator, tap_sums, None, stride, 0, dilation)
    fix = fix.round().to(torch.int32)[0].flatten(1).T - kh * kw * (32 * words - in_channels)
    table, index = torch.unique(fix, dim=0, return_inverse=True)
    return table.contiguous(), index.to(torch.int32)
