
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import emokernels as ek
from emokernels import ops
from emokernels.models import cp_decompose_squeezenet, squeezenet1_1
from emokernels.models.squeezenet import CP_LAYERS
from emokernels.nn.cp import cp_decompose_kernel, max_cp_rank

from .test_storage import _set_layer, assert_load_rejected, rewrite, round_trip, snapshot

needs_cp_op = pytest.mark.skipif(not hasattr(torch.ops.emokernels, "cp_conv2d"),
                                 reason="the extension was built without the cp_conv2d op")


def nonzero_(layer: nn.Module) -> nn.Module:
    """Random parameters of both signs, none near zero (a dropped factor or bias cannot pass)."""
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_((torch.rand_like(p) + 0.25) * torch.sign(torch.randn_like(p)))
    return layer


def kernel_of_rank(rank: int, shape=(6, 5, 3, 3), seed: int = 0) -> torch.Tensor:
    """A float32 ``[N, C, kh, kw]`` kernel that is exactly a sum of ``rank`` rank-one terms."""
    g = torch.Generator().manual_seed(seed)
    n, c, kh, kw = shape
    parts = [torch.randn(size, rank, generator=g, dtype=torch.float64) for size in shape]
    return torch.einsum("nr,cr,yr,xr->ncyx", *parts).float()


def conv_with(weight: torch.Tensor, **geometry) -> nn.Conv2d:
    n, c, kh, kw = weight.shape
    conv = nn.Conv2d(c, n, (kh, kw), **geometry)
    with torch.no_grad():
        conv.weight.copy_(weight)
    return conv


def dense_conv(layer: ek.CPConv2d, x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, layer.dense_weight(), layer.bias, layer.stride, layer.padding)


FORWARD_CASES = [  # (C, N, rank, batch, H, W, geometry, channels_last)
    (5, 7, 4, 2, 9, 11, dict(kernel_size=3, padding=1), False),
    (6, 4, 9, 3, 13, 7, dict(kernel_size=3, stride=2, padding=1), True),
    (3, 8, 5, 1, 11, 10, dict(kernel_size=(3, 5), stride=(2, 1), padding=(0, 2), bias=False),
     False),
    (8, 3, 2, 2, 7, 9, dict(kernel_size=(5, 1), stride=(1, 3), padding=(2, 0)), True),
    (4, 6, 3, 2, 5, 5, dict(kernel_size=3, padding=3, bias=False), True),
]


@needs_cp_op
@pytest.mark.parametrize("channels, out, rank, batch, height, width, geometry, channels_last",
                         FORWARD_CASES)
def test_forward_matches_reference_and_dense(channels, out, rank, batch, height, width,
                                             geometry, channels_last):
    torch.manual_seed(channels * out + rank)
    layer = nonzero_(ek.CPConv2d(channels, out, rank=rank, **geometry))
    x = torch.randn(batch, channels, height, width)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    got = layer(x)
    reference = ops.cp_conv2d_reference(x, layer.u_in, layer.k_v, layer.k_h, layer.u_out,
                                        layer.bias, layer.stride, layer.padding)
    assert got.shape == reference.shape and got.dtype == torch.float32
    torch.testing.assert_close(got, reference, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got, dense_conv(layer, x), rtol=1e-4, atol=1e-4)
    if channels_last:
        assert got.is_contiguous(memory_format=torch.channels_last)


@needs_cp_op
def test_forward_runs_the_fused_op_where_it_exists(monkeypatch):
    used = []
    for name in ("cp_conv2d", "cp_conv2d_reference"):
        real = getattr(ops, name)
        monkeypatch.setattr(ops, name,
                            lambda *args, real=real, name=name: used.append(name) or real(*args))
    layer = ek.CPConv2d(3, 4, 3, rank=2)
    layer(torch.randn(1, 3, 5, 5))
    layer(torch.randn(0, 3, 5, 5))
    layer.double()(torch.randn(1, 3, 5, 5, dtype=torch.float64))
    assert used == ["cp_conv2d", "cp_conv2d_reference", "cp_conv2d_reference"]


