"""Models built on the meta device, loaded at their real size: load_compressed, convert on meta,
convert(freeze=True) and convert_from_file."""

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import emokernels as ek
from emokernels.files import TensorFile
from emokernels.nn.packed_weight import PackedWeightMixin, row_blocks
from emokernels.storage import convert_from_file

from .test_storage import net, rewrite

METHODS = [("xnor", {"scale_activations": True}), ("xnor", {}), ("bwn", {}),
           ("binary-activations", {}), ("hashed", {"compression": 0.25}), ("cp", {"rank": 4})]


def meta_net() -> nn.Sequential:
    with torch.device("meta"):
        return net()


def saved(tmp_path, method: str, options: dict) -> tuple[nn.Module, str]:
    model = ek.freeze(ek.convert(net(), method, **options))
    path = str(tmp_path / "m.safetensors")
    ek.save_compressed(model, path)
    return model, path


def assert_real_and_equal(loaded: nn.Module, expected: nn.Module) -> None:
    """No tensor left on meta, every binary layer frozen, eval, the same outputs bit for bit."""
    assert not any(t.is_meta for t in [*loaded.parameters(), *loaded.buffers()])
    assert all(m.is_frozen for m in loaded.modules() if isinstance(m, PackedWeightMixin))
    assert not any(m.training for m in loaded.modules())
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(x), expected.eval()(x))


@pytest.mark.parametrize("method, options", METHODS)
@pytest.mark.parametrize("convert_first", [None, False, True])
def test_meta_model_loads_bit_identical(tmp_path, method, options, convert_first):
    model, path = saved(tmp_path, method, options)
    target = meta_net()
    if convert_first is not None:  # on meta: shapes only, nothing fitted
        ek.convert(target, method, freeze=convert_first, **options)
        assert all(t.is_meta for t in target.state_dict().values())
    assert_real_and_equal(ek.load_compressed(target, path), model)


