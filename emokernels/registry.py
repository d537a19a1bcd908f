"""The one registry of compressed layer types: convert, freeze, storage and the reproduction
all read it, so a layer's options survive save / load and a new layer type is added once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from .nn import (
    BinaryConv2d,
    BinaryInputConv2d,
    BinaryInputLinear,
    BinaryLinear,
    CPConv2d,
    HashedConv2d,
    HashedLinear,
    XnorConv2d,
    XnorLinear,
)
from .nn.weight_cache import empty_twin


@dataclass(frozen=True)
class LayerType:
    """A compressed layer class, the float class it replaces, and its constructor options
    (name -> type) that are part of the saved model.

    ``shell(float_layer, device=..., **options)``, when given, makes a layer with
    ``float_layer``'s geometry without fitting it (default: the constructor, as
    ``from_float`` calls it): :meth:`shaped_like`. ``eligible(float_layer) -> bool``, when
    given, narrows the layers ``convert`` replaces (default: every layer of class
    ``replaces``).
    """

    cls: type
    replaces: type
    options: dict[str, type] = field(default_factory=dict)
    shell: Callable[..., nn.Module] | None = None
    eligible: Callable[[nn.Module], bool] | None = None

    def options_of(self, module: nn.Module) -> dict:
        """The layer's options as they are saved."""
        return {name: getattr(module, name) for name in self.options}

    def shaped_like(self, float_layer: nn.Module, options: dict,
                    device: torch.device | str = "meta") -> nn.Module:
        """A new, unfitted layer of this type with ``float_layer``'s geometry on ``device``
        (default meta: shapes only, nothing allocated nor computed; what ``load_compressed``
        fills from a file and ``convert`` makes of a meta-device model)."""
        if self.shell is not None:
            return self.shell(float_layer, device=device, **options)
        return empty_twin(self.cls, float_layer, device=device, **options)

    def accepts(self, module: nn.Module) -> bool:
        """Whether ``convert`` replaces ``module`` (its exact class, then ``eligible``)."""
        return type(module) is self.replaces and (self.eligible is None or self.eligible(module))


_XNOR_OPTIONS = {"scale_activations": bool}
# Everything besides the float layer's geometry that fixes a hashed layer's virtual weight.
_HASHED_OPTIONS = {"compression": float, "seed": int, "block": int, "hash_bias": bool}

LAYER_TYPES: dict[str, LayerType] = {t.cls.__name__: t for t in (
    LayerType(XnorConv2d, nn.Conv2d, _XNOR_OPTIONS),
    LayerType(XnorLinear, nn.Linear, _XNOR_OPTIONS),
    LayerType(BinaryConv2d, nn.Conv2d),
    LayerType(BinaryLinear, nn.Linear),
    LayerType(BinaryInputConv2d, nn.Conv2d),
    LayerType(BinaryInputLinear, nn.Linear),
    LayerType(HashedConv2d, nn.Conv2d, _HASHED_OPTIONS, HashedConv2d.shaped_like),
    LayerType(HashedLinear, nn.Linear, _HASHED_OPTIONS, HashedLinear.shaped_like),
    # A 1x1 kernel is a matrix: CP would only factor it into two 1x1 convolutions.
    LayerType(CPConv2d, nn.Conv2d, {"rank": int}, CPConv2d.shaped_like,
              lambda conv: tuple(conv.kernel_size) != (1, 1)),
)}

# convert()'s methods: the replacement for nn.Conv2d and for nn.Linear (None: kept).
METHODS: dict[str, tuple[type, type | None]] = {
    "xnor": (XnorConv2d, XnorLinear),
    "bwn": (BinaryConv2d, BinaryLinear),
    "binary-activations": (BinaryInputConv2d, BinaryInputLinear),
    "hashed": (HashedConv2d, HashedLinear),
    "cp": (CPConv2d, None),
}

# The float layers compressed layers replace (matched by exact type).
FLOAT_TYPES: dict[str, type] = {"Conv2d": nn.Conv2d, "Linear": nn.Linear}


def layer_type(module: nn.Module) -> LayerType | None:
    """The registry entry of ``module``'s exact class, or None for any other module."""
    kind = LAYER_TYPES.get(type(module).__name__)
    return kind if kind is not None and type(module) is kind.cls else None


def method_options(method: str) -> dict[str, type]:
    """The options ``convert(model, method, **options)`` accepts."""
    conv_cls, _ = METHODS[method]
    return LAYER_TYPES[conv_cls.__name__].options
