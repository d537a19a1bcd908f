"""Binary-weight (BWN) and XNOR-Net drop-in replacements for ``nn.Linear``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from .packed_weight import PackedWeightMixin
from .ste import ste_sign
from .weight_cache import float_twin, needs_autograd

_KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class BinaryLinear(PackedWeightMixin, nn.Linear):
    """``nn.Linear`` with weights ``alpha[o] * sign(W[o])``, ``alpha = mean |W[o]|`` (BWN).

    Train mode computes in float with a straight-through estimator on the latent weights;
    eval mode runs ``ops.bwn_gemm`` on packed sign bits when no gradient is needed (as
    :class:`BinaryConv2d`). Input ``[..., in_features]``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None,
                 dtype=None) -> None:
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self._init_packing()

    @classmethod
    def from_float(cls, module: nn.Linear, **options) -> BinaryLinear:
        """A new layer with ``module``'s shape, latent weights and bias (copied)."""
        return float_twin(cls, module, **options)

    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_features, self.in_features)

    def _finish(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Everything after ``alpha * (x @ sign(W).T)``; shared by the float and packed paths."""
        return out if self.bias is None else out + self.bias.to(out.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"{type(self).__name__}: expected input [..., {self.in_features}], "
                             f"got {tuple(x.shape)}")
        if self.training:
            self._check_trainable()
        elif not needs_autograd(self, x):
            return self._packed_forward(x)
        weight, alpha = self.float_weight_and_alpha()
        return self._finish(self._float_product(x, weight.to(x.dtype)) * alpha.to(x.dtype), x)

    def _float_product(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.linear(x, ste_sign(weight))

    def _sign_weight(self) -> torch.Tensor:
        return ops.unpack_bits(self.packed_weight()[0], self.in_features)

    def _packed_forward(self, x: torch.Tensor) -> torch.Tensor:
        bits, alpha = self.packed_weight()
        dtype = x.dtype if x.dtype in _KERNEL_DTYPES else torch.float32
        x2 = x.reshape(-1, self.in_features).to(dtype)
        out = self._finish(ops.bwn_gemm(x2, bits, alpha, self.in_features), x2)
        return out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)


class XnorLinear(BinaryLinear):
    """XNOR-Net ``nn.Linear``: binary weights (times ``alpha``) and binary inputs.

    With ``scale_activations=True`` each output row is also scaled by ``beta = mean |x|`` of its
    input row (XNOR-Net's activation scale). Eval mode runs ``ops.xnor_gemm`` on packed bits.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 scale_activations: bool = False, device=None, dtype=None) -> None:
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.scale_activations = scale_activations

    def extra_repr(self) -> str:
        return super().extra_repr() + f", scale_activations={self.scale_activations}"

    def _finish(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.scale_activations:
            out = out * x.abs().mean(-1, keepdim=True).to(out.dtype)
        return out if self.bias is None else out + self.bias.to(out.dtype)

    def _float_product(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.linear(ste_sign(x), ste_sign(weight))

    def _packed_forward(self, x: torch.Tensor) -> torch.Tensor:
        bits, alpha = self.packed_weight()
        x2 = x.reshape(-1, self.in_features)
        fused_bias = None if self.scale_activations or self.bias is None else self.bias.float()
        out = ops.xnor_gemm_scaled(ops.pack_bits(x2), bits, self.in_features, alpha, fused_bias)
        out = out.to(x.dtype)
        if self.scale_activations:
            out = self._finish(out, x2)
        return out.reshape(*x.shape[:-1], self.out_features)
