import pytest
import torch

from emokernels import ops

from .conftest import signs

# 16+ rows and columns take AVX2's nibble-split rows and panels of B: row tails, partial and
# empty panel groups, one chunk, passes of byte sums over 31 64-bit words (exactly one at k =
# 1984, one and a word at 1985, two at 3968, five at 9000, an odd count of 32-bit words at
# 2080), several column blocks (80 + 50 columns and 4 x 112 + 53 at k = 9000); fewer columns
# or rows past 8192 words take the packed rows. On AVX-512, 16+ rows and 32+ columns take the
# panels of 6 x 32 tiles: row tails, column tails inside a tile's vectors and past them, an odd
# count of 32-bit words (1000, 2080, 9000 bits), chunk tails, rows at the panels' limit of 1024
# 64-bit words (65536 bits) and just past it (the packed rows).
SHAPES = [(1, 1, 1), (1, 9, 33), (2, 3, 31), (5, 7, 64), (13, 17, 100), (3, 8, 512), (4, 8, 527),
          (29, 45, 1000), (64, 40, 2304), (7, 70, 4111), (16, 3, 17), (17, 21, 256),
          (17, 33, 1984), (16, 16, 1985), (18, 40, 3968), (21, 48, 2080),
          (35, 130, 9000), (18, 501, 9000), (16, 17, 262200),
          (17, 33, 65536), (16, 32, 65568)]


def reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (signs(a) @ signs(b).T).to(torch.int32)


@pytest.mark.parametrize("m, n, k", SHAPES)
def test_matches_reference(isa, m, n, k):
    a, b = torch.randn(m, k), torch.randn(n, k)
    out = ops.xnor_gemm(ops.pack_bits(a), ops.pack_bits(b), k)
    assert out.dtype == torch.int32
    assert torch.equal(out, reference(a, b))


# Tails of every length: 1..8 words past the last whole 8-word chunk, 1..16 past 16 words.
@pytest.mark.parametrize("k", [1, 17, 40, 95, 150, 180, 200, 543, 1000, 3601])
@pytest.mark.parametrize("m", [1, 2, 6, 17])
def test_bits_past_k_are_ignored(isa, m, k):
    a, b = torch.randn(m, k), torch.randn(37, k)
    a_bits, b_bits = ops.pack_bits(a), ops.pack_bits(b)
    if k % 32:
        garbage = ~((1 << (k % 32)) - 1)  # every bit past k in the last word set
        a_bits[:, -1] |= garbage
        b_bits[::2, -1] |= garbage
    assert torch.equal(ops.xnor_gemm(a_bits, b_bits, k), reference(a, b))


@pytest.mark.parametrize("k", [8 * 32 * 31 + 32, 3 * 8 * 32 * 31 + 100])
@pytest.mark.parametrize("m", [5, 19])
def test_long_rows_of_nearly_opposite_signs(isa, k, m):
    # Rows that differ in almost every bit: counts summed in narrow (byte) accumulators over
    # many chunks would wrap; the kernels must widen them in time.
    a = torch.randn(m, k)
    b = torch.cat([-a, a[:1]])
    b[1:, ::97] = torch.randn(m, len(range(0, k, 97)))  # row 0 stays exactly opposite
    assert torch.equal(ops.xnor_gemm(ops.pack_bits(a), ops.pack_bits(b), k), reference(a, b))


@pytest.mark.parametrize("m, n, k", [(67, 83, 900), (18, 501, 9000)])
def test_same_result_for_any_thread_count(isa, m, n, k):
    # (18, 501, 9000): 9 strips in each of five column blocks; 2 and 4 threads split them
    # inside blocks, so a thread's share spans several and rebuilds its panels.
    a, b = ops.pack_bits(torch.randn(m, k)), ops.pack_bits(torch.randn(n, k))
    threads = torch.get_num_threads()
    try:
        results = []
        for count in (1, 2, 4):
            torch.set_num_threads(count)
            results.append(ops.xnor_gemm(a, b, k))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(results[0], r) for r in results[1:])


def test_non_contiguous_operands():
    a = ops.pack_bits(torch.randn(9, 200))
    b = ops.pack_bits(torch.randn(12, 400))[:, ::2]
    assert not b.is_contiguous()
    assert torch.equal(ops.xnor_gemm(a, b, 200), ops.xnor_gemm(a, b.contiguous(), 200))


def test_empty_batch():
    out = ops.xnor_gemm(torch.zeros(0, 3, dtype=torch.int32), ops.pack_bits(torch.randn(5, 70)), 70)
    assert out.shape == (0, 5)


def _bits(rows, words):
    return torch.randint(-(2**31), 2**31 - 1, (rows, words), dtype=torch.int32)


@pytest.mark.parametrize(
    "a, b, k, message",
    [
        (_bits(3, 2).float(), _bits(4, 2), 64, "must be Int"),
        (_bits(3, 2), _bits(4, 2).long(), 64, "must be Int"),
        (_bits(3, 2)[None], _bits(4, 2), 64, "must be 2-D"),
        (_bits(3, 2), _bits(4, 3), 64, "same number of words"),
        (_bits(3, 2), _bits(4, 2), 65, r"ceil\(k/32\)"),
        (_bits(3, 2), _bits(4, 2), 32, r"ceil\(k/32\)"),
        (_bits(3, 2), _bits(4, 2), 0, r"k must be in \[1, 2\^31 - 1\]"),
        (_bits(3, 2), _bits(4, 2), -5, r"k must be in \[1, 2\^31 - 1\]"),
    ],
)
def test_bad_input(a, b, k, message):
    with pytest.raises(RuntimeError, match=message):
        ops.xnor_gemm(a, b, k)


def test_device_mismatch():
    with pytest.raises(RuntimeError):
        ops.xnor_gemm(_bits(3, 2), _bits(4, 2).to("meta"), 64)


def test_opcheck():
    args = (ops.pack_bits(torch.randn(5, 70)), ops.pack_bits(torch.randn(6, 70)), 70)
    torch.library.opcheck(torch.ops.emokernels.xnor_gemm.default, args)
