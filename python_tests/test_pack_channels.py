import pytest
import torch

from emokernels import ops
from emokernels.nn.bit_patches import pack_signs_nhwc

from .conftest import with_arg
from .test_properties import pack_reference

INF = float("inf")


def reference(x, lower, upper):
    inside = (lower.view(1, -1, 1, 1) <= x) & (x <= upper.view(1, -1, 1, 1))
    b, c, h, w = x.shape
    return pack_reference(inside.permute(0, 2, 3, 1).reshape(-1, c)).view(b, h, w, -1)


def random_bounds(c: int, gen: torch.Generator):
    """Intervals from above, from below, everything, nothing and two-sided."""
    ends = torch.randn(2, c, generator=gen).sort(0).values
    kind = torch.arange(c) % 5
    lower = torch.where(kind == 1, -INF, torch.where(kind == 3, INF, ends[0]))
    upper = torch.where(kind == 0, INF, torch.where(kind == 3, -INF, ends[1]))
    lower = torch.where(kind == 2, -INF, lower)
    upper = torch.where(kind == 2, INF, upper)
    return lower, upper


def special_values(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flat = x.view(-1)
    picks = torch.randint(0, flat.numel(), (max(1, flat.numel() // 20),), generator=gen)
    flat[picks[0::4]] = float("nan")
    flat[picks[1::4]] = INF
    flat[picks[2::4]] = -INF
    flat[picks[3::4]] = 0.0
    return x


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 31, 3, 5), (1, 32, 8, 8), (2, 33, 7, 9),
                                   (1, 70, 30, 40), (3, 96, 5, 3)])
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
def test_matches_reference(isa, shape, layout):
    gen = torch.Generator().manual_seed(sum(shape))
    x = special_values(torch.randn(shape, generator=gen), gen)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":
        wide = torch.full((*shape[:3], 2 * shape[3]), float("nan"))
        wide[..., ::2] = x
        x = wide[..., ::2]
    lower, upper = random_bounds(shape[1], gen)
    assert torch.equal(ops.pack_channels(x, lower, upper), reference(x, lower, upper))


def test_is_pack_bits_of_the_sign():
    x = torch.randn(2, 45, 6, 7)
    x[:, :, 0, 0] = 0.0  # sign(0) = +1
    got = ops.pack_channels(x, torch.zeros(45), torch.full((45,), INF))
    assert torch.equal(got, ops.pack_bits(x.permute(0, 2, 3, 1)))


def test_empty():
    out = ops.pack_channels(torch.randn(0, 40, 3, 3), torch.zeros(40), torch.ones(40))
    assert out.shape == (0, 3, 3, 2)


def _args():
    return [torch.randn(2, 40, 3, 3), torch.zeros(40), torch.ones(40)]


@pytest.mark.parametrize("index, value, message", [
    (0, torch.randn(2, 40, 3), "must be 4-D"),
    (0, torch.randn(2, 40, 3, 3).double(), "must be Float"),
    (0, torch.randn(2, 0, 3, 3), "C >= 1"),
    (1, torch.zeros(41), "lower has 41 entries"),
    (2, torch.zeros(40, dtype=torch.int32), "must be Float"),
    (2, torch.zeros(1, 40), "must be 1-D"),
])
def test_bad_input(index, value, message):
    with pytest.raises(RuntimeError, match=message):
        ops.pack_channels(*with_arg(_args(), index, value))


def test_opcheck():
    torch.library.opcheck(torch.ops.emokernels.pack_channels.default, tuple(_args()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_layers_pack_signs_as_pack_bits(dtype):
    gen = torch.Generator().manual_seed(1)
    x = special_values(torch.randn(2, 45, 7, 9, generator=gen), gen).to(dtype)
    x.view(-1)[::13] = -0.0
    for layout in (x, x.contiguous(memory_format=torch.channels_last), x[:, :, ::2]):
        assert torch.equal(pack_signs_nhwc(layout), ops.pack_bits(layout.permute(0, 2, 3, 1)))
