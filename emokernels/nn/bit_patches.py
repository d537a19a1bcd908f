"""im2col on packed words: the XNOR convolution's left operand, 32x smaller than float im2col."""

import torch
import torch.nn.functional as F

from .. import ops


def pack_patches(x: torch.Tensor, kernel_size, stride, padding, dilation):
    """Bit-packed receptive fields of ``x``.

    Args:
        x: floating ``[B, C, H, W]``.

    Returns:
        ``(patches, Ho, Wo)``: int32 ``[B*Ho*Wo, kh*kw*ceil(C/32)]``, word order
        ``(ky, kx, channel word)``; padded pixels are all-zero words.
    """
    bits = ops.pack_bits(x.permute(0, 2, 3, 1))  # [B, H, W, words]
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    if ph or pw:
        bits = F.pad(bits, (0, 0, pw, pw, ph, ph))
    b, hp, wp, words = bits.shape
    ho = (hp - dh * (kh - 1) - 1) // sh + 1
    wo = (wp - dw * (kw - 1) - 1) // sw + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"input of size {tuple(x.shape[2:])} is smaller than the kernel")
    s0, s1, s2, s3 = bits.stride()
    view = bits.as_strided((b, ho, wo, kh, kw, words),
                           (s0, sh * s1, sw * s2, dh * s1, dw * s2, s3))
    return view.reshape(b * ho * wo, kh * kw * words), ho, wo


def padding_indicator(height: int, width: int, padding, device) -> torch.Tensor:
    """float32 ``[1, 1, H + 2ph, W + 2pw]``: 1 on the zero-padding border, 0 inside."""
    ph, pw = padding
    ind = torch.ones(1, 1, height + 2 * ph, width + 2 * pw, device=device)
    ind[:, :, ph : ph + height, pw : pw + width] = 0
    return ind
