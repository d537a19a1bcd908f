
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import emokernels as ek
from emokernels import ops
from emokernels.nn import hashed

from .test_storage import _set_layer, assert_load_rejected, rewrite, round_trip


def reference_weight(buckets: torch.Tensor, rows: int, cols: int, seed: int, block: int
                     ) -> torch.Tensor:
    """The virtual matrix entry by entry from the hash codes (float64)."""
    index, sign = ops.hashed_codes(rows, cols, buckets.shape[0], seed, block)
    return buckets.detach().double()[index] * sign.double()


def nonzero_(layer: nn.Module) -> nn.Module:
    """Random non-zero parameters (the bias too, so a dropped bias cannot pass)."""
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.rand_like(p) + 0.25 * torch.sign(torch.randn_like(p)))
    return layer


LINEAR_CASES = [  # (in, out, leading dims, compression, block, bias, hash_bias)
    (1, 1, (1,), 1 / 8, 1, True, False),
    (37, 11, (5,), 1 / 8, 1, True, False),
    (64, 33, (2, 3), 0.25, 4, True, True),
    (300, 7, (1,), 1 / 64, 1, False, False),
    (129, 65, (), 1.0, 2, True, True),
    (513, 3, (4, 1, 2), 0.5, 256, True, False),
]


@pytest.mark.parametrize("fan_in, out, lead, compression, block, bias, hash_bias",
                         LINEAR_CASES)
def test_linear_forward_matches_dense(fan_in, out, lead, compression, block, bias, hash_bias):
    torch.manual_seed(fan_in + out)
    layer = nonzero_(ek.HashedLinear(fan_in, out, compression, bias, hash_bias, seed=fan_in,
                                     block=block))
    weight = reference_weight(layer.buckets, out, fan_in, fan_in, block)
    torch.testing.assert_close(layer.dense_weight().double(), weight, rtol=0, atol=0)
    x = torch.randn(*lead, fan_in)
    expected = x.double() @ weight.T
    if bias:
        expected = expected + layer.dense_bias().double()
    got = layer(x)
    assert got.shape == (*lead, out) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)


CONV_CASES = [  # (C, O, batch, H, W, geometry)
    (3, 5, 1, 7, 9, dict(kernel_size=3)),
    (4, 6, 2, 11, 8, dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 2), dilation=(2, 1))),
    (7, 3, 3, 9, 9, dict(kernel_size=5, stride=2, padding=2, bias=False)),
    (5, 9, 1, 6, 5, dict(kernel_size=1, compression=0.5, block=8)),
    (2, 4, 2, 8, 7, dict(kernel_size=3, padding="same", dilation=2, hash_bias=True)),
    (6, 6, 1, 10, 10, dict(kernel_size=(1, 3), padding="valid", seed=2**32 - 1,
                           hash_bias=True)),
]


@pytest.mark.parametrize("channels, out, batch, height, width, geometry", CONV_CASES)
def test_conv_forward_matches_dense(channels, out, batch, height, width, geometry):
    torch.manual_seed(channels * out)
    layer = nonzero_(ek.HashedConv2d(channels, out, **geometry))
    kh, kw = layer.kernel_size
    # Column j = (c*kh + y)*kw + x: nn.Conv2d's weight.reshape(out, -1) order.
    weight = reference_weight(layer.buckets, out, channels * kh * kw, layer.seed, layer.block)
    assert torch.equal(layer.dense_weight().double(), weight.view(out, channels, kh, kw))
    x = torch.randn(batch, channels, height, width)
    conv = nn.Conv2d(channels, out, layer.kernel_size, layer.stride, geometry.get("padding", 0),
                     layer.dilation, bias=False).double()
    expected = conv._conv_forward(x.double(), weight.view(out, channels, kh, kw), None)
    bias = layer.dense_bias()
    if bias is not None:
        expected = expected + bias.double().view(1, -1, 1, 1)
    got = layer(x)
    assert got.shape == expected.shape and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)
    # and the float32 conv of the materialized weight
    torch.testing.assert_close(got, F.conv2d(x, layer.dense_weight(), bias, layer.stride,
                                             layer.padding, layer.dilation),
                               rtol=1e-5, atol=1e-5)


