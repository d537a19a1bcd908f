"""Swap the layers of a float model for compressed ones, in place."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .nn.packed_weight import PackedWeightMixin, row_blocks
from .registry import LAYER_TYPES, METHODS, LayerType, method_options

FilterFn = Callable[[str, nn.Module], bool]


def _candidates(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules()
            if type(m) in (nn.Conv2d, nn.Linear) and n]


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def convert(model: nn.Module, method: str, filter_fn: FilterFn | None = None,
            keep_first_last: bool = True, freeze: bool = False, **options) -> nn.Module:
    """Replaces ``nn.Conv2d`` / ``nn.Linear`` layers of ``model`` in place and returns it.

    Args:
        model: any module tree; layers are matched by exact type (subclasses are left alone).
            Layers on the meta device (a model built under ``with torch.device("meta"):``)
            become meta layers, nothing fitted nor allocated: the architecture
            :func:`~emokernels.load_compressed` fills.
        method: ``"xnor"`` (XnorConv2d / XnorLinear), ``"bwn"`` (BinaryConv2d / BinaryLinear),
            ``"binary-activations"`` (BinaryInputConv2d / BinaryInputLinear: sign(x) into
            float weights), ``"hashed"`` (HashedConv2d / HashedLinear: buckets fitted to the
            float weights) or ``"cp"`` (CPConv2d: a CP-ALS fit of the kernel; only
            convolutions whose kernel is larger than 1x1, linear layers are kept).
        filter_fn: ``filter_fn(qualified_name, module) -> bool``, asked about the layers the
            method can replace; only layers it accepts change.
        keep_first_last: keep the model's first and last conv / linear layer in float (the
            usual choice for binary networks), whether or not the method could replace them.
            For ``"cp"`` the rank is absolute, fit for some layers only (the paper decomposed
            two chosen layers): pick them with ``filter_fn`` (and ``keep_first_last=False``
            when one of them is the first or the last layer).
        freeze: then :func:`freeze` the model, each binary layer as it is converted: packed
            straight from the float weight, a block of rows at a time, with no float copy of
            it (``convert`` then ``freeze`` holds a float copy of every converted layer).
        **options: passed to the new layers (``scale_activations=True`` for ``"xnor"``;
            ``compression``, ``seed``, ``block``, ``hash_bias`` for ``"hashed"``; ``rank``,
            required, for ``"cp"``: one ALS fit per layer, about 10 s for 256x64x3x3 at
            rank 192).
    """
    for name, layer, kind in conversions(model, method, filter_fn, keep_first_last, options):
        if freeze and issubclass(kind.cls, PackedWeightMixin):
            new = kind.shaped_like(layer, options)
            new.freeze_from((layer.weight[rows] for rows in row_blocks(layer.weight.shape)),
                            layer.bias)
        else:
            new = kind.cls.from_float(layer, **options)
        new.train(layer.training)
        _set_submodule(model, name, new)
    return _freeze(model) if freeze else model


def conversions(model: nn.Module, method: str, filter_fn: FilterFn | None,
                keep_first_last: bool, options: dict) -> list[tuple[str, nn.Module, LayerType]]:
    """The layers :func:`convert` replaces: ``(qualified name, float layer, new layer type)``
    in model order. Validates ``method`` and ``options`` (floats given as ints become floats,
    in ``options``); changes nothing of ``model``."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {sorted(METHODS)}")
    accepted = method_options(method)
    if set(options) - set(accepted):
        raise TypeError(f"method {method!r} takes the options {sorted(accepted)}, got "
                        f"{sorted(options)}")
    for name, value in options.items():
        if accepted[name] is float and type(value) is int:
            options[name] = value = float(value)  # compression=1 means 1.0
        if not isinstance(value, accepted[name]) or (
                accepted[name] is not bool and isinstance(value, bool)):
            raise TypeError(f"option {name} must be {accepted[name].__name__}, got {value!r}")
    if model.__class__ in (nn.Conv2d, nn.Linear):
        raise TypeError("convert() swaps the children of a model; wrap a single layer in a "
                        "container or use the layer classes' from_float")
    layers = _candidates(model)
    if keep_first_last:
        layers = layers[1:-1]
    conv_cls, linear_cls = METHODS[method]
    chosen = []
    for name, layer in layers:
        cls = conv_cls if isinstance(layer, nn.Conv2d) else linear_cls
        if cls is None or not LAYER_TYPES[cls.__name__].accepts(layer):
            continue
        if filter_fn is not None and not filter_fn(name, layer):
            continue
        chosen.append((name, layer, LAYER_TYPES[cls.__name__]))
    return chosen


def freeze(model: nn.Module) -> nn.Module:
    """Drops the latent float weights of every binary layer (packed bits only) and sets eval.

    A frozen model runs inference only; its resident weight memory is the packed size. Hashed
    layers have nothing to pack (their buckets are already all they store) and stay as they are.
    """
    return _freeze(model)


def _freeze(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, PackedWeightMixin):
            module.freeze()
    return model.eval()