def test_other_dtypes_and_empty_batches_run_the_composition():
    """No fused op for CPU float64 / bfloat16 or an empty batch: the four-stage composition,
    whose result and gradients are the dense convolution's."""
    torch.manual_seed(1)
    layer = nonzero_(ek.CPConv2d(4, 5, 3, rank=3, stride=2, padding=1, dtype=torch.float64))
    x = torch.randn(2, 4, 7, 8, dtype=torch.float64, requires_grad=True)
    got = layer(x)
    torch.testing.assert_close(got, dense_conv(layer, x), rtol=1e-12, atol=1e-12)
    grad = torch.randn_like(got)
    params = [x, *layer.parameters()]
    for g, want in zip(torch.autograd.grad(got, params, grad),
                       torch.autograd.grad(dense_conv(layer, x), params, grad), strict=True):
        torch.testing.assert_close(g, want, rtol=1e-10, atol=1e-10)
    half = ek.CPConv2d(4, 5, 3, rank=3, padding=1).to(torch.bfloat16)
    xb = torch.randn(1, 4, 6, 6, dtype=torch.bfloat16)
    assert half(xb).dtype == torch.bfloat16
    torch.testing.assert_close(half(xb).float(), dense_conv(half.float(), xb.float()),
                               rtol=0.05, atol=0.05)
    empty = ek.CPConv2d(4, 5, 3, rank=3, stride=2)(torch.randn(0, 4, 9, 9))
    assert empty.shape == (0, 5, 4, 4)


@needs_cp_op
@pytest.mark.parametrize("bias, channels_last", [(True, False), (False, True)])
def test_gradients_match_reference(bias, channels_last):
    torch.manual_seed(2)
    layer = nonzero_(ek.CPConv2d(5, 6, (3, 2), rank=4, stride=(2, 1), padding=(1, 1),
                                 bias=bias))
    x = torch.randn(3, 5, 9, 8)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_(True)
    names = ["x", *(n for n, _ in layer.named_parameters())]
    params = [x, *layer.parameters()]
    out = layer(x)
    grad = torch.randn_like(out)
    got = dict(zip(names, torch.autograd.grad(out, params, grad), strict=True))
    reference = ops.cp_conv2d_reference(x, layer.u_in, layer.k_v, layer.k_h, layer.u_out,
                                        layer.bias, layer.stride, layer.padding)
    want = dict(zip(names, torch.autograd.grad(reference, params, grad), strict=True))
    assert set(got) == {"x", "u_in", "k_v", "k_h", "u_out", *(["bias"] if bias else [])}
    for name in got:
        assert got[name].abs().sum() > 0
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-4)


@needs_cp_op
def test_fine_tuning_lowers_the_loss():
    torch.manual_seed(3)
    target = nn.Conv2d(6, 8, 3, padding=1)
    layer = ek.CPConv2d(6, 8, 3, rank=6, padding=1)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.05, momentum=0.9)
    x = torch.randn(16, 6, 8, 8)
    with torch.no_grad():
        y = target(x)
    before = [p.detach().clone() for p in layer.parameters()]
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = F.mse_loss(layer(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert all(not torch.equal(p, b) for p, b in zip(layer.parameters(), before, strict=True))


@needs_cp_op
def test_compiles_to_one_graph():
    torch.manual_seed(10)
    layer = nonzero_(ek.CPConv2d(4, 6, 3, rank=5, stride=2, padding=1))
    x = torch.randn(2, 4, 9, 7)
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), layer(x))
    compiled(x).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())


