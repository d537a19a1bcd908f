"""hashed_linear / hashed_linear_backward against the xxhash oracle and the dense reference."""

import struct

import pytest
import torch
import xxhash

from emokernels import ops

# (m, k, n, num_buckets): batch 1 and the fused small-batch path (m <= 8), the panel path,
# tails of 8 / 16 columns, one bucket, more buckets than weights.
SHAPES = [(1, 1, 1, 1), (1, 37, 19, 11), (3, 300, 65, 1000), (8, 17, 9, 5), (9, 16, 5, 3),
          (20, 1029, 70, 97), (33, 64, 40, 4000), (2, 2100, 3, 700)]
BLOCKS = [1, 4, 16]
FLOAT = "(Float|torch.float32)"  # as C++ and the fake kernels name it


def reference(x, buckets, n, seed, block, bias=None):
    w = ops.dense_hashed_weight(buckets.double(), n, x.shape[1], seed, block)
    out = x.double() @ w.T
    return out if bias is None else out + bias.double()


def tolerance(x, buckets) -> float:
    return 2e-6 * x.abs().sum(1).max().item() * buckets.abs().max().item() + 1e-6


@pytest.mark.parametrize("seed", [0, 1, 0x9E3779B9, 2**32 - 1])
def test_hash_matches_xxhash(seed):
    g = torch.Generator().manual_seed(seed % 1000)
    i = torch.randint(0, 2**32, (200,), generator=g, dtype=torch.int64)
    j = torch.randint(0, 2**32, (200,), generator=g, dtype=torch.int64)
    i[:3], j[:3] = torch.tensor([0, 2**32 - 1, 1]), torch.tensor([0, 2**32 - 1, 2**31])
    expect = [xxhash.xxh32_intdigest(struct.pack("<II", a, b), seed=seed)
              for a, b in zip(i.tolist(), j.tolist(), strict=True)]
    assert ops.xxh32_pairs(i, j, seed).tolist() == expect


