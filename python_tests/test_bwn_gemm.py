import pytest
import torch

from emokernels import ops

from .conftest import signs

# Row tiles (M < 16, or N < 32, incl. the N = 1 GEMV tile), table lookup (N >= 32 and
# M >= 16 on AVX-512, M >= 8 on AVX2; rows, k and weight rows past whole tables included) and
# the tables of each row (M < 8 and N >= 8 on AVX2 / N >= 16 on AVX-512; weight rows past a
# pass of 32 / 64, words past a load of 8 / 16, k past a group of 3 / 4).
SHAPES = [(1, 1, 1), (1, 9, 33), (2, 3, 31), (5, 7, 64), (13, 17, 100), (4, 6, 527),
          (29, 45, 1000), (9, 13, 4111), (37, 1, 300), (40, 20, 129), (64, 33, 200),
          (8, 32, 5), (15, 70, 4111), (9, 33, 128), (1, 8, 1), (1, 70, 4111), (3, 32, 256),
          (7, 41, 290), (2, 100, 2049)]


def reference(x: torch.Tensor, w: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    return x.double() @ (alpha.double()[:, None] * signs(w)).T


def tolerance(x: torch.Tensor, alpha: torch.Tensor, eps: float) -> torch.Tensor:
    """Accumulation error bound: eps * sum_k |x| * alpha, per output."""
    return eps * (x.double().abs().sum(1, keepdim=True) * alpha.double()[None, :]) + 1e-6


@pytest.mark.parametrize("m, n, k", SHAPES)
def test_float32_matches_reference(isa, m, n, k):
    x, w, alpha = torch.randn(m, k), torch.randn(n, k), torch.rand(n) + 0.1
    out = ops.bwn_gemm(x, ops.pack_bits(w), alpha, k)
    assert out.dtype == torch.float32 and out.shape == (m, n)
    err = (out.double() - reference(x, w, alpha)).abs()
    assert (err <= tolerance(x, alpha, 1e-6)).all()


@pytest.mark.parametrize("m, n, k", SHAPES)
def test_bfloat16_matches_reference(isa, m, n, k):
    x = torch.randn(m, k).bfloat16()
    w, alpha = torch.randn(n, k), torch.rand(n) + 0.1
    out = ops.bwn_gemm(x, ops.pack_bits(w), alpha, k)
    assert out.dtype == torch.bfloat16
    ref = reference(x.float(), w, alpha)
    # Products are exact, sums are float32; the output rounds to bfloat16 (8 bits).
    err = (out.double() - ref).abs()
    assert (err <= ref.abs() * 2**-8 + tolerance(x.float(), alpha, 1e-6)).all()


@pytest.mark.parametrize("m, n", [(5, 6), (1, 40), (9, 40)])
def test_garbage_bits_past_k_are_ignored(isa, m, n):
    x, w, alpha = torch.randn(m, 45), torch.randn(n, 45), torch.rand(n)
    bits = ops.pack_bits(w)
    bits[:, -1] |= ~((1 << 13) - 1)
    err = (ops.bwn_gemm(x, bits, alpha, 45).double() - reference(x, w, alpha)).abs()
    assert (err <= tolerance(x, alpha, 1e-6)).all()


@pytest.mark.parametrize("m, n", [(37, 50), (3, 200)])
def test_same_result_for_any_thread_count(isa, m, n):
    x, bits, alpha = torch.randn(m, 700), ops.pack_bits(torch.randn(n, 700)), torch.rand(n)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.bwn_gemm(x, bits, alpha, 700)
        torch.set_num_threads(max(2, threads))
        many = ops.bwn_gemm(x, bits, alpha, 700)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, many)


def test_gradients_match_float_reference():
    x = torch.randn(4, 75, requires_grad=True)
    alpha = (torch.rand(6) + 0.5).requires_grad_()
    w = torch.randn(6, 75)
    out = ops.bwn_gemm(x, ops.pack_bits(w), alpha, 75)
    grad = torch.randn_like(out)
    out.backward(grad)
    x_ref = x.detach().clone().requires_grad_()
    alpha_ref = alpha.detach().clone().requires_grad_()
    (x_ref @ (alpha_ref[:, None] * signs(w).float()).T).backward(grad)
    torch.testing.assert_close(x.grad, x_ref.grad)
    torch.testing.assert_close(alpha.grad, alpha_ref.grad)


def _args(m=3, n=4, k=64):
    return torch.randn(m, k), ops.pack_bits(torch.randn(n, k)), torch.rand(n), k


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda a: (a[0].double(), *a[1:]), "float32, float16 or bfloat16"),
        (lambda a: (a[0], a[1].float(), *a[2:]), "must be Int"),
        (lambda a: (a[0], a[1], a[2].int(), a[3]), "alpha must be float32, float64"),
        (lambda a: (a[0][None], *a[1:]), "must be 2-D"),
        (lambda a: (a[0], a[1], a[2][None], a[3]), "must be 1-D"),
        (lambda a: (a[0], a[1], a[2][:3], a[3]), "alpha has 3 entries"),
        (lambda a: (*a[:3], 63), "columns but k"),
        (lambda a: (a[0], a[1][:, :1], *a[2:]), r"ceil\(k/32\)"),
    ],
)
def test_bad_input(mutate, message):
    with pytest.raises(RuntimeError, match=message):
        ops.bwn_gemm(*mutate(_args()))


def test_empty_batch():
    assert ops.bwn_gemm(*_args(m=0)).shape == (0, 4)


def test_opcheck():
    x, bits, alpha, k = _args(5, 7, 70)
    torch.library.opcheck(torch.ops.emokernels.bwn_gemm.default, (x, bits, alpha, k))
    x.requires_grad_()
    alpha.requires_grad_()
    torch.library.opcheck(torch.ops.emokernels.bwn_gemm.default, (x, bits, alpha, k))
