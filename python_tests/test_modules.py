import pytest
import torch
from torch import nn

import emokernels as ek
from emokernels import ops

CONV_GEOMETRIES = [
    dict(kernel_size=3, padding=1),
    dict(kernel_size=5, stride=2, padding=2),
    dict(kernel_size=(3, 2), stride=(1, 2), padding=(2, 1), dilation=(2, 1)),
    dict(kernel_size=1),
    dict(kernel_size=3, padding="same"),
    dict(kernel_size=7, stride=2, padding=3, bias=False),
]


def train_and_eval(module: nn.Module, x: torch.Tensor):
    """Train-mode (float) output and eval-mode output without autograd (packed kernels)."""
    module.train()
    float_out = module(x)
    module.eval()
    with torch.no_grad():
        return float_out, module(x)


@pytest.mark.parametrize("geometry", CONV_GEOMETRIES)
@pytest.mark.parametrize("channels", [3, 32, 37, 96])
@pytest.mark.parametrize("scale", [False, True])
def test_xnor_conv_packed_equals_float(isa, geometry, channels, scale):
    torch.manual_seed(channels)
    layer = ek.XnorConv2d(channels, 19, scale_activations=scale, **geometry)
    x = torch.randn(2, channels, 11, 9)
    float_out, packed_out = train_and_eval(layer, x)
    # Integer parts are exact and the scaling runs the same float ops: identical numbers.
    assert torch.equal(float_out, packed_out)


@pytest.mark.parametrize("geometry", CONV_GEOMETRIES)
@pytest.mark.parametrize("channels", [37, 48])
def test_bwn_conv_packed_matches_float(isa, geometry, channels):
    layer = ek.BinaryConv2d(channels, 19, **geometry)
    x = torch.randn(3, channels, 10, 12)
    float_out, packed_out = train_and_eval(layer, x)
    torch.testing.assert_close(packed_out, float_out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("features", [1, 31, 100, 1025])
def test_linear_packed_matches_float(isa, features):
    x = torch.randn(4, 5, features)
    xnor = ek.XnorLinear(features, 7, scale_activations=True)
    float_out, packed_out = train_and_eval(xnor, x)
    assert torch.equal(float_out, packed_out)
    bwn = ek.BinaryLinear(features, 7)
    float_out, packed_out = train_and_eval(bwn, x)
    torch.testing.assert_close(packed_out, float_out, rtol=1e-5, atol=1e-5)


def small_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 40, 3, padding=1), nn.ReLU(),
        nn.Conv2d(40, 64, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(64, 33, 3, padding=1, dilation=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(33 * 8 * 8, 50), nn.ReLU(), nn.Linear(50, 8),
    )


@pytest.mark.parametrize("method", ["xnor", "bwn"])
def test_converted_random_net_packed_matches_float(method):
    torch.manual_seed(1)
    net = ek.convert(small_net(), method)
    x = torch.randn(5, 3, 16, 16)
    float_out, packed_out = train_and_eval(net, x)
    if method == "xnor":
        assert torch.equal(float_out, packed_out)
    else:
        torch.testing.assert_close(packed_out, float_out, rtol=1e-4, atol=1e-4)


def test_convert_keeps_first_and_last_in_float():
    net = ek.convert(small_net(), "xnor")
    kinds = [type(m) for m in net if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert kinds == [nn.Conv2d, ek.XnorConv2d, ek.XnorConv2d, ek.XnorLinear, nn.Linear]
    net = ek.convert(small_net(), "bwn", keep_first_last=False)
    assert all(type(m) in (ek.BinaryConv2d, ek.BinaryLinear)
               for m in net if isinstance(m, (nn.Conv2d, nn.Linear)))


def test_convert_filter_and_options():
    net = ek.convert(small_net(), "xnor", filter_fn=lambda name, m: isinstance(m, nn.Conv2d),
                     scale_activations=True)
    assert isinstance(net[2], ek.XnorConv2d) and net[2].scale_activations
    assert type(net[7]) is nn.Linear


def test_convert_copies_weights():
    net = small_net()
    weight = net[2].weight.detach().clone()
    ek.convert(net, "bwn")
    assert torch.equal(net[2].weight, weight)


def test_convert_binary_activations():
    net = ek.convert(small_net(), "binary-activations")
    kinds = [type(m) for m in net if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert kinds == [nn.Conv2d, ek.BinaryInputConv2d, ek.BinaryInputConv2d,
                     ek.BinaryInputLinear, nn.Linear]
    x = torch.randn(2, 3, 16, 16)
    float_out, packed_out = train_and_eval(net, x)
    torch.testing.assert_close(packed_out, float_out, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("geometry", CONV_GEOMETRIES[:4] + CONV_GEOMETRIES[5:])
@pytest.mark.parametrize("channels", [5, 37, 64])
def test_binary_input_conv_packed_matches_float(isa, geometry, channels):
    layer = ek.BinaryInputConv2d.from_float(nn.Conv2d(channels, 24, **geometry))
    x = torch.randn(2, channels, 9, 11)
    float_out, packed_out = train_and_eval(layer, x)
    torch.testing.assert_close(packed_out, float_out, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("features", [1, 33, 300])
@pytest.mark.parametrize("rows", [3, 40])  # float GEMV below 32 rows, packed above
def test_binary_input_linear_packed_matches_float(isa, features, rows):
    layer = ek.BinaryInputLinear.from_float(nn.Linear(features, 20))
    x = torch.randn(rows, 2, features)
    float_out, packed_out = train_and_eval(layer, x)
    torch.testing.assert_close(packed_out, float_out, rtol=1e-4, atol=1e-4)


def test_binary_input_layers_under_inference_mode():
    conv = ek.BinaryInputConv2d(8, 16, 3, padding=1).eval()
    linear = ek.BinaryInputLinear(8, 4).eval()
    x = torch.randn(40, 8, 5, 5)
    with torch.no_grad():
        expected = (conv(x), linear(x.mean((2, 3))))
    with torch.inference_mode():
        assert torch.equal(conv(x), expected[0])
        assert torch.equal(linear(x.mean((2, 3))), expected[1])


def test_binary_input_follows_weight_updates():
    layer = ek.BinaryInputLinear(40, 20).eval()
    x = torch.randn(33, 40)
    with torch.no_grad():
        before = layer(x)
        layer.weight.mul_(2)
        torch.testing.assert_close(layer(x), 2 * before - layer.bias, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method, options, error", [
    ("ternary", {}, ValueError), ("bwn", {"scale_activations": True}, TypeError)])
def test_convert_bad_arguments(method, options, error):
    with pytest.raises(error):
        ek.convert(small_net(), method, **options)


def test_ste_gradients_are_clipped():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.7, 1.5], requires_grad=True)
    ek.BinaryActivation()(x).sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0]))