def grads_of(layer: nn.Module, x: torch.Tensor, out: torch.Tensor, grad: torch.Tensor):
    names = [n for n, _ in layer.named_parameters()]
    return dict(zip(["x", *names], torch.autograd.grad(out, [x, *layer.parameters()], grad),
                    strict=True))


@pytest.mark.parametrize("hash_bias, block", [(False, 1), (True, 1), (True, 4), (False, 2)])
def test_linear_gradients_match_dense(hash_bias, block):
    torch.manual_seed(block)
    layer = nonzero_(ek.HashedLinear(45, 13, 0.2, hash_bias=hash_bias, seed=3, block=block))
    x = torch.randn(6, 45, requires_grad=True)
    grad = torch.randn(6, 13)
    got = grads_of(layer, x, layer(x), grad)
    dense = F.linear(x, layer.dense_weight(), layer.dense_bias())
    expected = grads_of(layer, x, dense, grad)
    assert set(got) == {"x", "buckets", "bias_buckets" if hash_bias else "bias"}
    for name in got:
        assert got[name].abs().sum() > 0
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("geometry", [c[-1] for c in CONV_CASES[1:5]])
def test_conv_gradients_match_dense(geometry):
    torch.manual_seed(7)
    layer = nonzero_(ek.HashedConv2d(4, 5, **geometry))
    x = torch.randn(2, 4, 9, 8, requires_grad=True)
    out = layer(x)
    grad = torch.randn_like(out)
    got = grads_of(layer, x, out, grad)
    dense = F.conv2d(x, layer.dense_weight(), layer.dense_bias(), layer.stride, layer.padding,
                     layer.dilation)
    expected = grads_of(layer, x, dense, grad)
    for name in got:
        assert got[name].abs().sum() > 0
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-5)


def test_hashed_bias_is_the_one_column_hash():
    layer = nonzero_(ek.HashedLinear(10, 40, 0.25, hash_bias=True, seed=9))
    assert layer.bias is None and layer.bias_buckets.shape == (10,)
    expected = reference_weight(layer.bias_buckets, 40, 1, 10, 1)[:, 0]
    assert torch.equal(layer.dense_bias().double(), expected)
    x = torch.randn(3, 10)
    torch.testing.assert_close(layer(x) - F.linear(x, layer.dense_weight()),
                               layer.dense_bias().expand(3, -1), rtol=1e-5, atol=1e-5)
    # seed 2^32 - 1: the bias hash wraps to seed 0
    wrap = nonzero_(ek.HashedLinear(3, 16, 0.5, hash_bias=True, seed=2**32 - 1))
    assert torch.equal(wrap.dense_bias().double(),
                       reference_weight(wrap.bias_buckets, 16, 1, 0, 1)[:, 0])


def test_codes_of_some_rows_are_those_rows_of_the_table():
    for rows, cols, buckets, seed, block in [(7, 33, 50, 0, 1), (5, 64, 7, 123, 8),
                                             (3, 9, 1, 2**32 - 1, 4)]:
        index, sign = ops.hashed_codes(rows, cols, buckets, seed, block)
        got_index, got_sign = ops.hashed_codes(torch.tensor([4, 0, rows - 1]) % rows, cols,
                                               buckets, seed, block)
        picked = torch.tensor([4 % rows, 0, rows - 1])
        assert torch.equal(got_index, index[picked]) and torch.equal(got_sign, sign[picked])


def test_codes_of_some_rows_against_xxhash():
    xxhash = pytest.importorskip("xxhash")
    index, sign = ops.hashed_codes(torch.tensor([2, 1000]), 5, 97, 42, 1)
    for r, i in enumerate((2, 1000)):
        for j in range(5):
            h = xxhash.xxh32_intdigest(i.to_bytes(4, "little") + j.to_bytes(4, "little"), 42)
            assert index[r, j] == (h >> 1) % 97 and sign[r, j] == (-1 if h & 1 else 1)


def member_means(weight: torch.Tensor, num_buckets: int, seed: int, block: int) -> list:
    """Each bucket's mean of sign * W over its members, by Python loops (None if empty)."""
    index, sign = ops.hashed_codes(*weight.shape, num_buckets, seed, block)
    members = [[] for _ in range(num_buckets)]
    for b, s, w in zip(index.flatten().tolist(), sign.flatten().tolist(),
                       weight.flatten().tolist(), strict=True):
        members[b].append(s * w)
    return [sum(m) / len(m) if m else None for m in members]


