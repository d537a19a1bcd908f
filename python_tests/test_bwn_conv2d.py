import pytest
import torch
import torch.nn.functional as F

from emokernels import ops

from .conftest import signs, with_arg

# (channels, kernel, stride, dilation, size): 16-multiples take the implicit im2col path
CASES = [
    (16, (3, 3), (1, 1), (1, 1), (9, 11)),
    (48, (5, 5), (2, 2), (1, 1), (13, 12)),
    (32, (3, 2), (1, 2), (2, 1), (10, 9)),
    (64, (1, 1), (1, 1), (1, 1), (6, 7)),
    (37, (3, 3), (1, 1), (1, 1), (8, 8)),
    (5, (2, 3), (2, 1), (1, 2), (9, 10)),
]


def reference(image, weight, alpha, stride, dilation):
    """float64 conv of the NHWC image with alpha * sign(W), as NHWC."""
    x = image.double().permute(0, 3, 1, 2)
    w = alpha.double()[:, None, None, None] * signs(weight)
    return F.conv2d(x, w, None, stride, 0, dilation).permute(0, 2, 3, 1)


def pack(weight):
    return ops.pack_bits(weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1))


@pytest.mark.parametrize("channels, kernel, stride, dilation, size", CASES)
@pytest.mark.parametrize("batch", [1, 3])
def test_float32_matches_reference(isa, channels, kernel, stride, dilation, size, batch):
    image = torch.randn(batch, *size, channels)
    weight, alpha = torch.randn(11, channels, *kernel), torch.rand(11) + 0.1
    out = ops.bwn_conv2d(image, pack(weight), alpha, kernel, stride, dilation)
    ref = reference(image, weight, alpha, stride, dilation)
    assert out.shape == ref.shape and out.dtype == torch.float32
    bound = 1e-6 * F.conv2d(image.abs().double().permute(0, 3, 1, 2),
                            torch.ones(1, channels, *kernel, dtype=torch.float64), None, stride,
                            0, dilation).permute(0, 2, 3, 1) * alpha.double() + 1e-6
    assert ((out.double() - ref).abs() <= bound).all()


@pytest.mark.parametrize("channels, kernel, stride, dilation, size", CASES[:3])
def test_bfloat16(isa, channels, kernel, stride, dilation, size):
    image = torch.randn(2, *size, channels).bfloat16()
    weight, alpha = torch.randn(9, channels, *kernel), torch.rand(9) + 0.1
    out = ops.bwn_conv2d(image, pack(weight), alpha, kernel, stride, dilation)
    ref = reference(image.float(), weight, alpha, stride, dilation)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.double(), ref, rtol=2**-7, atol=1e-2)


def test_non_contiguous_image():
    image = torch.randn(2, 32, 9, 9).permute(0, 2, 3, 1)  # NCHW storage viewed as NHWC
    weight, alpha = torch.randn(8, 32, 3, 3), torch.rand(8)
    out = ops.bwn_conv2d(image, pack(weight), alpha, (3, 3))
    torch.testing.assert_close(out, ops.bwn_conv2d(image.contiguous(), pack(weight), alpha,
                                                   (3, 3)))


def _args():
    weight = torch.randn(4, 16, 3, 3)
    return [torch.randn(1, 6, 6, 16), pack(weight), torch.rand(4), [3, 3], [1, 1], [1, 1]]


@pytest.mark.parametrize("index, value, message", [
    (0, torch.randn(6, 6, 16), "must be 4-D"),
    (0, torch.randn(1, 2, 2, 16), "smaller than the dilated kernel"),
    (0, torch.randn(1, 6, 6, 0), "C >= 1"),
    (5, [2**62, 1], "smaller than the dilated kernel"),
    (5, [(2**64 - 1) // 3, 1], "smaller than the dilated kernel"),
    (0, torch.randn(1, 6, 6, 48), r"ceil\(k/32\)"),
    (0, torch.randn(1, 6, 6, 16).double(), "float32, float16 or bfloat16"),
    (2, torch.rand(5), "alpha has 5 entries"),
    (4, [0, 1], ">= 1"),
])
def test_bad_input(index, value, message):
    with pytest.raises(RuntimeError, match=message):
        torch.ops.emokernels.bwn_conv2d(*with_arg(_args(), index, value))


@pytest.mark.parametrize("x, kernel, dilation", [
    ((1, 6, 7, 16), (4, 1), ((2**64 - 1) // 3, 1)),  # once a crash on the AVX-512 path
    ((1, 6, 6, 16), (4, 1), ((2**64 - 1) // 3, 1)),  # once an output taller than its input
    ((1, 9, 9, 16), (5, 1), (2**62, 1)),
    ((2, 5, 5, 32), (2, 2), (2**63 - 1, 2**63 - 1)),
])
def test_overflowing_geometry_is_an_error(isa, x, kernel, dilation):
    weight = torch.randn(8, x[3], *kernel)
    with pytest.raises(RuntimeError, match="smaller than the dilated kernel"):
        ops.bwn_conv2d(torch.randn(x), pack(weight), torch.ones(8), kernel, (1, 1), dilation)


@pytest.mark.parametrize("kernel, stride, dilation", [((1, 3), (2**62, 1), (2**62, 1)),
                                                      ((1, 1), (2**63 - 1, 2**63 - 1),
                                                       (2**63 - 1, 2**63 - 1))])
def test_huge_unused_stride_and_dilation(isa, kernel, stride, dilation):
    """A stride with a single output, or a dilation with a single tap, changes nothing."""
    image, weight, alpha = torch.randn(2, 5, 6, 16), torch.randn(3, 16, *kernel), torch.rand(3)
    out = ops.bwn_conv2d(image, pack(weight), alpha, kernel, stride, dilation)
    ref = reference(image, weight, alpha, [min(s, 99) for s in stride],
                    [d if k > 1 else 1 for k, d in zip(kernel, dilation, strict=True)])
    assert out.shape == ref.shape
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels, kernel, stride, dilation, size", CASES)
def test_gradients_match_the_float_convolution(channels, kernel, stride, dilation, size):
    image = torch.randn(2, *size, channels, requires_grad=True)
    alpha = (torch.rand(7) + 0.1).requires_grad_()
    weight = torch.randn(7, channels, *kernel)
    out = ops.bwn_conv2d(image, pack(weight), alpha, kernel, stride, dilation)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (image, alpha), grad)
    scaled = signs(weight).float() * alpha[:, None, None, None]
    ref_out = F.conv2d(image.permute(0, 3, 1, 2), scaled, None, stride, 0,
                       dilation).permute(0, 2, 3, 1)
    want = torch.autograd.grad(ref_out, (image, alpha), grad)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)


def test_opcheck():
    torch.library.opcheck(torch.ops.emokernels.bwn_conv2d.default, tuple(_args()),
                          test_utils=("test_schema", "test_autograd_registration",
                                      "test_faketensor", "test_aot_dispatch_dynamic"))
