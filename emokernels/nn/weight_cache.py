"""Values derived from a layer's weight, rebuilt only when that weight changes."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class WeightCache:
    """A dict of derived values keyed on one source tensor's identity and version counter.

    Under ``torch.compile`` nothing is cached: the traced graph recomputes every call.
    Tensors made under ``torch.inference_mode`` have no version counter, so in-place edits of
    them are invisible here: the owning module clears the cache on ``load_state_dict``
    (:func:`attach`), and other in-place edits of such weights must call :meth:`clear`.
    """

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.values: dict = {}

    def clear(self) -> None:
        """Forgets every derived value; the next :meth:`get` rebuilds."""
        self.key, self.values = None, {}

    @staticmethod
    def attach(module: nn.Module) -> WeightCache:
        """A new cache for ``module``, cleared whenever ``module.load_state_dict`` runs."""
        module.register_load_state_dict_post_hook(_clear_after_load)
        return WeightCache()

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


def _clear_after_load(module: nn.Module, incompatible_keys) -> None:
    module._cache.clear()


def needs_autograd(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether autograd must see through a call: grad mode is on and ``x`` or one of the
    module's own parameters requires grad. Eval-mode layers then compute their float form
    (the same numbers) instead of the packed kernels, which have no gradient for weights."""
    return torch.is_grad_enabled() and (
        x.requires_grad or any(p.requires_grad for p in module.parameters(recurse=False)))


def empty_twin(cls: type, module: nn.Module, device: torch.device | str | None = None,
               **options) -> nn.Module:
    """A freshly initialized ``cls`` layer with ``module``'s geometry and dtype, on ``device``
    (default: ``module``'s; on ``"meta"`` it has shapes only, nothing allocated).

    ``module`` is an ``nn.Conv2d`` or ``nn.Linear``; ``options`` go to ``cls``'s constructor.
    """
    base = nn.Conv2d if issubclass(cls, nn.Conv2d) else nn.Linear
    if not isinstance(module, base):
        raise TypeError(f"{cls.__name__} is made from an {base.__name__}, got {type(module)}")
    if base is nn.Conv2d:
        args = (module.in_channels, module.out_channels, module.kernel_size, module.stride,
                module.padding, module.dilation, module.groups, module.bias is not None,
                module.padding_mode)
    else:
        args = (module.in_features, module.out_features, module.bias is not None)
    device = module.weight.device if device is None else device
    return cls(*args, device=device, dtype=module.weight.dtype, **options)


def float_twin(cls: type, module: nn.Module, **options) -> nn.Module:
    """A ``cls`` layer with ``module``'s geometry and a copy of its weight and bias (see
    :func:`empty_twin`)."""
    layer = empty_twin(cls, module, **options)
    with torch.no_grad():
        layer.weight.copy_(module.weight)
        if module.bias is not None:
            layer.bias.copy_(module.bias)
    return layer
