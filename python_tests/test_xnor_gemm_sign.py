import pytest
import torch

from emokernels import ops

from .conftest import random_offset, signs, with_arg
from .test_properties import pack_reference

INT_MIN, INT_MAX = -(2**31), 2**31 - 1


def reference(a, b, bounds, offset=None):
    """The packed interval test of the float matrices' sign dots."""
    dots = (signs(a) @ signs(b).T).long()
    if offset is not None:
        dots = dots + offset.long().repeat(a.shape[0] // offset.shape[0], 1)
    lower, upper = bounds.long()
    return pack_reference((lower <= dots) & (dots <= upper))


def random_bounds(n: int, k: int) -> torch.Tensor:
    """Thresholds from above and from below, always, never and two-sided, at random."""
    thresholds = torch.randint(-k // 4 - 1, k // 4 + 2, (2, n))
    kind = torch.arange(n) % 5
    lower = torch.where(kind == 0, thresholds[0], INT_MIN)
    upper = torch.where(kind == 1, thresholds[1], INT_MAX)
    lower = torch.where(kind == 3, 1, torch.where(kind == 4, thresholds.min(0).values, lower))
    upper = torch.where(kind == 3, 0, torch.where(kind == 4, thresholds.max(0).values, upper))
    return torch.stack([lower, upper]).to(torch.int32)


@pytest.mark.parametrize("m, n, k", [(1, 1, 1), (2, 31, 33), (3, 32, 64), (7, 33, 100),
                                     (12, 70, 2304), (5, 257, 96), (21, 77, 500)])
@pytest.mark.parametrize("rows", [None, 1, "m", "indexed"])
def test_matches_reference(isa, m, n, k, rows):
    a, b = torch.randn(m, k), torch.randn(n, k)
    offset, index, full = random_offset(rows, m, n, 9)
    bounds = random_bounds(n, k)
    out = ops.xnor_gemm_sign(ops.pack_bits(a), ops.pack_bits(b), k, bounds, offset, index)
    assert out.shape == (m, ops.words_for_bits(n))
    assert torch.equal(out, reference(a, b, bounds, full))


def test_narrow_column_blocks(isa):
    # Long rows make the CPU's column blocks narrow (a few tiles), so the 200 outputs span
    # several blocks: the words where blocks meet must come out whole. (That no two threads
    # share a word is guaranteed by the blocks' alignment to 32 columns, not by this test.)
    torch.manual_seed(0)
    k, n = 40000, 200
    a, b = torch.randn(17, k), torch.randn(n, k)
    bounds = random_bounds(n, k // 8)
    want = reference(a, b, bounds)
    for _ in range(3):
        assert torch.equal(ops.xnor_gemm_sign(ops.pack_bits(a), ops.pack_bits(b), k, bounds), want)


def test_equals_sign_of_the_float_epilogue():
    # Bounds [T, INT_MAX] are pack_bits(dot - T + 0.5): the op is the sign of a fused layer.
    a, b = ops.pack_bits(torch.randn(6, 77)), ops.pack_bits(torch.randn(40, 77))
    t = torch.randint(-20, 21, (40,), dtype=torch.int32)
    bounds = torch.stack([t, torch.full_like(t, INT_MAX)])
    want = ops.pack_bits(ops.xnor_gemm(a, b, 77).float() - t.float() + 0.5)
    assert torch.equal(ops.xnor_gemm_sign(a, b, 77, bounds), want)


def test_empty():
    a, b = ops.pack_bits(torch.randn(0, 40)), ops.pack_bits(torch.randn(5, 40))
    bounds = torch.zeros(2, 5, dtype=torch.int32)
    assert ops.xnor_gemm_sign(a, b, 40, bounds).shape == (0, 1)
    assert ops.xnor_gemm_sign(b, a, 40, bounds[:, :0]).shape == (5, 0)


def _args():
    return [ops.pack_bits(torch.randn(6, 64)), ops.pack_bits(torch.randn(4, 64)), 64,
            random_bounds(4, 64), torch.zeros(3, 4, dtype=torch.int32)]


@pytest.mark.parametrize("index, value, message", [
    (3, torch.zeros(2, 5, dtype=torch.int32), r"bounds must be \[2, 4\]"),
    (3, torch.zeros(1, 4, dtype=torch.int32), r"bounds must be \[2, 4\]"),
    (3, torch.zeros(2, 4), "must be Int"),
    (3, torch.zeros(8, dtype=torch.int32), "must be 2-D"),
    (4, torch.zeros(4, 4, dtype=torch.int32), "P dividing M"),
    (4, torch.zeros(3, 4), "must be Int"),
    (2, 65, r"ceil\(k/32\)"),
])
def test_bad_input(index, value, message):
    with pytest.raises(RuntimeError, match=message):
        ops.xnor_gemm_sign(*with_arg(_args(), index, value))


def test_opcheck():
    torch.library.opcheck(torch.ops.emokernels.xnor_gemm_sign.default, tuple(_args()))


_TABLE = torch.zeros(3, 4, dtype=torch.int32)


@pytest.mark.parametrize("offset, index, message", [
    (_TABLE, torch.tensor([0, 3], dtype=torch.int32), r"entries must be in \[0, 3\)"),
    (_TABLE, torch.tensor([-1, 0], dtype=torch.int32), r"entries must be in \[0, 3\)"),
    (None, torch.tensor([0, 1], dtype=torch.int32), "offset_index needs an offset"),
    (_TABLE, torch.tensor([0, 1, 2, 0], dtype=torch.int32), "P dividing M"),
    (_TABLE, torch.tensor([0, 1]), "must be Int"),
    (_TABLE, torch.zeros(2, 1, dtype=torch.int32), "offset_index"),
    (torch.zeros(3, 5, dtype=torch.int32), torch.tensor([0, 1], dtype=torch.int32), "offset"),
])
@pytest.mark.parametrize("op", ["sign", "scaled"])
def test_bad_offset_index(op, offset, index, message):
    a, b = ops.pack_bits(torch.randn(6, 64)), ops.pack_bits(torch.randn(4, 64))
    with pytest.raises(RuntimeError, match=message):
        if op == "sign":
            ops.xnor_gemm_sign(a, b, 64, random_bounds(4, 64), offset, index)
        else:
            ops.xnor_gemm_scaled(a, b, 64, torch.rand(4), None, offset, index)


def test_opcheck_with_offset_index():
    a, b = ops.pack_bits(torch.randn(6, 64)), ops.pack_bits(torch.randn(4, 64))
    table = torch.randint(-5, 5, (3, 4), dtype=torch.int32)
    index = torch.tensor([2, 0, 1], dtype=torch.int32)
    torch.library.opcheck(torch.ops.emokernels.xnor_gemm_sign.default,
                          (a, b, 64, random_bounds(4, 64), table, index))
    torch.library.opcheck(torch.ops.emokernels.xnor_gemm_scaled.default,
                          (a, b, 64, torch.rand(4), None, table, index))