def test_from_conv_recovers_an_exact_cp_kernel():
    weight = kernel_of_rank(3)
    conv = conv_with(weight, stride=2, padding=1)
    layer = ek.CPConv2d.from_conv(conv, 3, n_iter_max=200, tol=0)
    assert (layer.in_channels, layer.out_channels, layer.rank) == (5, 6, 3)
    assert (layer.kernel_size, layer.stride, layer.padding) == ((3, 3), (2, 2), (1, 1))
    assert layer.decomposition_error < 1e-4
    torch.testing.assert_close(layer.dense_weight(), weight, rtol=1e-4, atol=1e-4)
    assert torch.equal(layer.bias, conv.bias) and layer.bias is not conv.bias
    # each term's scale is shared by its four factors
    norms = torch.stack([layer.u_in.norm(dim=1), layer.k_v.norm(dim=1), layer.k_h.norm(dim=1),
                         layer.u_out.norm(dim=0)])
    torch.testing.assert_close(norms, norms[:1].expand(4, -1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("init", ["svd", "random"])
def test_reported_error_is_the_relative_error(init):
    torch.manual_seed(4)
    conv = nn.Conv2d(8, 12, (3, 2), bias=False)
    layer = ek.CPConv2d.from_conv(conv, 5, init=init, n_iter_max=30, seed=7)
    weight = conv.weight.detach().double()
    direct = (weight - layer.dense_weight().double()).norm() / weight.norm()
    assert 0 < layer.decomposition_error < 1
    assert layer.decomposition_error == pytest.approx(direct.item(), rel=1e-5)
    assert layer.bias is None
    again = ek.CPConv2d.from_conv(conv, 5, init=init, n_iter_max=30, seed=7)
    assert torch.equal(again.u_out, layer.u_out)  # deterministic given the seed
    assert ek.CPConv2d(8, 12, 3, rank=5).decomposition_error is None


def test_from_conv_keeps_dtype_and_makes_same_padding_explicit():
    conv = nn.Conv2d(3, 4, (3, 5), padding="same").double()
    layer = ek.CPConv2d.from_conv(conv, 2, n_iter_max=5)
    assert layer.padding == (1, 2) and layer.u_in.dtype == torch.float64
    assert ek.CPConv2d.shaped_like(nn.Conv2d(3, 4, 3, padding="valid"), 2).padding == (0, 0)


@needs_cp_op
def test_to_conv2d_is_the_same_convolution():
    torch.manual_seed(5)
    layer = nonzero_(ek.CPConv2d(5, 7, (3, 5), rank=4, stride=(1, 2), padding=(1, 0))).eval()
    conv = layer.to_conv2d()
    assert type(conv) is nn.Conv2d and not conv.training
    assert (conv.stride, conv.padding, conv.kernel_size) == ((1, 2), (1, 0), (3, 5))
    assert torch.equal(conv.weight, layer.dense_weight().detach())
    x = torch.randn(2, 5, 11, 12)
    with torch.no_grad():
        torch.testing.assert_close(conv(x), layer(x), rtol=1e-4, atol=1e-4)
    assert ek.CPConv2d(2, 3, 3, rank=1, bias=False).to_conv2d().bias is None


def test_rank_for_error_picks_the_smallest_rank():
    conv = conv_with(kernel_of_rank(3, seed=1))
    options = dict(n_iter_max=200, tol=0)
    target = 1e-3
    errors = {r: cp_decompose_kernel(conv.weight, r, **options).error for r in (1, 2)}
    assert errors[1] > target and errors[2] > target
    picked = ek.cp_rank_for_error(conv, target, **options)
    assert picked == 3
    assert cp_decompose_kernel(conv.weight, picked, **options).error <= target
    assert ek.cp_rank_for_error(conv, target, ranks=[8, 2, 5, 3], **options) == 3
    assert ek.cp_rank_for_error(conv, 1.0, **options) == 1  # rank 1 is never worse than 0
    with pytest.raises(ValueError, match="no rank reaches"):
        ek.cp_rank_for_error(conv, target, ranks=[1, 2], **options)
    with pytest.raises(ValueError, match="max_error"):
        ek.cp_rank_for_error(conv, -0.1)
    with pytest.raises(TypeError, match="rank"):
        ek.cp_rank_for_error(conv, 0.1, ranks=[2.0])
    with pytest.raises(ValueError, match="groups"):
        ek.cp_rank_for_error(nn.Conv2d(4, 4, 3, groups=2), 0.1)
    assert max_cp_rank((6, 5, 3, 3)) == 45 and max_cp_rank((256, 64, 3, 3)) == 576


def test_a_diverged_fit_is_an_error(monkeypatch):
    import tensorly.decomposition

    def diverged(tensor, rank, **_):
        factors = [torch.full((size, rank), float("nan")) for size in tensor.shape]
        return torch.ones(rank), factors

    monkeypatch.setattr(tensorly.decomposition, "parafac", diverged)
    with pytest.raises(RuntimeError, match="diverged at rank 4"):
        ek.CPConv2d.from_conv(nn.Conv2d(3, 4, 3), 4)


def small_net() -> nn.Sequential:
    torch.manual_seed(6)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 12, 3, stride=2, padding=1), nn.BatchNorm2d(12), nn.ReLU(),
        nn.Conv2d(12, 10, 1), nn.ReLU(),
        nn.Conv2d(10, 6, (1, 3), padding=(0, 1)), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 4 * 4, 20), nn.ReLU(), nn.Linear(20, 4),
    )


