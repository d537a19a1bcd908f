"""Layers with binary (+-1) inputs and float weights: the paper's "binary activations only".

Train mode binarizes the input with a straight-through estimator and runs the float layer.
Eval mode packs the input signs and runs ``bwn_gemm`` with the roles swapped: the float
weights are the left operand (their tables are built once per call and shared by every input
row) and the packed activations the right one. As for the binary-weight layers, an eval-mode
call that autograd must see through (grad mode on and the input or a parameter requiring
grad) computes the float form instead, with train mode's gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from .bit_patches import conv_output_size, pack_patches, padding_indicator
from .ste import ste_sign
from .weight_cache import WeightCache, float_twin, needs_autograd

# Below this many input rows the packed path cannot beat reading the float weights once.
_MIN_PACKED_ROWS = 32


def _check_conv(module: nn.Conv2d) -> None:
    if module.groups != 1 or module.padding_mode != "zeros" or isinstance(module.padding, str):
        raise NotImplementedError("binary-input convolutions support groups=1, zero padding "
                                  "and explicit padding sizes")


class BinaryInputLinear(nn.Linear):
    """``nn.Linear`` applied to ``sign(x)`` (gradient straight through where |x| <= 1)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._cache = WeightCache.attach(self)

    @classmethod
    def from_float(cls, module: nn.Linear) -> BinaryInputLinear:
        """A new layer with ``module``'s shape, weight and bias (copied)."""
        return float_twin(cls, module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"{type(self).__name__}: expected input [..., {self.in_features}], "
                             f"got {tuple(x.shape)}")
        x2 = x.reshape(-1, self.in_features)
        # Few rows: a float GEMV with +-1 reads the weights once, as fast as it gets.
        if (self.training or self.weight.dtype != torch.float32 or needs_autograd(self, x)
                or x2.shape[0] < _MIN_PACKED_ROWS):
            return F.linear(ste_sign(x), self.weight, self.bias)
        ones = self._cache.get(self.weight, ("ones", x2.shape[0]),
                               lambda: torch.ones(x2.shape[0], device=x.device))
        out = ops.bwn_gemm(self.weight.detach(), ops.pack_bits(x2), ones, self.in_features).T
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)


class BinaryInputConv2d(nn.Conv2d):
    """``nn.Conv2d`` applied to ``sign(x)``; zero padding contributes 0 as in float."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _check_conv(self)
        self._cache = WeightCache.attach(self)

    @classmethod
    def from_float(cls, module: nn.Conv2d) -> BinaryInputConv2d:
        """A new layer with ``module``'s geometry, weight and bias (copied)."""
        return float_twin(cls, module)

    def _tap_weight(self, words: int) -> torch.Tensor:
        """float32 ``[O, kh*kw*32*words]``: the weight in packed-patch order, 0 on pad bits."""
        w = self.weight.detach().permute(0, 2, 3, 1)
        return F.pad(w, (0, 32 * words - self.in_channels)).reshape(self.out_channels, -1)

    def _padding_fix(self, height: int, width: int) -> torch.Tensor:
        """``[O, Ho*Wo]``: sum of the weights over each output's padded taps, which the packed
        input reads as -1 (all-zero words) where float has 0."""
        indicator = padding_indicator(height, width, self.padding, self.weight.device)
        tap_sums = self.weight.detach().sum(1, keepdim=True)
        fix = F.conv2d(indicator, tap_sums, None, self.stride, 0, self.dilation)
        return fix[0].flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv_output_size(self, x)
        if self.training or self.weight.dtype != torch.float32 or needs_autograd(self, x):
            return self._conv_forward(ste_sign(x), self.weight, self.bias)
        patches, ho, wo = pack_patches(x, self.kernel_size, self.stride, self.padding,
                                       self.dilation)
        weight = self.weight
        words = patches.shape[1] // (self.kernel_size[0] * self.kernel_size[1])
        tap_weight = self._cache.get(weight, ("taps", words), lambda: self._tap_weight(words))
        ones = self._cache.get(weight, ("ones", patches.shape[0]),
                               lambda: torch.ones(patches.shape[0], device=x.device))
        out = ops.bwn_gemm(tap_weight, patches, ones, tap_weight.shape[1])  # [O, B*Ho*Wo]
        fix = self._cache.get(weight, ("fix", *x.shape[2:]),
                              lambda: self._padding_fix(x.shape[2], x.shape[3]))
        out = out.view(self.out_channels, x.shape[0], ho * wo) + fix[:, None, :]
        if self.bias is not None:
            out = out + self.bias[:, None, None]
        return out.view(self.out_channels, x.shape[0], ho, wo).permute(1, 0, 2, 3).to(x.dtype)
