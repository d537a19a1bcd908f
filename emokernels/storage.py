"""Compressed models on disk (safetensors, no pickle) and the paper's "model size"."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable

import torch
from torch import nn

from .convert import FilterFn, conversions, freeze
from .files import SAFETENSORS_DTYPES, TensorFile, atomic_save_file, digest_update, tensor_digest
from .nn.packed_weight import PackedWeightMixin, row_blocks
from .nn.weight_cache import empty_twin
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

    Nothing of ``current`` is changed: a replacement is a new module on the meta device (its
    tensors come from the file), frozen for a binary layer: it never has a float weight.
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
    new = kind.shaped_like(current, options)
    if isinstance(new, PackedWeightMixin):
        new.freeze()  # on meta: the packed shapes only
    return new


def _install(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def _device_of(module: nn.Module) -> torch.device | None:
    """The device of ``module``'s own tensors; None if it has none or they are on meta."""
    for t in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
        return None if t.is_meta else t.device
    return None


def load_compressed(model: nn.Module, path: str | os.PathLike,
                    device: torch.device | str | None = None) -> nn.Module:
    """Loads a file written by :func:`save_compressed` into ``model`` and returns it (eval).

    ``model`` is the architecture: the float model, or one already converted the same way,
    built normally or on the meta device (``with torch.device("meta"):``: no memory). Float
    layers the file lists as compressed are replaced by frozen compressed layers made of the
    file's tensors only (a binary layer's packed bits and alpha, never a float weight).
    Tensors on the meta device become the file's, on ``device`` (default: the device of the
    layer a compressed one replaces, else the CPU); other tensors are copied into. The file
    is read a tensor at a time, not mapped, so a meta model's load holds its size once.

    Any difference from the saved architecture (a layer compressed in one and not the other,
    other options, missing or extra tensors, other shapes or dtypes, a meta tensor the file
    does not hold) is a ``ValueError``, raised before ``model`` is changed: a load is all or
    nothing, and a meta model that fails to load stays an unchanged meta model.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no compressed model at {path}")
    with TensorFile(path) as f:
        layers = _read_layer_table(path, f.metadata)
        present = set(_layer_table(model))
        if present != set(layers):
            raise ValueError(f"{path} does not match the model's layers: only in the file "
                             f"{sorted(set(layers) - present)}, only in the model "
                             f"{sorted(present - set(layers))}")
        plan, devices = {}, {}
        for name, (cls_name, options) in layers.items():
            current = model.get_submodule(name)
            new = _replacement(name, current, cls_name, options, path)
            if new is not None:
                plan[name] = new
                devices[new] = _device_of(current)

        def read_checked() -> dict[str, torch.Tensor]:
            digest, state = hashlib.sha256(), {}
            for key in sorted(f.entries):
                state[key] = f.read(key)
                digest_update(digest, key, state[key])
            if f.metadata.get(_DIGEST_KEY) != digest.hexdigest():
                raise ValueError(f"{path} is corrupt: its tensor data does not match the "
                                 "sha256 checksum recorded when it was saved")
            return state

        _load_into(model, plan, f, read_checked, devices, device)
    return model.eval()


def convert_from_file(model: nn.Module, path: str | os.PathLike, method: str,
                      filter_fn: FilterFn | None = None, keep_first_last: bool = True,
                      device: torch.device | str | None = None, **options) -> nn.Module:
    """Loads a float state dict from the safetensors file ``path`` into ``model`` and converts
    and freezes it as ``convert(model, method, filter_fn, keep_first_last, freeze=True,
    **options)``, in one pass; returns ``model`` (eval).

    ``model`` is the float architecture, best built on the meta device: then the process
    never holds the float model, only the compressed one and one float layer at a time (a
    block of its rows for a binary layer; the whole layer for the other methods, which fit
    it). Meta tensors are made on ``device`` (default: the CPU). The file must hold exactly
    ``model``'s state (names, shapes, dtypes), else a ``ValueError`` before ``model``
    changes; as for :func:`load_compressed`, the load is all or nothing.
    """
    path = os.fspath(path)
    with TensorFile(path) as f:
        _check_state(model, f.entries, path)
        plan, converted = {}, set()
        for name, layer, kind in conversions(model, method, filter_fn, keep_first_last,
                                             options):
            weight = f"{name}.weight"
            bias = f.read(f"{name}.bias") if layer.bias is not None else None
            if issubclass(kind.cls, PackedWeightMixin):
                new = kind.shaped_like(layer, options)
                new.freeze_from(f.read_blocks(weight, row_blocks(layer.weight.shape)), bias)
            else:  # fitted to the whole float layer, read for it alone
                float_layer = empty_twin(type(layer), layer, device="meta")
                float_layer.weight = nn.Parameter(f.read(weight))
                if bias is not None:
                    float_layer.bias = nn.Parameter(bias)
                new = kind.cls.from_float(float_layer, **options)
            plan[name] = new.to(device or _device_of(layer) or "cpu")
            converted |= {weight, f"{name}.bias"}

        def read_rest() -> dict[str, torch.Tensor]:
            state = {key: f.read(key) for key in sorted(set(f.entries) - converted)}
            for name, new in plan.items():
                state.update({f"{name}.{key}": t for key, t in new.state_dict().items()})
            return state

        _load_into(model, plan, f, read_rest, {}, device, check=False)
    return freeze(model)


def _load_into(model: nn.Module, plan: dict[str, nn.Module], f: TensorFile,
               read: Callable[[], dict[str, torch.Tensor]],
               devices: dict[nn.Module, torch.device | None],
               device: torch.device | str | None, check: bool = True) -> None:
    """Installs ``plan`` (name -> new module) in ``model``, checks (``check``) that the
    file's tensors are then its state, and loads ``read()`` (every state key -> a CPU tensor)
    into it: a meta tensor becomes the read one, on ``device``, else ``devices[its module]``,
    else the CPU; others are copied into. On any error ``model`` is put back as it was."""
    originals = {name: model.get_submodule(name) for name in plan}
    for name, new in plan.items():
        _install(model, name, new)
    assigned: list[tuple[dict, str, torch.Tensor]] = []
    try:
        if check:
            _check_state(model, f.entries, f.path)
        slots = _slots(model, f.path)
        state = read()
        made: dict[int, torch.Tensor] = {}  # a tied meta tensor becomes one tensor
        for key, (module, table, attr) in slots.items():
            old = table[attr]
            if not old.is_meta:
                continue
            if id(old) not in made:
                new = state[key].to(device or devices.get(module) or "cpu")
                made[id(old)] = nn.Parameter(new, old.requires_grad) if isinstance(
                    old, nn.Parameter) else new
            table[attr] = made[id(old)]
            assigned.append((table, attr, old))
            state[key] = made[id(old)]  # loaded into itself: nothing copied
        model.load_state_dict(state, strict=True)
    except BaseException:
        for table, attr, old in reversed(assigned):
            table[attr] = old
        for name, old in originals.items():
            _install(model, name, old)
        raise


def _slots(model: nn.Module, path: str) -> dict[str, tuple[nn.Module, dict, str]]:
    """Every state key -> ``(module, its _parameters or _buffers, name)``. A meta tensor
    outside the state (a non-persistent buffer) cannot come from the file: ValueError."""
    slots = {}
    for prefix, module in model.named_modules(remove_duplicate=False):
        dot = f"{prefix}." if prefix else ""
        for table in (module._parameters, module._buffers):
            for attr, t in table.items():
                if t is None:
                    continue
                if table is module._buffers and attr in module._non_persistent_buffers_set:
                    if t.is_meta:
                        raise ValueError(f"{dot}{attr} is on the meta device but is not "
                                         f"saved state: {path} cannot provide it")
                    continue
                slots[dot + attr] = (module, table, attr)
    return slots


def _check_state(model: nn.Module, stored: dict[str, tuple], path: str) -> None:
    """The file's tensors are exactly the model's state: names, shapes and dtypes."""
    expected = model.state_dict()
    if set(expected) != set(stored):
        raise ValueError(f"{path} does not match the model's state: missing "
                         f"{sorted(set(expected) - set(stored))}, unexpected "
                         f"{sorted(set(stored) - set(expected))}")
    for key, tensor in expected.items():
        shape, dtype = stored[key]
        want = SAFETENSORS_DTYPES.get(tensor.dtype, str(tensor.dtype))
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