def test_convert_cp():
    net = small_net()
    asked = []

    def only_2(name, module):
        asked.append(name)
        return name == "2"

    original = net[2]
    ek.convert(net, "cp", filter_fn=only_2, keep_first_last=False, rank=3)
    assert asked == ["0", "2", "7"]  # the eligible layers: kernels above 1x1, no linear layers
    kinds = [type(m) for m in net if isinstance(m, (nn.Conv2d, nn.Linear, ek.CPConv2d))]
    assert kinds == [nn.Conv2d, ek.CPConv2d, nn.Conv2d, nn.Conv2d, nn.Linear, nn.Linear]
    assert net[2].rank == 3 and net[2].stride == (2, 2) and net[2].padding == (1, 1)
    fitted = ek.CPConv2d.from_float(original, 3)
    assert torch.equal(net[2].u_out, fitted.u_out)
    assert net[2].decomposition_error == fitted.decomposition_error
    every = ek.convert(small_net(), "cp", rank=2)  # the first conv stays float
    assert [type(every[i]) for i in (0, 2, 5, 7)] == [nn.Conv2d, ek.CPConv2d, nn.Conv2d,
                                                      ek.CPConv2d]
    for rank in (2.0, True, "4"):
        with pytest.raises(TypeError, match="option rank must be int"):
            ek.convert(small_net(), "cp", rank=rank)
    with pytest.raises(ValueError, match="rank must be positive"):
        ek.convert(small_net(), "cp", rank=0)
    with pytest.raises(TypeError, match="takes the options"):
        ek.convert(small_net(), "cp", rank=2, compression=0.5)
    with pytest.raises(TypeError, match="rank"):
        ek.convert(small_net(), "cp")


@needs_cp_op
@pytest.mark.parametrize("target", ["float", "converted"])
def test_round_trip_is_bit_identical(tmp_path, target):
    model = nonzero_(ek.convert(small_net(), "cp", rank=3, keep_first_last=False))
    fresh = small_net()
    if target == "converted":  # same rank, other factors: replaced by the file's
        fresh = ek.convert(fresh, "cp", rank=3, keep_first_last=False)
    restored, keys, table = round_trip(model.eval(), fresh, tmp_path / "cp.safetensors",
                                       torch.randn(2, 3, 8, 8))
    for name in ("0", "2", "7"):
        layer, saved = restored.get_submodule(name), model.get_submodule(name)
        assert type(layer) is ek.CPConv2d and repr(layer) == repr(saved)
        for p in ("u_in", "k_v", "k_h", "u_out", "bias"):
            assert torch.equal(getattr(layer, p), getattr(saved, p))
    assert {"2.u_in", "2.k_v", "2.k_h", "2.u_out", "2.bias"} <= keys and "2.weight" not in keys
    assert table["2"] == {"class": "CPConv2d", "rank": 3}
    assert table["5"] == {"class": "Conv2d"}
    assert ek.model_size_bytes(model) < ek.model_size_bytes(small_net())


def cp_file(tmp_path):
    path = tmp_path / "m.safetensors"
    ek.save_compressed(ek.convert(small_net(), "cp", rank=3, keep_first_last=False), path)
    return path


@pytest.mark.parametrize("make_target, message", [
    (lambda: ek.convert(small_net(), "cp", rank=4, keep_first_last=False), "options"),
    (lambda: ek.convert(small_net(), "hashed", keep_first_last=False),
     "is HashedConv2d in the model but CPConv2d"),
    (lambda: nn.Sequential(*[nn.Conv2d(3, 8, 3, padding=1, groups=1, dilation=2)
                             if i == 0 else m for i, m in enumerate(small_net())]), "dilation"),
])
def test_mismatch_is_an_error_and_changes_nothing(tmp_path, make_target, message):
    assert_load_rejected(cp_file(tmp_path), make_target(), message)


