"""optimize_for_inference: binary chains that stay binary, exactly equal to the unfused model."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import emokernels as ek
from emokernels import ops
from emokernels.models import vgg_s
from emokernels.nn.packed_chain import PackChannels, PackedMaxPool2d, PackedXnorConv2d


def randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """BatchNorm statistics and scales of every sign: about a third negative, some zero."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            weight = torch.randn(n, generator=gen) + 0.3
            weight[torch.rand(n, generator=gen) < 0.1] = 0.0
            m.weight.data, m.bias.data = weight, torch.randn(n, generator=gen) * 0.5
            if m.running_mean is not None:
                m.running_mean.data = torch.randn(n, generator=gen) * 4
                m.running_var.data = torch.rand(n, generator=gen) * 3
    return model.eval()


def assert_fused_equal(model: nn.Module, x: torch.Tensor, packed_layers: int) -> nn.Module:
    with torch.no_grad():
        want = model(x)
        fused = ek.optimize_for_inference(model, x[:1])
        got = fused(x)
    assert torch.equal(got, want)
    assert sum(isinstance(m, PackedXnorConv2d) for m in fused.modules()) == packed_layers
    return fused


@pytest.mark.parametrize("scales", ["any sign", "positive"])
@pytest.mark.parametrize("frozen", [False, True])
def test_xnor_vgg_s_equals_unfused(frozen, scales):
    torch.manual_seed(0)
    model = randomize_norms(
        ek.convert(vgg_s(8, 96, binary_inputs=True, fc_width=70), "xnor", freeze=frozen))
    if scales == "positive":
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.data = m.weight.data.abs() + 0.1
    fused = assert_fused_equal(model, torch.randn(3, 3, 96, 96), 6)
    # pools take the AND pass only where a scale after them is negative
    with_and = [m.and_words is not None for m in fused if isinstance(m, PackedMaxPool2d)]
    assert with_and == ([True] * 3 if scales == "any sign" else [False] * 3)
    kinds = [type(m).__name__ for m in fused]
    # conv1 (float) -> its BatchNorm, ReLU, pool, conv2's BatchNorm and sign as one interval
    # test and a pool on bits -> conv2 -> pool -> conv3 -> conv4 -> conv5 -> pool -> fc6 -> fc7:
    # no BatchNorm and no float map between them.
    assert kinds[:11] == ["Conv2d", "PackChannels", "PackedMaxPool2d", "PackedXnorConv2d",
                          "PackedMaxPool2d", *["PackedXnorConv2d"] * 3, "PackedMaxPool2d",
                          *["PackedXnorConv2d"] * 2]
    bits_out = [m.bounds is not None for m in fused if isinstance(m, PackedXnorConv2d)]
    assert bits_out == [True] * 5 + [False]


@pytest.mark.parametrize("order", ["pool-bn", "bn-pool", "bn-relu-pool-bn", "no-pool"])
@pytest.mark.parametrize("geometry", [
    dict(kernel_size=3, padding=1),
    dict(kernel_size=(3, 2), stride=2, padding=(1, 0)),
    dict(kernel_size=3, padding=2, dilation=2),
])
def test_conv_chains_equal_unfused(order, geometry):
    torch.manual_seed(1)
    c1, c2, c3 = 5, 40, 33  # channels that do not fill whole words
    pool = nn.MaxPool2d(3, 2, padding=1, ceil_mode=True)
    between = {"pool-bn": [pool, nn.BatchNorm2d(c2)], "bn-pool": [nn.BatchNorm2d(c2), pool],
               "bn-relu-pool-bn": [nn.BatchNorm2d(c2), nn.Hardtanh(), pool,
                                   nn.BatchNorm2d(c2)],
               "no-pool": [nn.BatchNorm2d(c2), nn.Dropout(), nn.Identity()]}[order]
    features = [nn.BatchNorm2d(c1), ek.XnorConv2d(c1, c2, **geometry), *between,
                ek.XnorConv2d(c2, c3, 3, padding=1, bias=False), nn.BatchNorm2d(c3)]
    x = torch.randn(4, c1, 13, 12)
    with torch.no_grad():
        flat = nn.Sequential(*features).eval()(x)[0].numel()
    model = nn.Sequential(*features, nn.Flatten(), ek.XnorLinear(flat, 50), nn.BatchNorm1d(50),
                          ek.XnorLinear(50, 6))
    assert_fused_equal(randomize_norms(model, 3), x, 4)


def test_linear_chain_equals_unfused():
    torch.manual_seed(2)
    model = nn.Sequential(ek.XnorLinear(50, 70), nn.BatchNorm1d(70), ek.XnorLinear(70, 33),
                          nn.BatchNorm1d(33), nn.LeakyReLU(0.1), ek.XnorLinear(33, 5))
    fused = assert_fused_equal(randomize_norms(model, 4), torch.randn(9, 50), 3)
    assert isinstance(fused[0], PackedXnorConv2d) and fused[0].float_input


