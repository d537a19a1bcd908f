"""The CuPy path (CUDA kernels compiled at run time by NVRTC) on a GPU against the CPU ops.
Run directly, so it is tested where the extension was built with CUDA too; skipped without a
GPU or CuPy (the compile and the argument layouts are checked without a GPU in
test_nvrtc_compile.py)."""

import importlib.util

import pytest
import torch

from emokernels import cupy_backend as rtc
from emokernels import ops

from .test_pack_channels import random_bounds as channel_bounds
from .test_pack_channels import special_values
from .test_xnor_gemm_sign import random_bounds

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(
    not (torch.cuda.is_available() and importlib.util.find_spec("cupy")),
    reason="needs a CUDA device and CuPy")]

SHAPES = [(1, 1, 1), (3, 9, 33), (17, 31, 64), (64, 65, 1000), (200, 130, 4111), (300, 260, 4088)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_pack_bits(dtype):
    x = torch.randn(5, 3, 70).to(dtype)
    assert torch.equal(rtc.pack_bits(x.cuda()).cpu(), ops.pack_bits(x))


def test_pack_channels():
    gen = torch.Generator().manual_seed(0)
    x = special_values(torch.randn(3, 70, 9, 30, generator=gen), gen)
    lower, upper = channel_bounds(70, gen)
    got = rtc.pack_channels(x.cuda(), lower.cuda(), upper.cuda())
    assert torch.equal(got.cpu(), ops.pack_channels(x, lower, upper))


@pytest.mark.parametrize("path", ["cores", "tensor-cores"])
@pytest.mark.parametrize("m, n, k", SHAPES)
def test_xnor_gemm_scaled_and_sign(monkeypatch, path, m, n, k):
    if path == "tensor-cores" and torch.cuda.get_device_capability()[0] < 8:
        pytest.skip("1-bit tensor cores need sm_80")
    monkeypatch.setenv("EMOKERNELS_CUDA_XNOR", path)
    a, b = ops.pack_bits(torch.randn(m, k)), ops.pack_bits(torch.randn(n, k))
    assert torch.equal(rtc.xnor_gemm(a.cuda(), b.cuda(), k).cpu(), ops.xnor_gemm(a, b, k))
    scale, bias = torch.randn(n), torch.randn(n)
    offset = torch.randint(-5, 5, (1, n), dtype=torch.int32)
    got = rtc.xnor_gemm_scaled(a.cuda(), b.cuda(), k, scale.cuda(), bias.cuda(), offset.cuda())
    assert torch.equal(got.cpu(), ops.xnor_gemm_scaled(a, b, k, scale, bias, offset))
    bounds = random_bounds(n, k)
    got = rtc.xnor_gemm_sign(a.cuda(), b.cuda(), k, bounds.cuda(), offset.cuda())
    assert torch.equal(got.cpu(), ops.xnor_gemm_sign(a, b, k, bounds, offset))


def test_xnor_gemm_rows_not_16_byte_aligned():
    """The tensor-core kernel's 4-byte copies for rows that start off 16-byte boundaries."""
    if torch.cuda.get_device_capability()[0] < 8:
        pytest.skip("1-bit tensor cores need sm_80")
    a, b = ops.pack_bits(torch.randn(70, 2040)), ops.pack_bits(torch.randn(40, 2040))
    shifted = torch.empty(a.numel() + 1, dtype=torch.int32, device="cuda")[1:].view(a.shape)
    shifted.copy_(a)
    assert torch.equal(rtc.xnor_gemm(shifted, b.cuda(), 2040).cpu(), ops.xnor_gemm(a, b, 2040))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("m, n, k", SHAPES)
def test_bwn_gemm_and_conv2d(m, n, k, dtype):
    x, w, alpha = torch.randn(m, k).to(dtype), torch.randn(n, k), torch.rand(n) + 0.1
    bits = ops.pack_bits(w)
    want = ops.bwn_gemm(x.float(), bits, alpha, k)
    got = rtc.bwn_gemm(x.cuda(), bits.cuda(), alpha.cuda(), k).float().cpu()
    assert torch.allclose(got, want, rtol=1e-2, atol=1e-2 * k ** 0.5)
    image, cw = torch.randn(2, 9, 8, 5).to(dtype), ops.pack_bits(torch.randn(7, 3 * 3 * 5))
    want = ops.bwn_conv2d(image.float(), cw, alpha[:1].expand(7).contiguous(), (3, 3),
                          (2, 1), (1, 2))
    got = rtc.bwn_conv2d(image.cuda(), cw.cuda(), alpha[:1].expand(7).contiguous().cuda(),
                         (3, 3), (2, 1), (1, 2)).float().cpu()
    assert torch.allclose(got, want, rtol=1e-2, atol=1e-1)


@pytest.mark.parametrize("block", [1, 16])
@pytest.mark.parametrize("m, n, k", SHAPES)
def test_hashed_linear(m, n, k, block):
    nb = max(1, n * k // 8)
    x, buckets, bias, grad = torch.randn(m, k), torch.randn(nb), torch.randn(n), torch.randn(m, n)
    got = rtc.hashed_linear(x.cuda(), buckets.cuda(), n, 3, block, bias.cuda()).cpu()
    # two float32 sums of k products in different orders: rounding grows like sqrt(k)
    want = ops.hashed_linear(x, buckets, n, 3, block, bias)
    assert torch.allclose(got, want, atol=2e-5 * k**0.5, rtol=1e-5)
    want = torch.ops.emokernels.hashed_linear_backward(grad, x, buckets, 3, block, [True, True],
                                                       False)
    for deterministic in (False, True):
        got = rtc.hashed_linear_backward(grad.cuda(), x.cuda(), buckets.cuda(), 3, block,
                                         [True, True], deterministic)
        for g, w in zip(got, want, strict=True):
            assert torch.allclose(g.cpu(), w, atol=1e-3, rtol=1e-4)


def test_bad_input_is_the_ops_error():
    with pytest.raises(RuntimeError, match="k must be"):
        rtc.xnor_gemm(torch.zeros(2, 1, dtype=torch.int32, device="cuda"),
                      torch.zeros(2, 1, dtype=torch.int32, device="cuda"), 0)
