import math

import pytest
import torch

from emokernels.roof import cpu_roof

# Generous physical ceilings per thread: 6 GHz, 4 vector ops a cycle at the path's width. A
# loop the compiler had dropped or hoisted would time as ~0 s and exceed them.
_WIDTH = {"avx512": 512, "avx512-emulated": 512, "avx2": 256, "portable": 64}


@pytest.mark.parametrize("kind", ["popcount", "fma"])
def test_roof_runs_the_loop_of_the_path_in_force(isa, kind):
    roof = cpu_roof(kind, seconds=0.03)
    width = _WIDTH[isa]
    # bits per vector op for popcount; FLOPs (2 per lane) for fma
    per_op = width if kind == "popcount" else 2 * width // 32
    ceiling = torch.get_num_threads() * 6e9 * 4 * per_op
    assert math.isfinite(roof.per_second) and 0 < roof.per_second < ceiling
    assert roof.loop.startswith("portable" if isa == "portable" else isa.split("-")[0])
    assert roof.loop.endswith(f"{torch.get_num_threads()} threads")


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
