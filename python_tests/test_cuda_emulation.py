"""The CPU emulation of CUDA (python_tests/cuda_emulation) on its own test kernels: each kernel
against a slow Python reference, and the misuses it must catch (missing and divergent barriers,
deadlocked shuffles) as RuntimeErrors. The package's CUDA kernels are tested on top of it."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import torch

from . import cuda_emulation

# Every 4-byte word of shared memory at the start of a block (kSharedPoison), as int32.
POISON = 0xFFA5A5A5 - 2**32


@pytest.fixture(scope="module")
def ops():
    return cuda_emulation.load_test_ops()


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_words(*shape: int, g: torch.Generator) -> torch.Tensor:
    return torch.randint(-(2**31), 2**31, shape, dtype=torch.int64, generator=g).to(torch.int32)


def popcount(x: torch.Tensor) -> torch.Tensor:
    """Bits set per 32-bit word (int32 in, int64 out)."""
    u = x.to(torch.int64) & 0xFFFFFFFF
    return ((u[..., None] >> torch.arange(32)) & 1).sum(-1)


def unpack(words: torch.Tensor) -> torch.Tensor:
    """[..., W] int32 words -> [..., 32 W] bits, bit j of word w = element 32 w + j."""
    u = words.to(torch.int64) & 0xFFFFFFFF
    return ((u[..., None] >> torch.arange(32)) & 1).flatten(-2)


@pytest.mark.parametrize("m,n,w", [(1, 1, 1), (16, 16, 4), (37, 45, 9), (17, 33, 5), (5, 70, 13)])
def test_bit_gemm_xor(ops, m, n, w):
    g = gen(m * 1000 + n * 10 + w)
    a, b = random_words(m, w, g=g), random_words(n, w, g=g)
    expected = popcount(a[:, None, :] ^ b[None, :, :]).sum(-1).to(torch.int32)
    assert torch.equal(ops.bit_gemm_xor(a, b), expected)


@pytest.mark.parametrize("rows,cols,threads", [(3, 1, 32), (4, 97, 96), (2, 1000, 256),
                                               (1, 31, 1024)])
def test_row_sum(ops, rows, cols, threads):
    g = gen(cols)
    x = torch.randn(rows, cols, generator=g)
    torch.testing.assert_close(ops.row_sum(x, threads), x.double().sum(1).float(),
                               rtol=1e-5, atol=1e-4)
    # int64 through the 64-bit shuffles, exactly; values past 32 bits.
    xi = torch.randint(-(2**40), 2**40, (rows, cols), dtype=torch.int64, generator=g)
    assert torch.equal(ops.row_sum(xi, threads), xi.sum(1))


def shuffle_reference(values: list[int], args: list[int], mode: int, width: int) -> list[int]:
    """The CUDA Programming Guide's warp shuffle semantics, lane by lane."""
    out = []
    for i, a in enumerate(args):
        base, lane = i - i % 32, i % 32
        if mode == 0:  # source lane taken modulo width, within the lane's segment
            src = lane - lane % width + a % width
        elif mode == 1:  # up: lanes without a source below in the segment keep their value
            src = lane - a if lane % width >= a else lane
        elif mode == 2:  # down: lanes without a source above in the segment keep their value
            src = lane + a if lane % width + a < width else lane
        else:  # xor: a later segment is out of reach (own value), an earlier one is not
            src = lane ^ a if (lane ^ a) // width <= lane // width else lane
        out.append(values[base + src])
    return out


@pytest.mark.parametrize("mode", [0, 1, 2, 3], ids=["idx", "up", "down", "xor"])
@pytest.mark.parametrize("width", [1, 2, 4, 8, 16, 32])
def test_shuffle_semantics(ops, mode, width):
    g = gen(mode * 100 + width)
    n, threads = 128, 64
    values = torch.randint(-1000, 1000, (n,), dtype=torch.int32, generator=g)
    high = 64 if mode == 0 else 32  # source lanes past 31 wrap modulo width
    for args in (torch.randint(0, high, (n,), dtype=torch.int32, generator=g),
                 torch.full((n,), 1, dtype=torch.int32), torch.full((n,), width // 2,
                                                                    dtype=torch.int32)):
        got = ops.shuffle_probe(values, args, mode, width, threads)
        assert got.tolist() == shuffle_reference(values.tolist(), args.tolist(), mode, width)