@pytest.mark.parametrize("compression, block, hash_bias", [(1 / 8, 1, False), (0.5, 4, True),
                                                           (1.0, 1, True)])
def test_linear_from_float_buckets_are_member_means(compression, block, hash_bias):
    torch.manual_seed(1)
    dense = nn.Linear(23, 17)
    layer = ek.HashedLinear.from_float(dense, compression, seed=5, block=block,
                                       hash_bias=hash_bias)
    assert (layer.in_features, layer.out_features) == (23, 17)
    assert layer.num_buckets == max(1, round(compression * 23 * 17))
    means = member_means(dense.weight.detach(), layer.num_buckets, 5, block)
    expected = torch.tensor([0.0 if m is None else m for m in means])
    if compression == 1.0:
        assert any(m is None for m in means)  # empty buckets exist and are 0
    torch.testing.assert_close(layer.buckets.detach(), expected, rtol=1e-6, atol=1e-7)
    if hash_bias:
        bias_means = member_means(dense.bias.detach()[:, None], layer.num_bias_buckets, 6, 1)
        torch.testing.assert_close(layer.bias_buckets.detach(), torch.tensor(
            [0.0 if m is None else m for m in bias_means]), rtol=1e-6, atol=1e-7)
    else:
        assert torch.equal(layer.bias, dense.bias) and layer.bias is not dense.bias


def test_conv_from_float_buckets_are_member_means():
    torch.manual_seed(2)
    dense = nn.Conv2d(3, 4, (3, 2), stride=2, padding=1)
    layer = ek.HashedConv2d.from_conv(dense, compression=0.25, seed=11)
    assert (layer.stride, layer.padding, layer.kernel_size) == ((2, 2), (1, 1), (3, 2))
    means = member_means(dense.weight.detach().reshape(4, -1), layer.num_buckets, 11, 1)
    torch.testing.assert_close(layer.buckets.detach(), torch.tensor(
        [0.0 if m is None else m for m in means]), rtol=1e-6, atol=1e-7)
    assert torch.equal(layer.bias, dense.bias)


@pytest.mark.parametrize("make", [
    lambda: ek.HashedLinear(41, 19, 1 / 8, seed=3, block=2),
    lambda: ek.HashedLinear(41, 19, 1 / 4, seed=3, hash_bias=True),
    lambda: ek.HashedConv2d(5, 7, 3, padding=1, compression=1 / 8, seed=12, hash_bias=True),
])
def test_from_float_reproduces_a_hashed_weight_exactly(make, monkeypatch):
    monkeypatch.setattr(hashed, "_HASH_CHUNK", 100)  # several row chunks
    torch.manual_seed(4)
    layer = nonzero_(make())
    is_conv = isinstance(layer, ek.HashedConv2d)
    if is_conv:
        dense = nn.Conv2d(5, 7, 3, padding=1)
    else:
        dense = nn.Linear(41, 19)
    with torch.no_grad():
        dense.weight.copy_(layer.dense_weight())
        dense.bias.copy_(layer.dense_bias())
    options = dict(compression=layer.compression, seed=layer.seed, block=layer.block,
                   hash_bias=layer.hash_bias)
    fitted = type(layer).from_float(dense, **options)
    assert torch.equal(fitted.dense_weight(), layer.dense_weight())
    assert torch.equal(fitted.dense_bias(), layer.dense_bias())
    x = torch.randn(2, 5, 6, 6) if is_conv else torch.randn(3, 41)
    assert torch.equal(fitted(x), layer(x))


def test_parameters_are_only_buckets_and_bias():
    layer = ek.HashedLinear(100, 30, 1 / 8)
    assert dict(layer.named_parameters()).keys() == {"buckets", "bias"}
    assert sum(p.numel() for p in layer.parameters()) == 375 + 30
    assert layer.state_dict().keys() == {"buckets", "bias"}
    layer = ek.HashedLinear(100, 30, 1 / 8, hash_bias=True)
    assert dict(layer.named_parameters()).keys() == {"buckets", "bias_buckets"}
    assert sum(p.numel() for p in layer.parameters()) == 375 + 4  # round(30 / 8)
    layer = ek.HashedLinear(100, 30, 1 / 8, bias=False, hash_bias=True)
    assert sum(p.numel() for p in layer.parameters()) == layer.num_buckets == 375
    assert layer.dense_bias() is None
    conv = ek.HashedConv2d(16, 32, 3, compression=1 / 16)
    assert conv.num_buckets == round(16 * 32 * 9 / 16)
    assert sum(p.numel() for p in conv.parameters()) == conv.num_buckets + 32
    assert all(p.dtype == torch.float32 for p in conv.parameters())
    tiny = ek.HashedLinear(2, 1, 1 / 8, hash_bias=True)
    assert tiny.num_buckets == 1 and tiny.bias_buckets.shape == (1,)


