"""Layers of a binary network that stays binary between layers (built by
:func:`emokernels.optimize_for_inference`).

Activations between them are bit-packed channels-last words, int32 ``[B, H, W, ceil(C/32)]``
(bit ``j`` of word ``w`` is channel ``32 w + j``, set for +1): what the next XNOR layer's sign
would pack, 32x smaller than float and never unpacked.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from .. import ops
from .bit_patches import pack_signs_nhwc, patches_nhwc, xnor_count_fix


class PackedXnorConv2d(nn.Module):
    """An XNOR convolution on packed input words, or on float input it packs itself.

    Output: with ``bounds``, the packed signs of the layer's output after the per-channel
    operations that followed it (``ops.xnor_gemm_sign``); else float32 ``[B, O, Ho, Wo]``
    (``[B, O]`` with ``flat_output``), ``float(dot) * alpha + bias`` as the XNOR layers compute
    it. A linear layer is a convolution whose kernel covers its whole input map
    (``whole_input``: any other input size is an error, as the linear layer's would be).

    Args:
        weight_bits: int32 ``[O, kh*kw*ceil(C/32)]``, taps ``(ky, kx)`` outer, each tap's
            channels padded to whole words.
        alpha: float32 ``[O]``; bias: float32 ``[O]`` or None.
        bounds: int32 ``[2, O]`` (see ``ops.xnor_gemm_sign``) or None.
        float_input: the input is float ``[B, C, H, W]`` (``[B, C]`` with ``whole_input`` and
            a 1x1 kernel), not packed words.
    """

    def __init__(self, weight_bits: torch.Tensor, alpha: torch.Tensor, bias: torch.Tensor | None,
                 in_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 bounds: torch.Tensor | None = None, float_input: bool = False,
                 flat_output: bool = False, whole_input: bool = False) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = weight_bits.shape[0]
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding, self.dilation = _pair(padding), _pair(dilation)
        self.float_input, self.flat_output, self.whole_input = float_input, flat_output, whole_input
        self.register_buffer("weight_bits", weight_bits)
        self.register_buffer("alpha", alpha)
        self.register_buffer("bias", bias)
        self.register_buffer("bounds", bounds)
        self._fix: dict = {}

    def extra_repr(self) -> str:
        out = "bits" if self.bounds is not None else "float"
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"input={'float' if self.float_input else 'bits'}, output={out}")

    def _packed_input(self, x: torch.Tensor) -> torch.Tensor:
        name, c = type(self).__name__, self.in_channels
        if self.float_input:
            if x.dim() == 2 and self.whole_input and self.kernel_size == (1, 1):
                x = x[:, :, None, None]
            if x.dim() != 4 or x.shape[1] != c or not x.is_floating_point():
                raise ValueError(f"{name}: expected a floating input [B, {c}, H, W], got "
                                 f"{tuple(x.shape)} {x.dtype}")
            return pack_signs_nhwc(x)
        words = ops.words_for_bits(c)
        if x.dim() != 4 or x.dtype != torch.int32 or x.shape[3] != words:
            raise ValueError(f"{name}: expected packed int32 words [B, H, W, {words}], got "
                             f"{tuple(x.shape)} {x.dtype}")
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bits = self._packed_input(x)
        b, h, w, _ = bits.shape
        if self.whole_input and (h, w) != self.kernel_size:
            raise ValueError(f"{type(self).__name__}: this linear layer takes a {self.kernel_size}"
                             f" map, got {(h, w)}")
        patches, ho, wo = patches_nhwc(bits, self.kernel_size, self.stride, self.padding,
                                       self.dilation)
        key = (h, w, bits.device)
        if key not in self._fix:
            self._fix[key] = xnor_count_fix(self.weight_bits, self.in_channels, self.kernel_size,
                                            h, w, self.stride, self.padding, self.dilation)
        k = 32 * patches.shape[1]
        if self.bounds is not None:
            out = ops.xnor_gemm_sign(patches, self.weight_bits, k, self.bounds, *self._fix[key])
            return out.view(b, ho, wo, -1)
        out = ops.xnor_gemm_scaled(patches, self.weight_bits, k, self.alpha, self.bias,
                                   *self._fix[key]).view(b, ho, wo, self.out_channels)
        return out.reshape(b, self.out_channels) if self.flat_output else out.permute(0, 3, 1, 2)


class PackChannels(nn.Module):
    """The float start of a binary chain: the per-channel modules before the first XNOR layer
    and its sign, as one interval test per channel (``ops.pack_channels``).

    Input float32 ``[B, C, H, W]``; output packed words ``[B, H, W, ceil(C/32)]``.
    """

    def __init__(self, lower: torch.Tensor, upper: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("lower", lower)
        self.register_buffer("upper", upper)

    def extra_repr(self) -> str:
        return f"channels={self.lower.shape[0]}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.lower.shape[0]
        if x.dim() != 4 or x.shape[1] != c or x.dtype != torch.float32:
            raise ValueError(f"{type(self).__name__}: expected float32 [B, {c}, H, W], got "
                             f"{tuple(x.shape)} {x.dtype}")
        return ops.pack_channels(x, self.lower, self.upper)


class PackedMaxPool2d(nn.Module):
    """``nn.MaxPool2d`` on packed sign words: the sign of a max is the OR of the signs, and for
    channels whose sign was taken through a decreasing function (BatchNorm with a negative
    scale after the pooling) the AND. Same geometry arguments as ``nn.MaxPool2d``.

    Args:
        and_words: int32 ``[ceil(C/32)]``, the channels pooled with AND set; None: OR for all.
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
                 and_words: torch.Tensor | None = None) -> None:
        super().__init__()
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride if stride is not None else kernel_size)
        self.padding, self.dilation, self.ceil_mode = _pair(padding), _pair(dilation), ceil_mode
        self.register_buffer("and_words", and_words)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")

    def _output_size(self, size: int, dim: int) -> int:
        k, s, p, d = (v[dim] for v in (self.kernel_size, self.stride, self.padding,
                                       self.dilation))
        span = size + 2 * p - d * (k - 1) - 1
        if span < 0:
            raise ValueError(f"{type(self).__name__}: input size {size} is smaller than the "
                             "kernel")
        out = (span + (s - 1 if self.ceil_mode else 0)) // s + 1
        # As nn.MaxPool2d: the last window must start inside the input or its left padding.
        return out - 1 if self.ceil_mode and (out - 1) * s >= size + p else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.dtype != torch.int32:
            raise ValueError(f"{type(self).__name__}: expected packed int32 words [B, H, W, D], "
                             f"got {tuple(x.shape)} {x.dtype}")
        ho, wo = self._output_size(x.shape[1], 0), self._output_size(x.shape[2], 1)
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (self.kernel_size, self.stride, self.padding,
                                                  self.dilation)
        # Padding outside the input: 0 never sets an OR, -1 never clears an AND.
        bottom = max(0, (ho - 1) * sh + dh * (kh - 1) - ph - x.shape[1] + 1)
        right = max(0, (wo - 1) * sw + dw * (kw - 1) - pw - x.shape[2] + 1)
        pads = (0, 0, pw, right, ph, bottom)

        def pooled(fill: int, combine) -> torch.Tensor:
            padded = torch.nn.functional.pad(x, pads, value=fill) if any(pads) else x
            out = None
            for ky in range(kh):
                for kx in range(kw):
                    rows = slice(ky * dh, ky * dh + (ho - 1) * sh + 1, sh)
                    cols = slice(kx * dw, kx * dw + (wo - 1) * sw + 1, sw)
                    window = padded[:, rows, cols]
                    out = window.clone() if out is None else combine(out, window)
            return out

        any_set = pooled(0, torch.Tensor.bitwise_or_)
        if self.and_words is None:
            return any_set
        all_set = pooled(-1, torch.Tensor.bitwise_and_)
        return (any_set & ~self.and_words) | (all_set & self.and_words)