@pytest.mark.parametrize("k", [1, 31, 32, 33, 200, 1000])
@pytest.mark.parametrize("blocks", [1, 3])
def test_ballot_pack(ops, k, blocks):
    g = gen(k)
    x = torch.randn(k, generator=g)
    x[::7] = 0.0
    x[1::11] = -0.0  # -0.0 >= 0: bit set
    x[2::13] = float("nan")  # NaN >= 0 is false: bit clear
    if k == 200:
        x[:32] = 1.0  # one word of all ones: all() true
    words, stats = ops.ballot_pack(x, blocks)
    nwords = (k + 31) // 32
    bits = torch.zeros(32 * nwords, dtype=torch.int64)
    bits[:k] = (x >= 0).to(torch.int64)
    bits = bits.view(nwords, 32)
    expected = (bits << torch.arange(32)).sum(1)
    assert torch.equal(words.to(torch.int64) & 0xFFFFFFFF, expected)
    count = bits.sum(1)
    expected_stats = count | (count > 0).to(torch.int64) << 8 | (count == 32).to(torch.int64) << 9
    assert torch.equal(stats.to(torch.int64), expected_stats)


def neighbour_reference(blocks: int, threads: int) -> torch.Tensor:
    i = torch.arange(threads, dtype=torch.int32)
    return torch.where(i > 0, 3 * (i - 1) + 1, 1).repeat(blocks)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_missing_barrier_is_caught_by_the_random_order(ops, monkeypatch, seed):
    monkeypatch.setenv(cuda_emulation.SEED_ENV, str(seed))
    expected = neighbour_reference(2, 200)
    assert torch.equal(ops.neighbour(2, 200, True), expected)
    wrong = ops.neighbour(2, 200, False)
    # A thread run before its left neighbour reads the shared-memory poison.
    assert not torch.equal(wrong, expected)
    assert set(wrong[wrong != expected].tolist()) == {POISON}


def test_thread_order_is_seeded(ops, monkeypatch):
    runs = {}
    for seed in (5, 6, 5):
        monkeypatch.setenv(cuda_emulation.SEED_ENV, str(seed))
        runs.setdefault(seed, []).append(ops.neighbour(1, 128, False))
    assert torch.equal(runs[5][0], runs[5][1])  # same seed, same order
    assert not torch.equal(runs[5][0], runs[6][0])
    monkeypatch.setenv(cuda_emulation.SEED_ENV, "not-a-number")
    with pytest.raises(RuntimeError, match="EMOKERNELS_EMU_SEED must be an unsigned integer"):
        ops.neighbour(1, 32, True)


def test_divergent_barrier_raises(ops):
    with pytest.raises(RuntimeError, match=r"divergent __syncthreads") as e:
        ops.barrier_misuse(0, 64)
    msg = str(e.value)
    assert "barrier_misuse_kernel" in msg and "block (0,0,0)" in msg
    assert "threads 1, 3, 5" in msg and "threads 0, 2, 4" in msg
    assert msg.count("test_kernels.cuh:") == 2  # the two call sites


def test_exit_before_barrier_raises(ops):
    with pytest.raises(RuntimeError, match=r"__syncthreads at test_kernels\.cuh:\d+ reached by "
                                           r"threads 0-15 while threads 16-63 exited"):
        ops.barrier_misuse(1, 64)


@pytest.mark.parametrize("threads", [32, 100])
def test_syncthreads_reductions(ops, threads):
    out = ops.barrier_misuse(2, threads).view(threads, 3)
    count = len(range(0, threads, 3))
    assert out.tolist() == [[count, 1, 1]] * threads


@pytest.mark.parametrize("mode,pattern", [
    (0, r"deadlocked __shfl_sync: lanes 0-4, 6-31 of warp 0 wait in __shfl_sync\(mask "
        r"0xffffffff\) at test_kernels\.cuh:\d+, but lane 5 exited"),
    (1, r"deadlocked __shfl_xor_sync: lanes 0-15 of warp 0 .* lanes 16-31 wait at "
        r"__syncthreads test_kernels\.cuh:\d+"),
    (2, r"thread \d+: __shfl_sync at test_kernels\.cuh:\d+: mask 0x00000001 leaves out the "
        r"calling lane"),
    (3, r"__shfl_sync at test_kernels\.cuh:\d+: lane \d+ of warp \d+ reads lane \d+, outside the "
        r"mask"),
])
def test_deadlocked_or_misused_shuffle_raises(ops, mode, pattern):
    with pytest.raises(RuntimeError, match=pattern) as e:
        ops.warp_misuse(mode, 64)
    assert "warp_misuse_kernel" in str(e.value)


def test_half_warp_masks_work(ops):
    out = ops.warp_misuse(4, 64)
    assert out.tolist() == [i ^ 1 for i in range(64)]


def test_errors_leave_the_emulation_usable(ops):
    with pytest.raises(RuntimeError):
        ops.warp_misuse(0, 64)
    assert torch.equal(ops.neighbour(3, 64, True), neighbour_reference(3, 64))


