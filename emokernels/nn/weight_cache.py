"""Values derived from a layer's weight, rebuilt only when that weight changes."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class WeightCache:
    """A dict of derived values keyed on one source tensor's identity and version counter.

    Under ``torch.compile`` nothing is cached: the traced graph recomputes every call.
    """

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.values: dict = {}

    def get(self, source: torch.Tensor, name, make: Callable):
        if torch.compiler.is_compiling():
            return make()
        # tensors created under inference_mode carry no version counter (and cannot change)
        version = -1 if source.is_inference() else source._version
        key = (version, source.data_ptr(), source.device)
        if key != self.key:
            self.key, self.values = key, {}
        if name not in self.values:
            self.values[name] = make()
        return self.values[name]


def float_twin(cls: type, module: nn.Module, **options) -> nn.Module:
    """A ``cls`` layer with ``module``'s geometry and a copy of its weight and bias.

    ``module`` is an ``nn.Conv2d`` or ``nn.Linear``; ``options`` go to ``cls``'s constructor.
    """
    base = nn.Conv2d if issubclass(cls, nn.Conv2d) else nn.Linear
    if not isinstance(module, base):
        raise TypeError(f"{cls.__name__}.from_float expects {base.__name__}, got {type(module)}")
    if base is nn.Conv2d:
        args = (module.in_channels, module.out_channels, module.kernel_size, module.stride,
                module.padding, module.dilation, module.groups, module.bias is not None,
                module.padding_mode)
    else:
        args = (module.in_features, module.out_features, module.bias is not None)
    layer = cls(*args, device=module.weight.device, dtype=module.weight.dtype, **options)
    with torch.no_grad():
        layer.weight.copy_(module.weight)
        if module.bias is not None:
            layer.bias.copy_(module.bias)
    return layer
