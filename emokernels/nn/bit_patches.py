"""im2col in channels-last order: float patches for BWN, packed-word patches for XNOR."""

import torch
import torch.nn.functional as F

from .. import ops


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
    bits = ops.pack_bits(x.permute(0, 2, 3, 1))  # [B, H, W, words]
    return patches_nhwc(bits, kernel_size, stride, padding, dilation)


def padding_indicator(height: int, width: int, padding, device) -> torch.Tensor:
    """float32 ``[1, 1, H + 2ph, W + 2pw]``: 1 on the zero-padding border, 0 inside."""
    ph, pw = padding
    ind = torch.ones(1, 1, height + 2 * ph, width + 2 * pw, device=device)
    ind[:, :, ph : ph + height, pw : pw + width] = 0
    return ind