@pytest.mark.parametrize("meta_change, message", [
    (lambda m: _set_layer(m, "2", rank=4), r"2\.u_in is F32 \[3, 8\] in the file but the "
                                           r"model needs F32 \[4, 8\]"),
    (lambda m: _set_layer(m, "2", rank=0), "rank must be positive"),
    (lambda m: _set_layer(m, "2", rank=3.0), "options"),
    (lambda m: _set_layer(m, "5", **{"class": "CPConv2d", "rank": 3}), r"5\.u_in"),
])
def test_corrupt_cp_file_is_an_error_and_changes_nothing(tmp_path, meta_change, message):
    path = cp_file(tmp_path)
    rewrite(path, None, meta_change)
    assert_load_rejected(path, small_net(), message)


@pytest.mark.parametrize("make, error, message", [
    (lambda: ek.CPConv2d(4, 4, 3, rank=0), ValueError, "rank must be positive"),
    (lambda: ek.CPConv2d(4, 4, 3, rank=1.5), TypeError, "rank must be an int"),
    (lambda: ek.CPConv2d(4, 4, 3, rank=True), TypeError, "rank must be an int"),
    (lambda: ek.CPConv2d(0, 4, 3, rank=2), ValueError, "in_channels"),
    (lambda: ek.CPConv2d(4, 4, 0, rank=2), ValueError, "kernel_size must be >= 1"),
    (lambda: ek.CPConv2d(4, 4, (3, 3, 3), rank=2), TypeError, "kernel_size"),
    (lambda: ek.CPConv2d(4, 4, 3, rank=2, stride=0), ValueError, "stride must be >= 1"),
    (lambda: ek.CPConv2d(4, 4, 3, rank=2, stride=1.0), TypeError, "stride"),
    (lambda: ek.CPConv2d(4, 4, 3, rank=2, padding=-1), ValueError, "padding must be >= 0"),
    (lambda: ek.CPConv2d(4, 4, 3, rank=2, padding="same"), TypeError, "explicit ints"),
    (lambda: ek.CPConv2d(4, 4, 3, rank=2, groups=2), TypeError, "groups"),
    (lambda: ek.CPConv2d(4, 4, 3, rank=2, dilation=2), TypeError, "dilation"),
    (lambda: ek.CPConv2d(4, 4, 3, rank=2, dtype=torch.int32), TypeError, "floating point"),
    (lambda: ek.CPConv2d.from_conv(nn.Linear(2, 2), 2), TypeError, "nn.Conv2d"),
    (lambda: ek.CPConv2d.from_conv(nn.Conv2d(4, 4, 3, groups=2), 2), ValueError, "groups"),
    (lambda: ek.CPConv2d.from_conv(nn.Conv2d(4, 4, 3, dilation=2), 2), ValueError, "dilation"),
    (lambda: ek.CPConv2d.from_conv(nn.Conv2d(4, 4, 3, padding_mode="reflect"), 2), ValueError,
     "padding_mode"),
    (lambda: ek.CPConv2d.from_conv(nn.Conv2d(4, 4, 2, padding="same"), 2), ValueError,
     "odd effective kernel"),
    (lambda: ek.CPConv2d.from_conv(conv_with(torch.zeros(4, 4, 3, 3)), 2), ValueError,
     "all zeros"),
    (lambda: ek.CPConv2d.from_conv(nn.Conv2d(4, 4, 3), 2, init="tucker"), ValueError, "init"),
    (lambda: ek.CPConv2d.from_conv(nn.Conv2d(4, 4, 3), 2, n_iter_max=0), ValueError,
     "n_iter_max"),
    (lambda: ek.CPConv2d.shaped_like(nn.Conv2d(4, 4, 3), rank=-1), ValueError, "rank"),
])
def test_bad_construction(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize("x, error, message", [
    (torch.randn(2, 7, 5, 5), ValueError, r"\[B, 8, H, W\]"),
    (torch.randn(8, 5, 5), ValueError, r"\[B, 8, H, W\]"),
    (torch.randn(1, 8, 2, 5), ValueError, "smaller than the kernel"),
    (torch.randn(1, 8, 5, 5).double(), TypeError, "input is torch.float64 but the factors"),
])
def test_bad_input(x, error, message):
    with pytest.raises(error, match=message):
        ek.CPConv2d(8, 4, 3, rank=2)(x)


def test_init_gives_the_dense_default_variance():
    torch.manual_seed(8)
    layer = ek.CPConv2d(64, 256, 3, rank=192)
    fan_in = 64 * 9
    assert layer.dense_weight().var().item() == pytest.approx(1 / (3 * fan_in), rel=0.1)
    assert layer.bias.abs().max() <= fan_in ** -0.5
    assert sum(p.numel() for p in layer.parameters()) == 192 * (64 + 3 + 3 + 256) + 256


def test_extra_repr():
    text = repr(ek.CPConv2d(3, 4, (3, 1), rank=5, stride=2, padding=(1, 0), bias=False))
    assert text == ("CPConv2d(3, 4, kernel_size=(3, 1), rank=5, stride=(2, 2), "
                    "padding=(1, 0), bias=False)")


def test_squeezenet_recipe_touches_exactly_the_two_layers():
    model = squeezenet1_1(8)
    before = snapshot(model)
    originals = {name: model.get_submodule(name) for name in CP_LAYERS}
    result, errors = cp_decompose_squeezenet(model, rank=6, n_iter_max=3)
    assert result is model and set(errors) == set(CP_LAYERS)
    assert all(0 < e < 1 for e in errors.values())
    changed = {n for n, m in model.named_modules() if isinstance(m, ek.CPConv2d)}
    assert changed == set(CP_LAYERS) == {"features.11.expand3x3", "features.12.expand3x3"}
    for name, conv in originals.items():
        layer = model.get_submodule(name)
        assert (layer.in_channels, layer.out_channels, layer.rank) == (64, 256, 6)
        assert layer.padding == (1, 1) and torch.equal(layer.bias, conv.bias)
        assert layer.decomposition_error == errors[name]
    prefixes = tuple(f"{name}." for name in CP_LAYERS)
    state = model.state_dict()
    kept = {k: v for k, v in before["state"].items() if not k.startswith(prefixes)}
    assert all(torch.equal(state[k], v) for k, v in kept.items())
    modules = dict(before["modules"])
    assert all(id(m) == modules[n] for n, m in model.named_modules()
               if n in modules and not n.startswith(CP_LAYERS))
    with pytest.raises(ValueError, match="already decomposed"):
        cp_decompose_squeezenet(model)
    # the paper's setting: 2 x (147,456 - 62,592) weights fewer, 23.4 % of the network's
    shells, none = cp_decompose_squeezenet(squeezenet1_1(8), shells_only=True)
    count = sum(p.numel() for p in shells.parameters())
    assert none == {} and count == 726_600 - 2 * (147_456 - 62_592)
    assert 1 - count / 726_600 == pytest.approx(0.2336, abs=1e-4)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_forward_and_gradients(dtype):
    pytest.importorskip("triton")
    torch.manual_seed(9)
    layer = nonzero_(ek.CPConv2d(16, 24, 3, rank=20, stride=2, padding=1)).cuda().to(dtype)
    x = torch.randn(2, 16, 15, 13, device="cuda", dtype=dtype, requires_grad=True)
    out = layer(x)
    assert out.dtype == dtype and out.device.type == "cuda"
    reference = ops.cp_conv2d_reference(x.double(), *[p.double() for p in (
        layer.u_in, layer.k_v, layer.k_h, layer.u_out, layer.bias)], layer.stride, layer.padding)
    tol = {torch.float32: 1e-3, torch.float16: 2e-2, torch.bfloat16: 1e-1}[dtype]
    scale = reference.abs().max().item()
    torch.testing.assert_close(out.double(), reference, rtol=tol, atol=tol * scale)
    out.float().square().mean().backward()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in layer.parameters())


def test_autocast_computes_in_the_autocast_dtype():
    layer = ek.CPConv2d(4, 6, 3, rank=5, padding=1)
    x = torch.randn(2, 4, 7, 7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    assert out.dtype == torch.bfloat16
    want = F.conv2d(x, layer.dense_weight().detach(), layer.bias.detach(), 1, 1)
    assert torch.allclose(out.float(), want, atol=0.05 * want.abs().max().item())