def test_init_follows_nn_linear_bound():
    torch.manual_seed(0)
    layer = ek.HashedConv2d(16, 8, 3, hash_bias=True)
    bound = 1 / (16 * 9) ** 0.5
    assert layer.buckets.abs().max() <= bound and layer.buckets.abs().max() > 0.8 * bound
    assert layer.buckets.std() > 0.4 * bound
    assert 0 < layer.bias_buckets.abs().max() <= bound


def test_training_updates_buckets():
    layer = ek.HashedLinear(20, 5, 1 / 4, hash_bias=True)
    before = [p.detach().clone() for p in layer.parameters()]
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(torch.randn(8, 20)).square().mean().backward()
    optimizer.step()
    assert all(not torch.equal(p, b) for p, b in zip(layer.parameters(), before, strict=True))


def test_eval_equals_train_and_empty_batch():
    layer = nonzero_(ek.HashedConv2d(3, 4, 3, padding=1))
    x = torch.randn(2, 3, 5, 5)
    train_out = layer.train()(x)
    with torch.inference_mode():
        assert torch.equal(layer.eval()(x), train_out)
        assert layer(torch.randn(0, 3, 5, 5)).shape == (0, 4, 5, 5)
        assert ek.HashedLinear(8, 3)(torch.randn(0, 8)).shape == (0, 3)


def test_extra_repr_shows_options():
    text = repr(ek.HashedConv2d(3, 4, 3, compression=0.25, hash_bias=True, seed=7, block=2))
    for part in ("kernel_size=(3, 3)", "compression=0.25", "num_buckets=27", "bias=hashed",
                 "seed=7", "block=2"):
        assert part in text
    assert "in_features=5, out_features=2" in repr(ek.HashedLinear(5, 2))


def small_net() -> nn.Sequential:
    torch.manual_seed(5)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 12, 3, stride=2, padding=1), nn.BatchNorm2d(12), nn.ReLU(),
        nn.Conv2d(12, 6, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 4 * 4, 20), nn.ReLU(), nn.Linear(20, 4),
    )


def test_convert_hashed():
    net = small_net()
    originals = {name: net.get_submodule(name) for name in ("2", "5", "8")}
    ek.convert(net, "hashed", compression=0.25, seed=3, block=2, hash_bias=True)
    kinds = [type(m) for m in net if isinstance(m, (nn.Conv2d, nn.Linear, hashed._HashedLayer))]
    assert kinds == [nn.Conv2d, ek.HashedConv2d, ek.HashedConv2d, ek.HashedLinear, nn.Linear]
    for name, original in originals.items():
        layer = net.get_submodule(name)
        assert (layer.compression, layer.seed, layer.block, layer.hash_bias) == (0.25, 3, 2, True)
        fitted = type(layer).from_float(original, compression=0.25, seed=3, block=2,
                                        hash_bias=True)
        assert torch.equal(layer.buckets, fitted.buckets)
    x = torch.randn(2, 3, 8, 8)
    assert net(x).shape == (2, 4)
    frozen = ek.freeze(net)  # nothing to pack: the hashed layers stay as they are
    assert frozen[2].buckets is net[2].buckets and not frozen.training
    net2 = ek.convert(small_net(), "hashed", compression=1)  # an int compression is 1.0
    assert net2[2].compression == 1.0 and net2[2].num_buckets == 12 * 8 * 9
    with pytest.raises(TypeError, match="compression must be float"):
        ek.convert(small_net(), "hashed", compression="1/8")
    with pytest.raises(TypeError, match="seed must be int"):
        ek.convert(small_net(), "hashed", seed=True)
    with pytest.raises(TypeError, match="takes the options"):
        ek.convert(small_net(), "hashed", scale_activations=True)
    with pytest.raises(ValueError, match="compression must be in"):
        ek.convert(small_net(), "hashed", compression=2.0)


