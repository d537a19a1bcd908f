"""Binary-weight (BWN) and XNOR-Net drop-in replacements for ``nn.Conv2d``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from .bit_patches import conv_output_size, pack_patches, xnor_count_fix
from .packed_weight import PackedWeightMixin
from .ste import ste_sign
from .weight_cache import float_twin, needs_autograd

_KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class BinaryConv2d(PackedWeightMixin, nn.Conv2d):
    """``nn.Conv2d`` with weights ``alpha[o] * sign(W[o])``, ``alpha = mean |W[o]|`` (BWN).

    Same constructor as ``nn.Conv2d`` (``groups=1``, ``padding_mode="zeros"``). Train mode
    computes in float with a straight-through estimator; eval mode runs ``ops.bwn_conv2d`` on
    packed sign bits when no gradient is needed (under ``torch.no_grad()`` /
    ``torch.inference_mode()``, or once frozen). An eval-mode call that autograd must see
    through computes the float form instead: the same numbers, with train mode's gradients.
    Input ``[B, C, H, W]``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device=None, dtype=None) -> None:
        if groups != 1:
            raise NotImplementedError(f"{type(self).__name__} supports groups=1 only, got {groups}")
        if padding_mode != "zeros":
            raise NotImplementedError(
                f"{type(self).__name__} supports padding_mode='zeros' only, got {padding_mode!r}")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, padding_mode, device=device, dtype=dtype)
        if isinstance(self.padding, str):
            self.padding = _explicit_padding(self.padding, self.kernel_size, self.dilation)
        self._init_packing()

    @classmethod
    def from_float(cls, module: nn.Conv2d, **options) -> BinaryConv2d:
        """A new layer with ``module``'s geometry, latent weights and bias (copied)."""
        return float_twin(cls, module, **options)

    from_conv = from_float

    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels, *self.kernel_size)

    def _pack_weight(self, weight: torch.Tensor) -> torch.Tensor:
        # (ky, kx, channel) order, the order of patches_nhwc's rows.
        return ops.pack_bits(weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1))

    def _geometry(self) -> dict:
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation)

    def _finish(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Everything after ``alpha * conv(x, sign(W))``; shared by the float and packed paths."""
        return out if self.bias is None else out + self.bias.to(out.dtype).view(1, -1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv_output_size(self, x)
        if self.training:
            self._check_trainable()
        elif not needs_autograd(self, x):
            return self._packed_forward(x)
        weight, alpha = self.float_weight_and_alpha()
        product = self._float_product(x, weight.to(x.dtype))
        return self._finish(product * alpha.to(x.dtype).view(1, -1, 1, 1), x)

    def _float_product(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, ste_sign(weight), None, **self._geometry())

    def _sign_weight(self) -> torch.Tensor:
        return ops.unpack_conv_weight(self.packed_weight()[0], self.kernel_size, self.in_channels)

    def _packed_forward(self, x: torch.Tensor) -> torch.Tensor:
        bits, alpha = self.packed_weight()
        dtype = x.dtype if x.dtype in _KERNEL_DTYPES else torch.float32
        (ph, pw) = self.padding
        image = x.to(dtype).permute(0, 2, 3, 1)
        image = torch.nn.functional.pad(image, (0, 0, pw, pw, ph, ph)) if ph or pw else image
        out = ops.bwn_conv2d(image, bits, alpha, self.kernel_size, self.stride, self.dilation)
        out = out.permute(0, 3, 1, 2)
        return self._finish(out, x).to(x.dtype)


class XnorConv2d(BinaryConv2d):
    """XNOR-Net ``nn.Conv2d``: binary weights (times ``alpha``) and binary inputs.

    Zero padding contributes 0 as in float training (the packed path corrects for padded
    pixels). With ``scale_activations=True`` outputs are also scaled by XNOR-Net's ``K`` map
    (mean |x| over channels, averaged over each receptive field). Eval mode runs
    ``ops.xnor_gemm`` on bit-packed patches.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 scale_activations: bool = False, device=None, dtype=None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, padding_mode, device=device, dtype=dtype)
        self.scale_activations = scale_activations

    def extra_repr(self) -> str:
        return super().extra_repr() + f", scale_activations={self.scale_activations}"

    def _pack_weight(self, weight: torch.Tensor) -> torch.Tensor:
        # Channels innermost, (ky, kx) outer: the order pack_patches lays out input words in.
        return ops.pack_bits(weight.permute(0, 2, 3, 1)).reshape(weight.shape[0], -1)

    def _finish(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.scale_activations:
            kh, kw = self.kernel_size
            box = torch.full((1, 1, kh, kw), 1.0 / (kh * kw), dtype=x.dtype, device=x.device)
            out = out * F.conv2d(x.abs().mean(1, keepdim=True), box, None, **self._geometry())
        return super()._finish(out, x)

    def _float_product(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.conv2d(ste_sign(x), ste_sign(weight), None, **self._geometry())

    def _sign_weight(self) -> torch.Tensor:
        # Each tap's channels are padded to whole words in this layer's packing.
        bits, _ = self.packed_weight()
        kh, kw = self.kernel_size
        words = bits.shape[1] // (kh * kw)
        signs = ops.unpack_bits(bits, bits.shape[1] * 32).view(-1, kh, kw, 32 * words)
        return signs[..., : self.in_channels].permute(0, 3, 1, 2)

    def _count_fix(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        return xnor_count_fix(self.packed_weight()[0], self.in_channels, self.kernel_size,
                              height, width, **self._geometry())

    def _packed_forward(self, x: torch.Tensor) -> torch.Tensor:
        bits, alpha = self.packed_weight()
        patches, ho, wo = pack_patches(x, self.kernel_size, **self._geometry())
        fix = self.derived(("fix", *x.shape[2:], x.device),
                           lambda: self._count_fix(x.shape[2], x.shape[3]))
        # Without the K map, scale and bias fuse into the kernel (same float ops, same order).
        fused_bias = None if self.scale_activations or self.bias is None else self.bias.float()
        out = ops.xnor_gemm_scaled(patches, bits, 32 * patches.shape[1], alpha, fused_bias, *fix)
        out = out.view(x.shape[0], ho, wo, self.out_channels).permute(0, 3, 1, 2).to(x.dtype)
        if not self.scale_activations:
            return out
        return self._finish(out, x)


def _explicit_padding(mode: str, kernel_size, dilation) -> tuple[int, int]:
    if mode == "valid":
        return (0, 0)
    total = [d * (k - 1) for k, d in zip(kernel_size, dilation, strict=True)]
    if any(t % 2 for t in total):
        raise NotImplementedError("padding='same' needs an odd effective kernel size here")
    return (total[0] // 2, total[1] // 2)