def test_degenerate_channels_and_zero_crossings():
    # Zero BN scales (constant signs), and a BatchNorm that maps some dot to exactly 0
    # (sign(0) = +1): frozen alpha 1 and bias 0 make the layer's output the dot itself.
    torch.manual_seed(3)
    model = nn.Sequential(ek.XnorConv2d(8, 40, 3, padding=1), nn.BatchNorm2d(40),
                          ek.XnorConv2d(40, 7, 3, padding=1))
    ek.freeze(model)
    model[0].alpha.fill_(1.0)
    model[0].bias.zero_()
    randomize_norms(model, 5)
    bn = model[1]
    bn.weight.data[:10] = 0.0
    bn.running_mean.data = torch.randint(-8, 9, (40,)).float()
    bn.running_var.data.fill_(1.0 - bn.eps)
    x = torch.randn(6, 8, 9, 9)
    with torch.no_grad():
        dots = model[0](x)
    assert (bn.running_mean.view(1, -1, 1, 1) == dots).any()  # exact zeros reach the sign
    assert_fused_equal(model, x, 2)


def test_unfusable_layers_stay():
    torch.manual_seed(4)
    chains = [
        [ek.XnorConv2d(4, 8, 3), nn.BatchNorm2d(8), ek.XnorConv2d(8, 4, 3, scale_activations=True)],
        [ek.XnorConv2d(4, 8, 3), nn.LeakyReLU(-0.5), ek.XnorConv2d(8, 4, 3)],
        [ek.XnorConv2d(4, 8, 3), nn.Conv2d(8, 8, 1), ek.XnorConv2d(8, 4, 3)],
        [ek.XnorConv2d(4, 8, 3), nn.BatchNorm2d(8, track_running_stats=False),
         ek.XnorConv2d(8, 4, 3)],
    ]
    for layers in chains:
        assert_fused_equal(randomize_norms(nn.Sequential(*layers)), torch.randn(2, 4, 9, 9), 0)


class Wrapped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(ek.XnorConv2d(3, 16, 3), nn.BatchNorm2d(16),
                                      ek.XnorConv2d(16, 8, 3))
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


def test_nested_sequentials_and_the_original_untouched():
    torch.manual_seed(5)
    model = randomize_norms(Wrapped())
    before = list(model.features)
    fused = assert_fused_equal(model, torch.randn(3, 3, 8, 8), 2)
    assert list(model.features) == before and fused.head is model.head
    assert fused.features is not model.features


def test_bad_arguments():
    model = randomize_norms(nn.Sequential(ek.XnorLinear(40, 40), nn.BatchNorm1d(40),
                                          ek.XnorLinear(40, 3)))
    x = torch.randn(2, 40)
    with pytest.raises(TypeError, match="float32"):
        ek.optimize_for_inference(model, x.double())
    with pytest.raises(ValueError, match="eval"):
        ek.optimize_for_inference(model.train(), x)
    model.eval()
    model[1].running_var[3] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        ek.optimize_for_inference(model, x)
    model[1].running_var[3] = -1.0
    with pytest.raises(ValueError, match="negative running_var"):
        ek.optimize_for_inference(model, x)


def test_packed_layers_check_their_input():
    torch.manual_seed(6)
    model = randomize_norms(nn.Sequential(
        ek.XnorConv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), ek.XnorLinear(8 * 16, 4),
        nn.BatchNorm1d(4), ek.XnorLinear(4, 2)))
    fused = ek.optimize_for_inference(model, torch.randn(1, 3, 6, 6))
    with pytest.raises(ValueError, match=r"takes a \(4, 4\) map"):
        fused(torch.randn(1, 3, 7, 7))
    with pytest.raises(ValueError, match="floating input"):
        fused(torch.randn(1, 4, 6, 6))
    with pytest.raises(ValueError, match="packed int32 words"):
        fused[2](torch.randn(1, 4, 4, 8))


@pytest.mark.parametrize("geometry", [
    dict(kernel_size=2), dict(kernel_size=3, stride=3, ceil_mode=True),
    dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=(2, 3), stride=1, dilation=2),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)])
def test_packed_max_pool_is_or_and_and(geometry):
    torch.manual_seed(7)
    x = torch.randn(2, 45, 11, 10)
    with_and = torch.rand(45) < 0.5
    maxed = F.max_pool2d(x, **geometry)
    minned = -F.max_pool2d(-x, **geometry)
    want = torch.where(with_and.view(1, -1, 1, 1), minned, maxed)
    pool = PackedMaxPool2d(**geometry, and_words=ops.pack_bits(torch.where(with_and, 1.0, -1.0)))
    got = pool(ops.pack_bits(x.permute(0, 2, 3, 1)))
    assert torch.equal(got, ops.pack_bits(want.permute(0, 2, 3, 1)))
    plain = PackedMaxPool2d(**geometry)(ops.pack_bits(x.permute(0, 2, 3, 1)))
    assert torch.equal(plain, ops.pack_bits(maxed.permute(0, 2, 3, 1)))
    with pytest.raises(ValueError, match="packed int32"):
        pool(x)