def test_model_size_counts_buckets():
    net = ek.convert(small_net(), "hashed", hash_bias=True, keep_first_last=False)
    expected = sum(p.numel() * 4 for p in net.parameters()) + sum(
        b.numel() * 4 for b in net.buffers() if b.is_floating_point())
    assert ek.model_size_bytes(net) == expected
    assert ek.model_size_bytes(net) < ek.model_size_bytes(small_net()) / 5


HASHED_OPTIONS = dict(compression=0.25, seed=2**32 - 2, block=4, hash_bias=True)


@pytest.mark.parametrize("target", ["float", "converted"])
def test_round_trip_is_bit_identical(tmp_path, target):
    model = nonzero_(ek.convert(small_net(), "hashed", **HASHED_OPTIONS)).eval()
    fresh = small_net()
    if target == "converted":  # same options, other buckets: replaced by the file's
        fresh = ek.convert(fresh, "hashed", **HASHED_OPTIONS)
    restored, keys, table = round_trip(model, fresh, tmp_path / "hashed.safetensors",
                                       torch.randn(3, 3, 8, 8))
    for name in ("2", "5", "8"):
        layer, saved = restored.get_submodule(name), model.get_submodule(name)
        assert type(layer) is type(saved) and repr(layer) == repr(saved)
        assert torch.equal(layer.buckets, saved.buckets)
        assert torch.equal(layer.bias_buckets, saved.bias_buckets)
    # the file holds the buckets and the options, nothing dense
    assert "2.buckets" in keys and "2.bias_buckets" in keys and "2.weight" not in keys
    assert table["2"] == {"class": "HashedConv2d", **HASHED_OPTIONS}
    assert table["8"] == {"class": "HashedLinear", **HASHED_OPTIONS}


def test_binary_and_hashed_layers_round_trip_together(tmp_path):
    model = ek.convert(small_net(), "hashed", filter_fn=lambda name, m: name == "8")
    ek.convert(model, "bwn", filter_fn=lambda name, m: name == "2")
    model.eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = model(x)
    ek.save_compressed(model, tmp_path / "m.safetensors")
    restored = ek.load_compressed(small_net(), tmp_path / "m.safetensors")
    assert type(restored[2]) is ek.BinaryConv2d and type(restored[8]) is ek.HashedLinear
    with torch.no_grad():
        assert torch.equal(restored(x), expected)


@pytest.mark.parametrize("make_target, message", [
    (lambda: ek.convert(small_net(), "hashed", **{**HASHED_OPTIONS, "compression": 0.5}),
     "options"),
    (lambda: ek.convert(small_net(), "hashed", **{**HASHED_OPTIONS, "seed": 1}), "options"),
    (lambda: ek.convert(small_net(), "hashed", **{**HASHED_OPTIONS, "hash_bias": False}),
     "options"),
    (lambda: ek.convert(small_net(), "bwn"), "is BinaryConv2d in the model but HashedConv2d"),
    (lambda: nn.Sequential(*list(small_net())[:8], nn.Linear(96, 21), nn.ReLU(),
                           nn.Linear(21, 4)), r"8\.buckets"),
])
def test_mismatch_is_an_error_and_changes_nothing(tmp_path, make_target, message):
    path = tmp_path / "m.safetensors"
    ek.save_compressed(ek.convert(small_net(), "hashed", **HASHED_OPTIONS), path)
    assert_load_rejected(path, make_target(), message)


@pytest.mark.parametrize("state_change, meta_change, message", [
    (lambda s: {**s, "5.buckets": s["5.buckets"][:-1]}, None, r"5\.buckets is F32"),
    (lambda s: {**s, "5.buckets": s["5.buckets"].double()}, None, r"5\.buckets is F64"),
    (lambda s: {k: v for k, v in s.items() if k != "8.bias_buckets"}, None, "missing"),
    (None, lambda m: _set_layer(m, "5", seed=-1), "seed must be"),
    (None, lambda m: _set_layer(m, "5", block=3), "block must be"),
    (None, lambda m: _set_layer(m, "5", compression=0.0), "compression must be"),
    (None, lambda m: _set_layer(m, "5", compression=0.5), r"5\.buckets"),
    (None, lambda m: _set_layer(m, "5", compression=1), "options"),
    (None, lambda m: _set_layer(m, "5", hash_bias=False), "unexpected"),
])
def test_corrupt_hashed_file_is_an_error_and_changes_nothing(tmp_path, state_change,
                                                             meta_change, message):
    path = tmp_path / "m.safetensors"
    ek.save_compressed(ek.convert(small_net(), "hashed", **HASHED_OPTIONS), path)
    rewrite(path, state_change, meta_change)
    assert_load_rejected(path, small_net(), message)