def test_train_mode_trains_latent_weights():
    torch.manual_seed(0)
    layer = ek.XnorConv2d(8, 4, 3, padding=1)
    with torch.no_grad():
        layer.weight.mul_(0.5)
    x = torch.randn(2, 8, 6, 6)
    before = layer.weight.detach().clone()
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(x).square().mean().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    optimizer.step()
    assert not torch.equal(layer.weight, before)


def test_eval_repacks_after_weight_update():
    layer = ek.BinaryLinear(40, 6).eval()
    x = torch.randn(3, 40)
    with torch.no_grad():
        first = layer(x)
        layer.weight.neg_()
        torch.testing.assert_close(layer(x), -first + 2 * layer.bias, rtol=1e-5, atol=1e-5)


def test_freeze_drops_latent_weights_and_keeps_outputs():
    net = ek.convert(small_net(), "xnor")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = net.eval()(x)
    layer = net[4]  # 64 input channels: no per-tap word padding
    float_bytes = layer.weight.numel() * 4
    ek.freeze(net)
    assert layer.weight is None and "weight" not in dict(layer.named_parameters())
    assert layer.weight_bits.dtype == torch.int32
    assert layer.weight_bits.numel() * 4 <= float_bytes / 30
    assert net[2].packed_size_bytes() < net[2].weight_bits.numel() * 4  # 40 channels: padded
    assert torch.equal(net(x), expected)
    net.train()
    with pytest.raises(RuntimeError, match="frozen"):
        net(x)


def test_frozen_weight_bytes_at_most_one_thirtieth():
    layer = ek.BinaryConv2d(256, 512, 3, padding=1)
    float_bytes = layer.weight.numel() * layer.weight.element_size()
    layer.freeze()
    assert layer.weight_bits.numel() * 4 + layer.alpha.numel() * 4 <= float_bytes / 30


def test_model_size_bytes():
    net = small_net()
    dense = ek.model_size_bytes(net)
    assert dense == sum(p.numel() * 4 for p in net.parameters())
    ek.convert(net, "bwn")
    compressed = ek.model_size_bytes(net)
    assert compressed == ek.model_size_bytes(ek.freeze(net))
    assert compressed < dense / 4
    conv = net[2]
    assert conv.packed_size_bytes() == 64 * ((40 * 9 + 31) // 32) * 4 + 64 * 4 + 64 * 4


def test_from_float_copies_and_validates():
    conv = nn.Conv2d(5, 6, 3, stride=2, padding=1, dilation=1)
    layer = ek.XnorConv2d.from_conv(conv, scale_activations=True)
    assert (layer.stride, layer.padding, layer.scale_activations) == ((2, 2), (1, 1), True)
    assert torch.equal(layer.weight, conv.weight) and torch.equal(layer.bias, conv.bias)
    with pytest.raises(TypeError):
        ek.BinaryLinear.from_float(conv)


@pytest.mark.parametrize("kwargs, error", [
    (dict(groups=2), NotImplementedError), (dict(padding_mode="reflect"), NotImplementedError)])
def test_unsupported_conv_options(kwargs, error):
    with pytest.raises(error):
        ek.XnorConv2d(4, 4, 3, **kwargs)


def test_wrong_input_shape():
    with pytest.raises(ValueError, match=r"\[B, 8, H, W\]"):
        ek.XnorConv2d(8, 4, 3).eval()(torch.randn(2, 7, 5, 5))
    with pytest.raises(ValueError, match=r"\[\.\.\., 10\]"):
        ek.XnorLinear(10, 4)(torch.randn(3, 11))
    with pytest.raises(ValueError, match="smaller than the kernel"), torch.no_grad():
        ek.XnorConv2d(8, 4, 5).eval()(torch.randn(1, 8, 3, 3))


@torch.no_grad()
def test_empty_batch_eval():
    assert ek.XnorConv2d(8, 4, 3, padding=1).eval()(torch.randn(0, 8, 5, 5)).shape == (0, 4, 5, 5)
    assert ek.BinaryLinear(8, 4).eval()(torch.randn(0, 8)).shape == (0, 4)


@torch.no_grad()
def test_bfloat16_bwn_linear():
    layer = ek.BinaryLinear(64, 9).eval()
    x = torch.randn(3, 64)
    torch.testing.assert_close(layer(x.bfloat16()).float(), layer(x), rtol=2e-2, atol=5e-2)


def test_packed_weights_follow_module_bits():
    layer = ek.XnorLinear(70, 3)
    bits, alpha = layer.packed_weight()
    assert torch.equal(bits, ops.pack_bits(layer.weight.detach()))
    torch.testing.assert_close(alpha, layer.weight.detach().abs().mean(1))
