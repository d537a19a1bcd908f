"""Shared state of the binary layers: latent float weights while training, packed bits after.

A layer packs its weights the first time it runs in eval mode and again only when the latent
weights change (tracked through the tensor version counter). ``freeze()`` keeps only the packed
buffers, which is what ``save_compressed`` stores.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from .. import ops
from .weight_cache import WeightCache

# Weights are packed this many elements' worth of rows at a time, so packing never holds a
# float temporary of a whole layer (VGG-S fc6 is 302 MB in float32).
_BLOCK_ELEMENTS = 1 << 20


def row_blocks(shape: tuple[int, ...]) -> list[slice]:
    """Slices of a weight's first dim, in order, of at most ~1 M elements each (one row at
    least): the blocks :meth:`PackedWeightMixin.freeze_from` takes."""
    step = max(1, _BLOCK_ELEMENTS // max(1, math.prod(shape[1:])))
    # A weight of no rows is one empty block: it still packs to a [0, W] result.
    return [slice(start, min(start + step, shape[0]))
            for start in range(0, max(1, shape[0]), step)]


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
        return self._pack_rows(w[rows] for rows in row_blocks(tuple(w.shape)))

    def _pack_rows(self, blocks: Iterable[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(bits int32 [out, W], alpha float32 [out])`` of a weight given as consecutive
        blocks of rows (each row's bits and ``mean |W[o]|`` depend on that row only)."""
        out = self.weight_shape()[0]
        bits = alpha = None
        start = 0
        for block in blocks:
            packed = self._pack_weight(block)
            if bits is None:
                # Allocated once, before the blocks' temporaries: results kept block by block
                # would fragment the heap those come from and grow it by a block each time.
                bits = packed.new_empty(out, packed.shape[1])
                alpha = torch.empty(out, dtype=torch.float32, device=packed.device)
            stop = start + block.shape[0]
            if stop > out:
                raise ValueError(f"{type(self).__name__}: more than {out} rows to pack")
            bits[start:stop] = packed
            alpha[start:stop] = block.abs().reshape(block.shape[0], -1).mean(1)
            start = stop
        if start != out:
            raise ValueError(f"{type(self).__name__}: {start} rows to pack, expected {out}")
        return bits, alpha

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

    def freeze_from(self, blocks: Iterable[torch.Tensor], bias: torch.Tensor | None) -> None:
        """Freezes this layer with the packed bits of another float weight and a copy of its
        bias, never holding the whole weight: ``blocks`` are its consecutive blocks of rows
        ``[r, *weight_shape()[1:]]`` (e.g. :func:`row_blocks` of it, or of a file).

        The layer's own weight is only read for its shape: a layer built on the meta device
        (no memory) becomes a frozen one on the device of ``blocks``.
        """
        if self.is_frozen:
            raise RuntimeError(f"{type(self).__name__} is already frozen")
        bits, alpha = self._pack_rows(b.detach() for b in blocks)
        expected = self._pack_weight(self.weight.to("meta"))
        if bits.shape != expected.shape:
            raise ValueError(f"{type(self).__name__}.freeze_from: the blocks pack to "
                             f"{list(bits.shape)} words, the layer's weight to "
                             f"{list(expected.shape)}")
        if self.bias is not None:
            self.bias = nn.Parameter(bias.detach().to(self.bias.dtype).clone())
        self._set_frozen(bits, alpha)

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