@pytest.mark.parametrize("make, error, message", [
    (lambda: ek.HashedConv2d(4, 4, 3, groups=2), ValueError, "groups=1"),
    (lambda: ek.HashedConv2d(4, 4, 3, padding_mode="reflect"), ValueError, "padding_mode"),
    (lambda: ek.HashedConv2d(4, 4, 2, padding="same"), ValueError, "odd effective kernel"),
    (lambda: ek.HashedConv2d(4, 4, 3, stride=2, padding="same"), ValueError, "stride 1"),
    (lambda: ek.HashedConv2d(4, 4, 3, padding="full"), ValueError, "'valid' or 'same'"),
    (lambda: ek.HashedConv2d(4, 4, 0), ValueError, "kernel_size"),
    (lambda: ek.HashedConv2d(4, 4, 3, stride=0), ValueError, "stride"),
    (lambda: ek.HashedConv2d(4, 4, 3, padding=-1), ValueError, "padding"),
    (lambda: ek.HashedConv2d(0, 4, 3), ValueError, "in_channels"),
    (lambda: ek.HashedLinear(4, 0), ValueError, "out_features"),
    (lambda: ek.HashedLinear(4, 4, compression=0.0), ValueError, r"compression must be in"),
    (lambda: ek.HashedLinear(4, 4, compression=1.5), ValueError, r"compression must be in"),
    (lambda: ek.HashedLinear(4, 4, compression=float("nan")), ValueError, "compression"),
    (lambda: ek.HashedLinear(4, 4, compression="1/8"), TypeError, "compression"),
    (lambda: ek.HashedLinear(4, 4, seed=-1), ValueError, r"seed must be an int in \[0, 2\^32"),
    (lambda: ek.HashedLinear(4, 4, seed=2**32), ValueError, "seed"),
    (lambda: ek.HashedLinear(4, 4, block=3), ValueError, "power of two"),
    (lambda: ek.HashedLinear(4, 4, block=512), ValueError, "power of two"),
    (lambda: ek.HashedLinear(4, 4, dtype=torch.float64), TypeError, "float32"),
    (lambda: ek.HashedLinear(2**16, 2**15, compression=1.0), ValueError, "2\\^30"),
    (lambda: ek.HashedLinear.from_float(nn.Conv2d(2, 2, 1)), TypeError, "nn.Linear"),
    (lambda: ek.HashedConv2d.from_float(nn.Linear(2, 2)), TypeError, "nn.Conv2d"),
    (lambda: ek.HashedConv2d.from_float(nn.Conv2d(4, 4, 3, groups=4)), ValueError, "groups"),
])
def test_bad_construction(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize("layer, x, error, message", [
    (ek.HashedLinear(10, 4), torch.randn(3, 11), ValueError, r"expected input \[\.\.\., 10\]"),
    (ek.HashedLinear(10, 4), torch.tensor(1.0), ValueError, r"\[\.\.\., 10\]"),
    (ek.HashedLinear(10, 4), torch.randn(3, 10).double(), TypeError, "float32"),
    (ek.HashedLinear(10, 4), torch.randn(3, 10).half(), TypeError, "float32"),
    (ek.HashedLinear(10, 4).double(), torch.randn(3, 10), TypeError, "stay float32"),
    (ek.HashedConv2d(8, 4, 3), torch.randn(2, 7, 5, 5), ValueError, r"\[B, 8, H, W\]"),
    (ek.HashedConv2d(8, 4, 3), torch.randn(8, 5, 5), ValueError, r"\[B, 8, H, W\]"),
    (ek.HashedConv2d(8, 4, 5), torch.randn(1, 8, 3, 3), ValueError, "smaller than the kernel"),
    (ek.HashedConv2d(8, 4, 3), torch.randn(1, 8, 5, 5).double(), TypeError, "float32"),
])
def test_bad_input(layer, x, error, message):
    with pytest.raises(error, match=message):
        layer(x)
