import math

import pytest
import torch

from emokernels.roof import cpu_roof

# The fewest vector (or scalar) ops one pair's step of each popcount loop needs: XOR, popcount,
# add; AVX2 (rows split into nibbles): 2 XORs, 2 nibble lookups, 2 adds.
_POPCOUNT_STEP_OPS = {"avx512-vpopcntdq": 3, "avx2": 6, "portable": 3}
_WIDTH = {"avx512-vpopcntdq": 512, "avx512f": 512, "avx2": 256, "portable": 32}
# MACs of one step of the lookup loops: lanes x weight bits (portable: one select-add).
_LOOKUP_MACS = {"avx512-row-tables": 64, "avx2-row-tables": 24, "portable": 8}


# (op, dtype, m, n) whose path names the loop of each kind.
_PATH_OF = {"popcount": ("xnor_gemm", "int32", 1, 1), "fma": ("cp_conv2d", "float32", 1, 1),
            "lookup": ("bwn_gemm", "float32", 1, 4096)}


@pytest.mark.parametrize("kind", ["popcount", "fma", "lookup"])
def test_roof_runs_the_loop_of_the_path_in_force(isa, kind):
    # The loop of the path the kernels take: xnor_gemm's for popcount (AVX-512 needs VPOPCNTDQ),
    # the float kernels' for FMA (AVX-512F), bwn_gemm's batch-1 step for lookup.
    path = torch.ops.emokernels.cpu_kernel_path(*_PATH_OF[kind])
    roof = cpu_roof(kind, seconds=0.03)
    assert roof.loop.startswith(f"{path}:")
    assert roof.loop.endswith(f" {torch.get_num_threads()} threads")
    # Generous physical ceilings a thread: 6 GHz, 4 ops a cycle. A loop whose XOR and popcount
    # the compiler had hoisted, or that it had dropped, would time far above them.
    if kind == "popcount":
        per_cycle = 4 / _POPCOUNT_STEP_OPS[path] * _WIDTH[path]
    elif kind == "lookup":
        per_cycle = 4 / 3 * _LOOKUP_MACS[path]  # permute, add, shift
    else:
        per_cycle = 4 * 2 * _WIDTH[path] // 32  # FLOPs of 4 FMAs
    assert math.isfinite(roof.per_second)
    assert 0 < roof.per_second < torch.get_num_threads() * 6e9 * per_cycle


def test_roof_uses_the_thread_count():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert cpu_roof("fma", seconds=0.03).loop.endswith(" 1 threads")
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize(("kind", "seconds", "message"), [
    ("popcnt", 0.1, "kind must be"), ("fma", 0.0, "seconds must be"),
    ("fma", 61.0, "seconds must be"), ("fma", float("nan"), "seconds must be"),
])
def test_roof_rejects_bad_arguments(kind, seconds, message):
    with pytest.raises(RuntimeError, match=message):
        cpu_roof(kind, seconds)