def test_codes_follow_the_design_contract():
    n, k, nb, seed = 7, 45, 13, 5
    index, sign = ops.hashed_codes(n, k, nb, seed)
    for i in range(n):
        for j in range(k):
            h = xxhash.xxh32_intdigest(struct.pack("<II", i, j), seed=seed)
            assert index[i, j] == (h >> 1) % nb and sign[i, j] == (-1.0 if h & 1 else 1.0)
    # Block hashing: one hash per run of 4 columns, consecutive buckets wrapping around.
    index, sign = ops.hashed_codes(n, k, nb, seed, block=4)
    for i in range(n):
        for j in range(k):
            h = xxhash.xxh32_intdigest(struct.pack("<II", i, j // 4), seed=seed)
            assert index[i, j] == ((h >> 1) % nb + j % 4) % nb
            assert sign[i, j] == (-1.0 if h & 1 else 1.0)


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("m, k, n, nb", SHAPES)
def test_forward_matches_reference(isa, m, k, n, nb, block):
    x, buckets, bias = torch.randn(m, k), torch.randn(nb), torch.randn(n)
    out = ops.hashed_linear(x, buckets, n, 7, block, bias)
    assert out.shape == (m, n) and out.dtype == torch.float32
    err = (out.double() - reference(x, buckets, n, 7, block, bias)).abs().max().item()
    assert err <= tolerance(x, buckets)
    no_bias = ops.hashed_linear(x, buckets, n, 7, block)
    assert torch.allclose(no_bias + bias, out, atol=1e-5)


def reference_gradients(x, buckets, grad, n, seed, block):
    xd, bd = (t.detach().double().requires_grad_() for t in (x, buckets))
    return torch.autograd.grad(reference(xd, bd, n, seed, block), (xd, bd), grad.double())


def assert_gradients_close(got, want, x, buckets, grad):
    scale = grad.abs().sum().item() * max(x.abs().max().item(), buckets.abs().max().item())
    for g, w in zip(got, want, strict=True):
        assert g.dtype == torch.float32 and g.shape == w.shape
        assert (g.double() - w).abs().max().item() <= 2e-6 * scale + 1e-6


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("m, k, n, nb", SHAPES)
def test_backward_matches_autograd_through_the_dense_weight(isa, m, k, n, nb, block):
    x, buckets, grad = torch.randn(m, k), torch.randn(nb), torch.randn(m, n)
    got = torch.ops.emokernels.hashed_linear_backward(grad, x, buckets, 3, block, [True, True],
                                                      False)
    assert_gradients_close(got, reference_gradients(x, buckets, grad, n, 3, block), x, buckets,
                           grad)


@pytest.mark.parametrize("m, k, n, nb", [(1, 37, 19, 11), (20, 1029, 70, 97)])
def test_autograd_of_x_buckets_and_bias(m, k, n, nb):
    x = torch.randn(m, k, requires_grad=True)
    buckets = torch.randn(nb, requires_grad=True)
    bias = torch.randn(n, requires_grad=True)
    grad = torch.randn(m, n)
    got = torch.autograd.grad(ops.hashed_linear(x, buckets, n, 3, 4, bias), (x, buckets, bias),
                              grad)
    assert_gradients_close(got[:2], reference_gradients(x, buckets, grad, n, 3, 4), x, buckets,
                           grad)
    assert torch.allclose(got[2], grad.sum(0))


def test_bucket_gradient_does_not_depend_on_the_thread_count():
    x, grad = torch.randn(40, 300), torch.randn(40, 90)
    buckets = torch.randn(50, requires_grad=True)
    threads = torch.get_num_threads()
    results = []
    try:
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            out = ops.hashed_linear(x, buckets, 90)
            results.append(torch.autograd.grad(out, buckets, grad)[0])
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(results[0], r) for r in results[1:])


def test_only_the_requested_gradients_are_computed():
    x, buckets, grad = torch.randn(5, 20), torch.randn(9), torch.randn(5, 6)
    gx, gb = torch.ops.emokernels.hashed_linear_backward(grad, x, buckets, 0, 1, [True, False],
                                                         False)
    assert gx.shape == (5, 20) and gb.numel() == 0
    gx, gb = torch.ops.emokernels.hashed_linear_backward(grad, x, buckets, 0, 1, [False, True],
                                                         False)
    assert gx.numel() == 0 and gb.shape == (9,)


def test_gradcheck_float64_reference_agrees():
    # The op is float32; gradcheck runs on a float64 wrapper that casts, with loose tolerances.
    x = torch.randn(3, 11, dtype=torch.float64, requires_grad=True)
    buckets = torch.randn(5, dtype=torch.float64, requires_grad=True)

    def fn(x, buckets):
        return ops.hashed_linear(x.float(), buckets.float(), 4, 9).double()

    assert torch.autograd.gradcheck(fn, (x, buckets), eps=1e-2, atol=1e-2, rtol=1e-2)


def test_empty_batch_and_zero_rows():
    out = ops.hashed_linear(torch.randn(0, 5), torch.randn(3), 4)
    assert out.shape == (0, 4)
    x = torch.randn(0, 5, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    gx, gb = torch.autograd.grad(ops.hashed_linear(x, b, 4).sum(), (x, b))
    assert gx.shape == (0, 5) and torch.equal(gb, torch.zeros(3))


@pytest.mark.parametrize("args, message", [
    ((torch.randn(2, 3).double(), torch.randn(4), 5, 0, 1, None), f"x must be {FLOAT}"),
    ((torch.randn(2, 3), torch.randn(4).half(), 5, 0, 1, None), f"buckets must be {FLOAT}"),
    ((torch.randn(6), torch.randn(4), 5, 0, 1, None), "x must be 2-D"),
    ((torch.randn(2, 3), torch.randn(4, 1), 5, 0, 1, None), "buckets must be 1-D"),
    ((torch.randn(2, 3), torch.randn(0), 5, 0, 1, None), "between 1 and 2\\^30"),
    ((torch.randn(2, 3), torch.randn(4), 0, 0, 1, None), "out_features must be in"),
    ((torch.randn(2, 3), torch.randn(4), 2**31, 0, 1, None), "out_features must be in"),
    ((torch.randn(2, 0), torch.randn(4), 5, 0, 1, None), "in_features"),
    ((torch.randn(2, 3), torch.randn(4), 5, -1, 1, None), "seed must be in"),
    ((torch.randn(2, 3), torch.randn(4), 5, 2**32, 1, None), "seed must be in"),
    ((torch.randn(2, 3), torch.randn(4), 5, 0, 3, None), "block must be a power of two"),
    ((torch.randn(2, 3), torch.randn(4), 5, 0, 512, None), "block must be a power of two"),
    ((torch.randn(2, 3), torch.randn(4), 5, 0, 1, torch.randn(4)), "bias has 4 entries"),
    ((torch.randn(2, 3), torch.randn(4), 5, 0, 1, torch.randn(5).double()), "bias must be"),
])
def test_bad_input_is_a_clear_error(args, message):
    with pytest.raises(RuntimeError, match=message):
        ops.hashed_linear(*args)
    fake_mode = torch._subclasses.FakeTensorMode()
    with fake_mode, pytest.raises(RuntimeError, match=message):
        ops.hashed_linear(*(fake_mode.from_tensor(a) if isinstance(a, torch.Tensor) else a
                            for a in args))


@pytest.mark.parametrize("args, message", [
    ((torch.randn(2, 4), torch.randn(3, 5), torch.randn(7)), "grad has 2 rows but x has 3"),
    ((torch.randn(2, 4).double(), torch.randn(2, 5), torch.randn(7)), "grad must be"),
    ((torch.randn(2, 4), torch.randn(2, 5), torch.randn(7).double()), "buckets must be"),
])
def test_backward_bad_input_is_a_clear_error(args, message):
    with pytest.raises(RuntimeError, match=message):
        torch.ops.emokernels.hashed_linear_backward(*args, 0, 1, [True, True], False)


def test_opcheck():
    x, buckets, bias = torch.randn(9, 20), torch.randn(30, requires_grad=True), torch.randn(7)
    torch.library.opcheck(torch.ops.emokernels.hashed_linear.default, (x, buckets, 7, 1, 1, bias))
    torch.library.opcheck(torch.ops.emokernels.hashed_linear_backward.default,
                          (torch.randn(9, 7), x, buckets.detach(), 1, 4, [True, True], False))


def test_kernel_path_is_reported(isa):
    path = torch.ops.emokernels.cpu_kernel_path
    expect = {"portable": "portable", "avx2": "avx2"}.get(isa, "avx512f")
    assert path("hashed_linear", "float32", 1, 1, 1) == expect
    assert path("hashed_linear_backward", "float32", 1, 16, 1) == "block-runs"