@pytest.mark.parametrize("run", ["bn-relu-pool-bn", "pool-bn", "bn-pool", "bn"])
@pytest.mark.parametrize("then", ["chain", "alone"])
def test_float_heads_equal_unfused(run, then):
    """The float modules before the first XNOR convolution and its sign: one interval test per
    channel (pack_channels) and, with a pool, a pool on bits."""
    torch.manual_seed(8)
    c = 36
    pool = nn.MaxPool2d(3, 2, padding=1)
    modules = {"bn-relu-pool-bn": [nn.BatchNorm2d(c), nn.ReLU(), pool, nn.BatchNorm2d(c)],
               "pool-bn": [pool, nn.BatchNorm2d(c)], "bn-pool": [nn.BatchNorm2d(c), pool],
               "bn": [nn.BatchNorm2d(c)]}[run]
    tail = [nn.BatchNorm2d(20), ek.XnorConv2d(20, 8, 1)] if then == "chain" else []
    model = nn.Sequential(nn.Conv2d(3, c, 3), *modules, ek.XnorConv2d(c, 20, 3, padding=1),
                          *tail)
    fused = assert_fused_equal(randomize_norms(model, 9), torch.randn(3, 3, 15, 13),
                               2 if then == "chain" else 1)
    assert isinstance(fused[1], PackChannels)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.MaxPool2d)) for m in fused[:-1])


def test_float_heads_need_a_norm_or_a_pool():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), ek.XnorConv2d(8, 4, 3))
    fused = assert_fused_equal(model.eval(), torch.randn(2, 3, 9, 9), 0)
    assert [type(m) for m in fused] == [type(m) for m in model]


def test_float_head_extremes():
    # Values at the intervals' ends, zeros, infinities: the interval test is the sign of the
    # modules at every float32 value, not only at typical ones.
    torch.manual_seed(10)
    model = randomize_norms(nn.Sequential(nn.Identity(), nn.BatchNorm2d(40),
                                          ek.XnorConv2d(40, 4, 1)), 11)
    fused = ek.optimize_for_inference(model, torch.randn(1, 40, 2, 2))
    lower, upper = fused[0].lower, fused[0].upper
    finite = lambda t: torch.where(t.isfinite(), t, 0.0)  # noqa: E731
    values = [lower, upper, finite(lower).nextafter(torch.tensor(-INF)),
              finite(upper).nextafter(torch.tensor(INF)), torch.zeros(40), -torch.zeros(40),
              torch.full((40,), 3.0e38), torch.full((40,), -3.0e38)]
    x = torch.stack(values)[:, :, None, None].nan_to_num(0.0, 3.0e38, -3.0e38)
    with torch.no_grad():
        assert torch.equal(fused(x), model(x))


INF = float("inf")


class Residual(nn.Sequential):
    def forward(self, x):
        return x + super().forward(x)


def test_sequential_subclasses_keep_their_forward():
    torch.manual_seed(12)
    model = randomize_norms(nn.Sequential(
        nn.BatchNorm2d(8), Residual(ek.XnorConv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16),
                                    ek.XnorConv2d(16, 8, 3, padding=1))))
    fused = assert_fused_equal(model, torch.randn(2, 8, 7, 7), 0)
    assert type(fused[1]) is Residual


def test_a_submodule_left_in_train_mode_is_refused():
    model = randomize_norms(nn.Sequential(ek.XnorLinear(40, 40), nn.Dropout(),
                                          nn.BatchNorm1d(40), ek.XnorLinear(40, 3)))
    model[1].train()
    with pytest.raises(ValueError, match="eval"):
        ek.optimize_for_inference(model, torch.randn(2, 40))


@pytest.mark.parametrize("scale, fused", [(1e15, 1), (1e30, 0)])
def test_norms_that_overflow(scale, fused):
    # A BatchNorm that scales large values to inf, then one with zero scales (inf * 0 = NaN):
    # the sign is one interval while |y| * scale stays finite for |y| <= 2^64, the range
    # searched; beyond (1e30) it is not, and those modules stay unfused (still exact).
    torch.manual_seed(13)
    model = randomize_norms(nn.Sequential(nn.BatchNorm2d(16), nn.BatchNorm2d(16),
                                          ek.XnorConv2d(16, 4, 1)), 14)
    model[0].weight.data.fill_(scale)
    model[0].running_var.data.fill_(1.0)
    model[1].weight.data[:8] = 0.0
    assert_fused_equal(model, torch.randn(3, 16, 4, 4) * 1e-20, fused)