class FloatAllocations(TorchDispatchMode):
    """The sizes of the floating-point CPU tensors that ops create while it is active."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and not t.is_meta and t.is_floating_point():
                self.sizes.append(t.numel())
        return out


@pytest.mark.parametrize("method", ["xnor", "bwn"])
@pytest.mark.parametrize("meta", [True, False])
def test_load_and_inference_never_make_a_binary_layers_float_weight(tmp_path, method, meta):
    def model() -> nn.Sequential:
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 64, 3), nn.Conv2d(64, 64, 3, padding=1),
                             nn.Conv2d(64, 64, 3, padding=1), nn.Flatten(),
                             nn.Linear(64 * 4 * 4, 1024), nn.Linear(1024, 8))

    path = tmp_path / "m.safetensors"
    ek.save_compressed(ek.convert(model(), method), path)
    with torch.device("meta" if meta else "cpu"):
        target = model()
    smallest = 64 * 64 * 9
    x = torch.randn(1, 3, 6, 6)
    with FloatAllocations() as seen:
        loaded = ek.load_compressed(target, path)
        with torch.no_grad():
            loaded(x)
    assert max(seen.sizes) < smallest / 4


def meta_snapshot(model: nn.Module) -> list:
    return [(n, id(m), [(k, id(t), t.device.type) for k, t in [*m._parameters.items(),
                                                               *m._buffers.items()]])
            for n, m in model.named_modules()]


@pytest.mark.parametrize("state_change, meta_change, message", [
    (lambda s: {**s, "3.alpha": s["3.alpha"].double()}, None, "3.alpha is F64"),
    (lambda s: {k: v for k, v in s.items() if k != "1.running_mean"}, None, "missing"),
    (lambda s: {**s, "3.weight_bits": s["3.weight_bits"][:, :1].contiguous()}, None,
     "3.weight_bits"),
    (None, lambda m: {**m, "emokernels.sha256": "0" * 64}, "sha256"),
    (None, lambda m: {**m, "emokernels.format": "1"}, "format"),
])
def test_bad_file_leaves_the_meta_model_unchanged(tmp_path, state_change, meta_change,
                                                  message):
    _, path = saved(tmp_path, "xnor", {})
    rewrite(path, state_change, meta_change)
    for target in (meta_net(), ek.convert(meta_net(), "xnor")):
        before = meta_snapshot(target)
        with pytest.raises(ValueError, match=message):
            ek.load_compressed(target, path)
        assert meta_snapshot(target) == before
        assert all(t.is_meta for t in target.state_dict().values())


def test_meta_tensor_the_file_cannot_hold_is_an_error(tmp_path):
    _, path = saved(tmp_path, "bwn", {})
    target = meta_net()
    target[0].register_buffer("scratch", torch.zeros(3, device="meta"), persistent=False)
    before = meta_snapshot(target)
    with pytest.raises(ValueError, match="0.scratch is on the meta device"):
        ek.load_compressed(target, path)
    assert meta_snapshot(target) == before


def test_meta_model_keeps_tied_weights(tmp_path):
    def model() -> nn.Sequential:
        torch.manual_seed(0)
        m = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 64), nn.Linear(64, 64))
        m[2].weight = m[0].weight
        return m

    path = tmp_path / "m.safetensors"
    original = ek.convert(model(), "bwn")
    ek.save_compressed(original, path)
    with torch.device("meta"):
        target = model()
    loaded = ek.load_compressed(target, path)
    assert loaded[2].weight is loaded[0].weight and not loaded[0].weight.is_meta
    x = torch.randn(3, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), original(x))


def test_load_onto_the_device_argument(tmp_path):
    model, path = saved(tmp_path, "bwn", {})
    loaded = ek.load_compressed(meta_net(), path, device="cpu")
    assert {t.device.type for t in loaded.state_dict().values()} == {"cpu"}
    assert_real_and_equal(loaded, model)


@pytest.mark.parametrize("method, options", [("xnor", {}), ("bwn", {}),
                                             ("hashed", {"compression": 0.25})])
def test_convert_freeze_option_is_convert_then_freeze(method, options):
    expected = ek.freeze(ek.convert(net(), method, **options))
    model = ek.convert(net(), method, freeze=True, **options)
    assert all(m.weight is None for m in model.modules() if isinstance(m, PackedWeightMixin))
    state, want = model.state_dict(), expected.state_dict()
    assert state.keys() == want.keys() and all(torch.equal(state[k], want[k]) for k in want)
    assert_real_and_equal(model, expected)


def test_packing_in_row_blocks_is_packing_the_whole_weight():
    layer = ek.XnorLinear(20000, 100)
    assert len(row_blocks(tuple(layer.weight.shape))) > 1
    bits, alpha = layer._pack(layer.weight)
    w = layer.weight.detach()
    assert torch.equal(bits, ek.ops.pack_bits(w))
    assert torch.equal(alpha, w.abs().mean(1))


@pytest.mark.parametrize("method, options", [("xnor", {}), ("bwn", {}), ("binary-activations", {}),
                                             ("hashed", {"compression": 0.25})])
def test_convert_from_file_is_convert_and_freeze(tmp_path, method, options):
    float_model = net()
    with torch.no_grad():  # statistics that matter
        for m in float_model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    path = tmp_path / "float.safetensors"
    save_file({k: v.contiguous() for k, v in float_model.state_dict().items()}, path)
    expected = ek.convert(float_model, method, freeze=True, **options)
    assert_real_and_equal(convert_from_file(meta_net(), path, method, **options), expected)


def test_convert_from_file_rejects_another_model(tmp_path):
    path = tmp_path / "float.safetensors"
    save_file({k: v.contiguous() for k, v in net().state_dict().items()}, path)
    target = nn.Sequential(*list(meta_net())[:-1], nn.Linear(128, 9, device="meta"))
    before = meta_snapshot(target)
    with pytest.raises(ValueError, match=r"\[9, 128\]"):
        convert_from_file(target, path, "xnor")
    assert meta_snapshot(target) == before


def test_tensor_file_reads_tensors_and_row_blocks(tmp_path):
    tensors = {"a": torch.randn(7, 3, 2), "b": torch.randn(5).bfloat16(),
               "c": torch.tensor([True, False]), "d": torch.tensor(3)}
    path = tmp_path / "t.safetensors"
    save_file(tensors, path, metadata={"k": "v"})
    with TensorFile(str(path)) as f:
        assert f.metadata == {"k": "v"}
        assert f.entries["a"] == ((7, 3, 2), "F32")
        assert all(torch.equal(f.read(k), v) for k, v in tensors.items())
        assert torch.equal(f.read("a", slice(2, 5)), tensors["a"][2:5])
        blocks = [slice(0, 3), slice(3, 6), slice(6, 7)]
        for block, rows in zip(f.read_blocks("a", blocks), blocks, strict=True):
            assert torch.equal(block, tensors["a"][rows])  # each block before the next is read
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        TensorFile(str(path))