def mma_reference(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """D = C + popc(A AND B) over k = 256: a [T, 16, 8] words, b [T, 8, 8] (column n's words)."""
    abits, bbits = unpack(a), unpack(b)  # [T, 16, 256], [T, 8, 256]
    return (c.to(torch.int64) + (abits[:, :, None, :] & bbits[:, None, :, :]).sum(-1)).to(
        torch.int32)


@pytest.mark.parametrize("tiles,warps", [(1, 1), (5, 2), (7, 4)])
def test_mma_b1_m16n8k256(ops, tiles, warps):
    g = gen(tiles)
    a, b = random_words(tiles, 16, 8, g=g), random_words(tiles, 8, 8, g=g)
    c = torch.randint(-1000, 1000, (tiles, 16, 8), dtype=torch.int32, generator=g)
    assert torch.equal(ops.mma_b1_tile(a, b, c, warps), mma_reference(a, b, c))


def test_mma_b1_single_bits(ops):
    # Tile i: one bit in A at (row m, k) and in B at (k, column n), for every row m and every
    # 32-bit word of k (each A and B register of each lane): D is 1 exactly at (m, n). Catches
    # any transposed, swapped or shifted fragment.
    cases = [(m, (m + w) % 8, 32 * w + (5 * m + 3 * w) % 32) for m in range(16) for w in range(8)]
    a = torch.zeros(len(cases), 16, 8, dtype=torch.int32)
    b = torch.zeros(len(cases), 8, 8, dtype=torch.int32)
    expected = torch.zeros(len(cases), 16, 8, dtype=torch.int32)
    for i, (m, n, k) in enumerate(cases):
        bit = torch.tensor(1 << (k % 32), dtype=torch.int64).to(torch.int32)  # bit 31: negative
        a[i, m, k // 32] = bit
        b[i, n, k // 32] = bit
        expected[i, m, n] = 1
    assert torch.equal(ops.mma_b1_tile(a, b, torch.zeros_like(expected), 4), expected)


def test_shared_memory_is_poisoned_per_block(ops):
    out = ops.shared_poison(3, 64)
    assert out[:64].tolist() == list(range(64))
    assert (out[64:] == POISON).all()
    assert torch.isnan(out[64:].view(torch.float32)).all()  # the poison is a NaN as float


@pytest.mark.parametrize("n,bins,blocks,threads", [(1, 1, 1, 32), (1001, 17, 3, 96),
                                                   (5000, 64, 2, 256)])
def test_histogram_atomics(ops, n, bins, blocks, threads):
    x = torch.randint(0, bins, (n,), dtype=torch.int32, generator=gen(n))
    expected = torch.bincount(x.long(), minlength=bins).to(torch.int32)
    assert torch.equal(ops.histogram(x, bins, blocks, threads), expected)


@pytest.mark.parametrize("grid,block", [((2, 3, 1), (4, 2, 3)), ((1, 1, 2), (33, 1, 1)),
                                        ((3, 1, 1), (1, 1, 1))])
def test_coordinates(ops, grid, block):
    out = ops.coords(list(grid), list(block)).view(-1, 8).tolist()
    expected = []
    for bz in range(grid[2]):
        for by in range(grid[1]):
            for bx in range(grid[0]):
                for tz in range(block[2]):
                    for ty in range(block[1]):
                        for tx in range(block[0]):
                            expected.append([tx, ty, tz, bx, by, bz, block[0] * block[1] * block[2],
                                             grid[0] * grid[1] * grid[2]])
    assert out == expected


@pytest.mark.parametrize("what,arg,pattern", [
    ("oversized_shared", 0, r"EK_SHARED big: .* over CUDA's 48 KiB"),
    ("throw", 7, r"thread 7: bad input .*throwing_kernel"),
    ("block_too_large", 1025, r"invalid block shape.*block \(1025,1,1\)"),
    ("outside_kernel", 0, r"threadIdx used outside a kernel"),
])
def test_emulation_errors(ops, what, arg, pattern):
    with pytest.raises(RuntimeError, match=pattern):
        ops.misuse(what, arg)


def test_many_context_switches_are_fast(ops):
    # 4 blocks x 256 threads x 100 rounds of 2 barriers: ~200k fiber switches.
    out = ops.many_barriers(4, 256, 100)
    i = torch.arange(256)
    expected = (100 * ((i + 1) % 256) + torch.arange(100).sum()).to(torch.int32).repeat(4)
    assert torch.equal(out, expected)


def nvcc() -> str | None:
    cuda_home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    path = os.path.join(cuda_home, "bin", "nvcc")
    return path if os.path.exists(path) else shutil.which("nvcc")


@pytest.mark.skipif(nvcc() is None, reason="no nvcc")
def test_test_kernels_compile_with_nvcc(tmp_path):
    # What the emulation runs must stay valid CUDA (the b1 mma as inline PTX for sm_80).
    src = os.path.join(cuda_emulation.HARNESS, "nvcc_check.cu")
    result = subprocess.run([nvcc(), "-std=c++17", "-arch=sm_80", f"-I{cuda_emulation.CSRC}", "-c",
                             "-o", str(tmp_path / "check.o"), src], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
