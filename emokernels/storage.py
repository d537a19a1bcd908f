"""Compressed models on disk (safetensors, no pickle) and the paper's "model size"."""

from __future__ import annotations

import json
import os

from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from .convert import freeze
from .nn import BinaryInputConv2d, BinaryInputLinear
from .nn.packed_weight import PackedWeightMixin

_META_KEY = "emokernels.binary_layers"
# Layers the file must name so that loading rebuilds them: packed-weight layers, and layers
# whose float weights look like nn.Conv2d / nn.Linear but which binarize their input.
_RECORDED = (PackedWeightMixin, BinaryInputConv2d, BinaryInputLinear)


def _layer_options(module: nn.Module) -> dict:
    return {"scale_activations": module.scale_activations} if hasattr(
        module, "scale_activations") else {}


def save_compressed(model: nn.Module, path: str | os.PathLike) -> None:
    """Freezes ``model`` and writes its state (packed bits for binary layers) to ``path``.

    The file records which layers are binary (weights or inputs), so :func:`load_compressed`
    can rebuild them.
    The write goes to a temporary file first: an existing file is replaced only on success.
    """
    freeze(model)
    layers = {name: {"class": type(m).__name__, **_layer_options(m)}
              for name, m in model.named_modules() if isinstance(m, _RECORDED)}
    # Cloned: tied weights share storage, which safetensors refuses to write.
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    tmp = f"{os.fspath(path)}.tmp"
    try:
        save_file(state, tmp, metadata={_META_KEY: json.dumps(layers)})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_compressed(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Loads a file written by :func:`save_compressed` into ``model`` and returns it (eval).

    ``model`` is the architecture: the float model, or one already converted. Layers the file
    lists as binary are replaced by frozen binary layers before the state is loaded.
    """
    from . import nn as enn

    if not os.path.exists(path):
        raise FileNotFoundError(f"no compressed model at {path}")
    with safe_open(os.fspath(path), framework="pt") as f:
        meta = (f.metadata() or {}).get(_META_KEY)
    if meta is None:
        raise ValueError(f"{path} was not written by save_compressed (no layer metadata)")
    for name, info in json.loads(meta).items():
        try:
            current = model.get_submodule(name)
        except AttributeError as err:
            raise ValueError(f"{path} has binary layer {name!r}, which the model lacks") from err
        cls = getattr(enn, info.pop("class"))
        if type(current) is not cls:
            if isinstance(current, _RECORDED):
                raise ValueError(f"layer {name!r} is {type(current).__name__} in the model but "
                                 f"{cls.__name__} in {path}")
            current = cls.from_float(current, **info)
        if isinstance(current, PackedWeightMixin) and not current.is_frozen:
            current._frozen_placeholders()
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, current)
    state = load_file(os.fspath(path))
    model.load_state_dict(state, strict=True)
    return model.eval()


def model_size_bytes(model: nn.Module) -> int:
    """Minimum bytes to store the model's weights (the paper's "model size").

    Binary layers count as ceil(k/32) packed words per output + alpha + bias, frozen or not;
    other layers count their parameters and floating-point buffers (e.g. BatchNorm statistics)
    at their dtype.
    """
    total = 0
    for module in model.modules():
        if isinstance(module, PackedWeightMixin):
            total += module.packed_size_bytes()
            continue
        for t in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
            if t.is_floating_point():
                total += t.numel() * t.element_size()
    return total

