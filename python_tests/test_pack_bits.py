import pytest
import torch

from emokernels import ops


def reference_pack(x: torch.Tensor) -> torch.Tensor:
    k = x.shape[-1]
    words = (k + 31) // 32
    bits = (x >= 0).to(torch.int64)
    padded = torch.zeros(*x.shape[:-1], words * 32, dtype=torch.int64)
    padded[..., :k] = bits
    weights = 2 ** torch.arange(32, dtype=torch.int64)
    packed = (padded.view(*x.shape[:-1], words, 32) * weights).sum(-1)
    return torch.where(packed >= 2**31, packed - 2**32, packed).to(torch.int32)


@pytest.mark.parametrize("k", [1, 5, 31, 32, 33, 64, 100, 513, 2304])
def test_matches_reference(isa, k):
    x = torch.randn(7, k)
    assert torch.equal(ops.pack_bits(x), reference_pack(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_dtypes_and_leading_dims(isa, dtype):
    x = torch.randn(2, 3, 4, 77).to(dtype)
    out = ops.pack_bits(x)
    assert out.shape == (2, 3, 4, 3) and out.dtype == torch.int32
    assert torch.equal(out, reference_pack(x.float()))


def test_zero_and_negative_zero_are_positive(isa):
    x = torch.tensor([[0.0, -0.0, -1e-30, 1e-30, float("nan"), float("inf"), float("-inf")]])
    word = int(ops.pack_bits(x)[0, 0])
    assert [(word >> j) & 1 for j in range(7)] == [1, 1, 0, 1, 0, 1, 0]


def test_non_contiguous_input(isa):
    x = torch.randn(40, 70)[:, ::2].T  # [35, 40], strided
    assert not x.is_contiguous()
    assert torch.equal(ops.pack_bits(x), reference_pack(x.contiguous()))


def test_unpack_inverts_pack():
    x = torch.randn(5, 99)
    assert torch.equal(ops.unpack_bits(ops.pack_bits(x), 99), torch.where(x >= 0, 1.0, -1.0))


def test_empty_rows():
    assert ops.pack_bits(torch.randn(0, 40)).shape == (0, 2)


@pytest.mark.parametrize(
    "x, message",
    [
        (torch.tensor(1.0), "at least 1 dimension"),
        (torch.randint(0, 5, (3, 8)), "float32, float64, float16 or bfloat16"),
        (torch.randn(3, 8).to(torch.float8_e4m3fn), "float32, float64, float16 or bfloat16"),
        (torch.randn(3, 0), "last dimension"),
    ],
)
def test_bad_input(x, message):
    with pytest.raises(RuntimeError, match=message):
        ops.pack_bits(x)


def test_opcheck():
    torch.library.opcheck(torch.ops.emokernels.pack_bits.default, (torch.randn(4, 45),))
