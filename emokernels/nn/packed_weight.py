"""Shared state of the binary layers: latent float weights while training, packed bits after.

A layer packs its weights the first time it runs in eval mode and again only when the latent
weights change (tracked through the tensor version counter). ``freeze()`` keeps only the packed
buffers, which is what ``save_compressed`` stores.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import ops
from .weight_cache import WeightCache


class PackedWeightMixin:
    """Mixin for a module with ``weight`` ``[out, ...]`` that runs on packed sign bits."""

    weight: nn.Parameter | None

    def _init_packing(self) -> None:
        self._cache = WeightCache.attach(self)

    @property
    def is_frozen(self) -> bool:
        return "weight_bits" in self._buffers

    def _pack_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """Packed sign bits ``[out, W]`` in the bit order the layer's kernel expects."""
        return ops.pack_bits(weight.reshape(weight.shape[0], -1))

    def _pack(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = weight.detach()
        alpha = w.abs().reshape(w.shape[0], -1).mean(1).float()
        return self._pack_weight(w), alpha

    def _source(self) -> torch.Tensor:
        return self.weight_bits if self.is_frozen else self.weight

    def packed_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weight_bits int32 [out, W], alpha float32 [out])``, packed once per weight change."""
        if self.is_frozen:
            return self.weight_bits, self.alpha
        return self._cache.get(self.weight, "packed", lambda: self._pack(self.weight))

    def derived(self, name, make):
        """A value derived from the packed weights, cached until they change."""
        return self._cache.get(self._source(), name, make)

    def freeze(self) -> None:
        """Drops the latent float weights, keeping packed bits and alpha as buffers.

        A frozen layer trains nothing: its bias stops requiring grad, so inference needs no
        ``torch.no_grad()`` to run the packed kernels.
        """
        if self.is_frozen:
            return
        bits, alpha = self.packed_weight()
        self._set_frozen(bits.clone(), alpha.clone())

    def _frozen_placeholders(self) -> None:
        """Turns a fresh module into an empty frozen one, ready for ``load_state_dict``."""
        bits, alpha = self._pack(self.weight)
        self._set_frozen(torch.zeros_like(bits), torch.zeros_like(alpha))

    def _set_frozen(self, bits: torch.Tensor, alpha: torch.Tensor) -> None:
        del self.weight
        self.register_parameter("weight", None)
        self.register_buffer("weight_bits", bits)
        self.register_buffer("alpha", alpha)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        self._cache.clear()

    def float_weight_and_alpha(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The weight and alpha the float (train-mode) form computes with: the latent weight
        and ``mean |W|`` (differentiable), or once frozen, ``sign(W)`` unpacked and the stored
        alpha."""
        if self.is_frozen:
            return self._sign_weight(), self.alpha
        return self.weight, self.weight.abs().reshape(self.weight.shape[0], -1).mean(1)

    def _sign_weight(self) -> torch.Tensor:
        """``sign(W)`` as float32 of :meth:`weight_shape`, recovered from the packed bits."""
        raise NotImplementedError

    def weight_shape(self) -> tuple[int, ...]:
        """Shape of the latent float weight (also once frozen)."""
        raise NotImplementedError

    def packed_size_bytes(self) -> int:
        """Minimum bytes of the binary weight: ceil(k/32) words per output, alpha and bias.

        The kernel layout may pad more (XNOR convolutions pad each tap's channels to a word).
        """
        out, *rest = self.weight_shape()
        k = 1
        for n in rest:
            k *= n
        bias = 0 if self.bias is None else self.bias.numel() * self.bias.element_size()
        return out * ops.words_for_bits(k) * 4 + out * 4 + bias

    def _check_trainable(self) -> None:
        if self.is_frozen:
            raise RuntimeError(
                f"{type(self).__name__} is frozen (latent float weights dropped): it runs in "
                "eval mode only; call .eval() before using it"
            )
