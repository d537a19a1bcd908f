import pytest
import torch

from emokernels import ops

from .conftest import random_offset, signs, with_arg


def reference(a, b, scale, bias=None, offset=None):
    dots = (signs(a) @ signs(b).T).to(torch.int32)
    if offset is not None:
        dots = dots + offset.repeat(a.shape[0] // offset.shape[0], 1)
    out = dots.float() * scale
    return out if bias is None else out + bias


@pytest.mark.parametrize("m, n, k", [(1, 1, 1), (6, 9, 33), (12, 17, 100), (30, 45, 2304),
                                     (17, 6, 300), (17, 501, 9000)])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("rows", [None, 1, "m", "indexed"])
def test_matches_reference(isa, m, n, k, with_bias, rows):
    a, b = torch.randn(m, k), torch.randn(n, k)
    scale, bias = torch.rand(n) + 0.1, torch.randn(n) if with_bias else None
    offset, index, full = random_offset(rows, m, n, 50)
    out = ops.xnor_gemm_scaled(ops.pack_bits(a), ops.pack_bits(b), k, scale, bias, offset, index)
    # Multiply then add, as separate float32 roundings: bit-identical to the reference.
    assert torch.equal(out, reference(a, b, scale, bias, full))


def test_gradients():
    a, b = ops.pack_bits(torch.randn(5, 40)), ops.pack_bits(torch.randn(7, 40))
    scale = (torch.rand(7) + 0.5).requires_grad_()
    bias = torch.randn(7, requires_grad=True)
    out = ops.xnor_gemm_scaled(a, b, 40, scale, bias)
    grad = torch.randn_like(out)
    out.backward(grad)
    dots = ops.xnor_gemm(a, b, 40).float()
    torch.testing.assert_close(scale.grad, (grad * dots).sum(0))
    torch.testing.assert_close(bias.grad, grad.sum(0))


def _args():
    return [ops.pack_bits(torch.randn(6, 64)), ops.pack_bits(torch.randn(4, 64)), 64,
            torch.rand(4), torch.rand(4), torch.zeros(3, 4, dtype=torch.int32)]


@pytest.mark.parametrize("index, value, message", [
    (3, torch.rand(5), "scale has 5 entries"),
    (3, torch.rand(4).double(), "must be Float"),
    (4, torch.rand(3), "bias has 3 entries"),
    (5, torch.zeros(4, 4, dtype=torch.int32), "P dividing M"),
    (5, torch.zeros(3, 4), "must be Int"),
    (2, 65, r"ceil\(k/32\)"),
])
def test_bad_input(index, value, message):
    with pytest.raises(RuntimeError, match=message):
        ops.xnor_gemm_scaled(*with_arg(_args(), index, value))


def test_opcheck():
    torch.library.opcheck(torch.ops.emokernels.xnor_gemm_scaled.default, tuple(_args()))
