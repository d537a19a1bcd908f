"""Compressed models on disk (safetensors, no pickle) and the paper's "model size"."""

from __future__ import annotations

import json
import os

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open
from torch import nn

from .convert import freeze
from .files import atomic_save_file, tensor_digest
from .nn.packed_weight import PackedWeightMixin
from .registry import FLOAT_TYPES, LAYER_TYPES, layer_type

_FORMAT_KEY, _FORMAT = "emokernels.format", "2"
_LAYERS_KEY = "emokernels.layers"
_DIGEST_KEY = "emokernels.sha256"


def _layer_table(model: nn.Module) -> dict[str, dict]:
    """Every layer that is, or could be converted to, a compressed one, by name: its class
    and its saved options. (convert() swaps exact nn.Conv2d / nn.Linear only.)"""
    table = {}
    for name, m in model.named_modules():
        kind = layer_type(m)
        if kind is not None:
            table[name] = {"class": kind.cls.__name__, **kind.options_of(m)}
        elif type(m) in FLOAT_TYPES.values():
            table[name] = {"class": type(m).__name__}
    return table


def save_compressed(model: nn.Module, path: str | os.PathLike) -> None:
    """Freezes ``model`` and writes its state (packed bits for binary layers) to ``path``.

    The file records the class (and options) of every conv / linear layer, so
    :func:`load_compressed` rebuilds exactly this architecture and refuses any other.
    A sha256 of the tensor data is recorded and checked on load. The write goes to a
    temporary file first: an existing file is replaced only on success, and temporaries left
    by a killed save are removed by the next save to the same path.
    """
    path = os.fspath(path)
    freeze(model)
    # Cloned: tied weights share storage, which safetensors refuses to write.
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    metadata = {_FORMAT_KEY: _FORMAT, _LAYERS_KEY: json.dumps(_layer_table(model)),
                _DIGEST_KEY: tensor_digest(state)}
    atomic_save_file(state, path, metadata)


def _read_layer_table(path: str, metadata: dict | None) -> dict[str, tuple[str, dict]]:
    """The file's layer table as ``name -> (class name, options)``, validated."""
    metadata = metadata or {}
    if metadata.get(_FORMAT_KEY) != _FORMAT or _LAYERS_KEY not in metadata:
        raise ValueError(f"{path} was not written by this version's save_compressed (format "
                         f"{metadata.get(_FORMAT_KEY)!r}, expected {_FORMAT!r})")
    try:
        table = json.loads(metadata[_LAYERS_KEY])
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: malformed layer table: {err}") from err
    if not isinstance(table, dict):
        raise ValueError(f"{path}: malformed layer table: expected an object")
    layers = {}
    for name, info in table.items():
        where = f"{path}: layer {name!r}"
        if not isinstance(info, dict) or not isinstance(info.get("class"), str):
            raise ValueError(f"{where}: expected an object with a class name, got {info!r}")
        cls_name = info["class"]
        options = {k: v for k, v in info.items() if k != "class"}
        if cls_name in LAYER_TYPES:
            expected = LAYER_TYPES[cls_name].options
        elif cls_name in FLOAT_TYPES:
            expected = {}
        else:
            raise ValueError(f"{where}: unknown layer class {cls_name!r}")
        if set(options) != set(expected) or any(
                type(options[k]) is not t for k, t in expected.items()):
            raise ValueError(f"{where}: options {options} do not match {cls_name}'s "
                             f"{ {k: t.__name__ for k, t in expected.items()} }")
        layers[name] = (cls_name, options)
    return layers


def _replacement(name: str, current: nn.Module, cls_name: str, options: dict,
                 path: str) -> nn.Module | None:
    """The module to install at ``name`` for the file's entry, or None to keep ``current``.

    Nothing of ``current`` is changed: a replacement is a new module.
    """
    where = f"layer {name!r} is {type(current).__name__} in the model but {cls_name}"
    if cls_name in FLOAT_TYPES:
        if type(current) is not FLOAT_TYPES[cls_name]:
            raise ValueError(f"{where} in {path}")
        return None
    kind = LAYER_TYPES[cls_name]
    if type(current) is kind.cls:
        if kind.options_of(current) != options:
            raise ValueError(f"layer {name!r} has options {kind.options_of(current)} in the "
                             f"model but {options} in {path}")
        if not isinstance(current, PackedWeightMixin) or current.is_frozen:
            return None
    elif type(current) is not kind.replaces:
        raise ValueError(f"{where} in {path}")
    if kind.shell is not None:
        return kind.shell(current, **options)
    new = kind.cls.from_float(current, **options)
    if isinstance(new, PackedWeightMixin):
        new._frozen_placeholders()
    return new


def _install(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def load_compressed(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Loads a file written by :func:`save_compressed` into ``model`` and returns it (eval).

    ``model`` is the architecture: the float model, or one already converted the same way.
    Float layers the file lists as compressed are replaced by frozen compressed layers. Any
    difference from the saved architecture (a layer compressed in one and not the other, other
    options, missing or extra tensors, other shapes or dtypes) is a ``ValueError``, raised
    before ``model`` is changed: a load is all or nothing.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no compressed model at {path}")
    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
            layers = _read_layer_table(path, metadata)
            stored = {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype())
                      for k in f.keys()}
    except SafetensorError as err:
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from err

    present = set(_layer_table(model))
    if present != set(layers):
        raise ValueError(f"{path} does not match the model's layers: only in the file "
                         f"{sorted(set(layers) - present)}, only in the model "
                         f"{sorted(present - set(layers))}")
    plan = {}
    for name, (cls_name, options) in layers.items():
        new = _replacement(name, model.get_submodule(name), cls_name, options, path)
        if new is not None:
            plan[name] = new
    originals = {name: model.get_submodule(name) for name in plan}
    for name, new in plan.items():
        _install(model, name, new)
    try:
        _check_state(model, stored, path)
        state = load_file(path)
        if metadata.get(_DIGEST_KEY) != tensor_digest(state):
            raise ValueError(f"{path} is corrupt: its tensor data does not match the sha256 "
                             "checksum recorded when it was saved")
        model.load_state_dict(state, strict=True)
    except BaseException:
        for name, old in originals.items():
            _install(model, name, old)
        raise
    return model.eval()


_SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16",
                       torch.bfloat16: "BF16", torch.int32: "I32", torch.int64: "I64",
                       torch.uint8: "U8", torch.int8: "I8", torch.bool: "BOOL",
                       torch.int16: "I16"}


def _check_state(model: nn.Module, stored: dict[str, tuple], path: str) -> None:
    """The file's tensors are exactly the model's state: names, shapes and dtypes."""
    expected = model.state_dict()
    if set(expected) != set(stored):
        raise ValueError(f"{path} does not match the model's state: missing "
                         f"{sorted(set(expected) - set(stored))}, unexpected "
                         f"{sorted(set(stored) - set(expected))}")
    for key, tensor in expected.items():
        shape, dtype = stored[key]
        want = _SAFETENSORS_DTYPES.get(tensor.dtype, str(tensor.dtype))
        if shape != tuple(tensor.shape) or dtype != want:
            raise ValueError(f"{path}: {key} is {dtype} {list(shape)} in the file but the model "
                             f"needs {want} {list(tensor.shape)}")


def model_size_bytes(model: nn.Module) -> int:
    """Minimum bytes to store the model's weights (the paper's "model size").

    Binary layers count as ceil(k/32) packed words per output + alpha + bias, frozen or not;
    other layers count their parameters and floating-point buffers (e.g. BatchNorm statistics)
    at their dtype: a hashed layer, its buckets and bias (or bias buckets).
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
