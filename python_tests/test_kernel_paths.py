"""The one place that picks each op's CPU path: what cpu_kernel_path reports is what runs,
and each op asks only for the ISA features its path uses."""

import os

import pytest
import torch

from emokernels import ops

from . import simd_emulation
from .conftest import EMULATED, forced_isa

needs_emulation = pytest.mark.skipif(not simd_emulation.available(),
                                     reason="SIMDe headers not installed")

# (op, dtype, m, n, channels) -> path on a CPU with every feature
ALL_FEATURES = {
    ("pack_bits", "float32", 1, 1, 1): "avx512f",
    ("pack_bits", "bfloat16", 1, 1, 1): "portable",
    ("pack_channels", "float32", 1, 1, 1): "avx2",  # bound by reading the map
    ("xnor_gemm", "int32", 5, 5, 1): "avx512-vpopcntdq",
    ("xnor_gemm_scaled", "int32", 5, 5, 1): "avx512-vpopcntdq",
    ("xnor_gemm_sign", "int32", 5, 5, 1): "avx512-vpopcntdq",
    ("bwn_gemm", "float32", 1, 4096, 1): "avx512-row-tables",
    ("bwn_gemm", "float32", 7, 16, 1): "avx512-row-tables",
    ("bwn_gemm", "float32", 3, 15, 1): "avx512-rows",
    ("bwn_gemm", "float32", 15, 4096, 1): "avx512-rows",
    ("bwn_gemm", "float32", 16, 31, 1): "avx512-rows",
    ("bwn_gemm", "float32", 16, 32, 1): "avx512-table",
    ("bwn_gemm", "bfloat16", 64, 64, 1): "avx512-bf16",
    ("bwn_conv2d", "float32", 16, 8, 32): "avx512-table-implicit-im2col",
    ("bwn_conv2d", "float32", 16, 64, 24): "avx512-table",
    ("bwn_conv2d", "float32", 8, 64, 32): "avx512-rows",
    ("bwn_gemm", "float32", 7, 64, 1): "avx512-row-tables",
    ("bwn_gemm", "float32", 1, 7, 1): "avx512-rows",
    ("hashed_linear", "float32", 1, 1, 1): "avx512f",
    ("hashed_linear_backward", "float32", 1, 1, 1): "avx512f",
    ("hashed_linear", "float32", 1, 16, 1): "block-runs",  # n: the block
}

# Float32 BWN cases that take AVX2's 8-row tables (8+ rows of x; 32+ weight rows, or an image
# whose channels are a multiple of 16), or its tables of each row (fewer rows, 8+ weight rows).
AVX2_TABLES = {
    ("bwn_gemm", "float32", 1, 4096, 1): "avx2-row-tables",
    ("bwn_gemm", "float32", 7, 64, 1): "avx2-row-tables",
    ("bwn_gemm", "float32", 7, 16, 1): "avx2-row-tables",
    ("bwn_gemm", "float32", 3, 15, 1): "avx2-row-tables",
    ("bwn_gemm", "float32", 15, 4096, 1): "avx2-table",
    ("bwn_gemm", "float32", 16, 32, 1): "avx2-table",
    ("bwn_conv2d", "float32", 16, 8, 32): "avx2-table-implicit-im2col",
    ("bwn_conv2d", "float32", 16, 64, 24): "avx2-table",
    ("bwn_conv2d", "float32", 8, 64, 32): "avx2-table-implicit-im2col",
}

# Skylake-SP: AVX-512 F/BW/VL/DQ, but no VPOPCNTDQ and no BF16.
SKYLAKE = "popcnt,avx2,fma,bmi2,avx512f,avx512bw,avx512vl,avx512dq"
SKYLAKE_PATHS = {("pack_bits", "float32", 1, 1, 1): "avx512f",
                 ("xnor_gemm", "int32", 5, 5, 1): "avx2",
                 ("bwn_gemm", "float32", 64, 64, 1): "avx512-table",
                 ("bwn_gemm", "bfloat16", 64, 64, 1): "portable",
                 ("hashed_linear", "float32", 1, 1, 1): "avx512f"}


def path(case) -> str:
    return torch.ops.emokernels.cpu_kernel_path(*case)


@needs_emulation
def test_paths_on_a_cpu_with_every_feature():
    with forced_isa(EMULATED):
        assert {case: path(case) for case in ALL_FEATURES} == ALL_FEATURES


@pytest.mark.parametrize("level", ["avx2", "portable"])
def test_capped_levels_use_no_avx512(level):
    with forced_isa(level):
        for case in ALL_FEATURES:
            want = "portable" if level == "portable" or case[1] == "bfloat16" else "avx2"
            want = "block-runs" if ALL_FEATURES[case] == "block-runs" else want
            want = AVX2_TABLES.get(case, want) if level == "avx2" else want
            assert path(case) == want, case


@needs_emulation
def test_each_op_asks_only_for_the_features_it_uses(monkeypatch):
    monkeypatch.setenv("EMOKERNELS_EMULATED_FEATURES", SKYLAKE)
    with forced_isa(EMULATED):
        assert {case: path(case) for case in SKYLAKE_PATHS} == SKYLAKE_PATHS
        # and those paths compute what the reference does
        x, w = torch.randn(64, 100), torch.randn(64, 100)
        expected = x.double() @ torch.where(w >= 0, 1.0, -1.0).double().T
        torch.testing.assert_close(ops.bwn_gemm(x, ops.pack_bits(w), torch.ones(64), 100).double(),
                                   expected, rtol=1e-5, atol=1e-4)
        a, b = ops.pack_bits(x), ops.pack_bits(w)
        assert torch.equal(ops.xnor_gemm(a, b, 100).double(),
                           torch.where(x >= 0, 1.0, -1.0).double() @ torch.where(
                               w >= 0, 1.0, -1.0).double().T)


@needs_emulation
def test_features_beyond_the_cpu_cannot_be_forced(monkeypatch):
    monkeypatch.setenv("EMOKERNELS_EMULATED_FEATURES", "popcnt,avx2,fma")
    with forced_isa(EMULATED), pytest.raises(RuntimeError, match="does not support"):
        torch.ops.emokernels.cpu_isa()


def test_unknown_op_is_an_error():
    with pytest.raises(RuntimeError, match="unknown op 'bwn_gem'"):
        torch.ops.emokernels.cpu_kernel_path("bwn_gem", "float32")



@pytest.mark.skipif(os.environ.get("EMOKERNELS_CUDA") != "1", reason="CUDA build not required")
def test_the_cuda_build_was_required_and_happened():
    assert torch.ops.emokernels.cuda_compiled()
