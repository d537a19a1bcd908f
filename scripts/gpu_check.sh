#!/usr/bin/env bash
# The GPU checks of emokernels, run from anywhere on a machine with an NVIDIA GPU: build the
# package with CUDA, show the environment, run the CUDA tests (subsets under compute-sanitizer
# memcheck and racecheck), the b1 tensor-core micro-benchmark and the GPU benchmarks (JSON under
# benchmarks/results/). Every step runs even after one fails; the summary lists PASS, FAIL or
# SKIP per step, and the exit status is 1 if any step failed.
#
# Usage: scripts/gpu_check.sh [GROUP...]     (or: make gpu-check)
#   GROUPs: build info test memcheck b1 bench (default: all, in that order). Naming a few
#   lets a run be split over several shorter commands; later groups need the build.
# Environment:
#   PYTHON                 interpreter whose torch is used (default python3, e.g. .venv/bin/python)
#   CUDA_HOME              CUDA toolkit (default /usr/local/cuda)
#   TORCH_CUDA_ARCH_LIST   architectures the extension is built for (default "8.0;9.0")
#   PIP_FLAGS              extra pip install flags (e.g. --no-deps on a machine without a registry)
#   BENCH_ARGS             extra arguments of the GPU benchmarks (e.g. --quick)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
ARCHS=${TORCH_CUDA_ARCH_LIST:-8.0;9.0}
RESULTS=benchmarks/results
ALL_GROUPS=(build info test memcheck b1 bench)

groups=("$@")
[[ ${#groups[@]} -gt 0 ]] || groups=("${ALL_GROUPS[@]}")
for g in "${groups[@]}"; do
  [[ " ${ALL_GROUPS[*]} " == *" $g "* ]] || { echo "unknown group '$g' (${ALL_GROUPS[*]})" >&2; exit 2; }
done
want() { [[ " ${groups[*]} " == *" $1 "* ]]; }

summary=()
failed=0

# step NAME CMD...: runs CMD and records its outcome, never stopping the script. errexit does
# not apply inside an `if` condition, so a multi-command step must chain its commands with &&.
step() {
  local name=$1 start=$SECONDS rc
  shift
  printf '\n=== %s: %s\n' "$name" "$*"
  if "$@"; then
    summary+=("PASS  $name ($((SECONDS - start))s)")
  else
    rc=$?
    summary+=("FAIL  $name (exit $rc, $((SECONDS - start))s)")
    failed=1
  fi
}

skip() {
  printf '\n=== %s: skipped, %s\n' "$1" "$2"
  summary+=("SKIP  $1 ($2)")
}

# The GPU's name as a file-name slug (as the Python benchmarks name their JSON) and its
# compute capability without the dot (e.g. 90), empty where nvidia-smi cannot tell.
gpu_query() { { nvidia-smi --query-gpu="$1" --format=csv,noheader; } 2>/dev/null | head -n 1 || true; }
slug=$(gpu_query name | tr '[:upper:]' '[:lower:]' | sed -E 's/[^a-z0-9]+/-/g; s/^-+|-+$//g')
slug=${slug:-unknown-gpu}
cap=$(gpu_query compute_cap | tr -d ' .')

# PIP_FLAGS is split into words on purpose: it holds options.
# shellcheck disable=SC2086
build() {
  EMOKERNELS_CUDA=1 TORCH_CUDA_ARCH_LIST="$ARCHS" \
    "$PYTHON" -m pip install --no-build-isolation ${PIP_FLAGS:-} -e ".[test]"
}

# Without a GPU or the CUDA build the cuda-marked tests skip and pytest would still pass.
cuda_ready() {
  "$PYTHON" -c 'import sys, torch, emokernels
ok = torch.cuda.is_available() and torch.ops.emokernels.cuda_compiled()
sys.exit(0 if ok else "no CUDA device, or emokernels built without CUDA")'
}

memcheck() {
  # torch's caching allocator hands out slices of large blocks, which memcheck would see as
  # one allocation; without it every tensor is its own allocation and overruns are caught.
  PYTORCH_NO_CUDA_MEMORY_CACHING=1 "$sanitizer" --tool memcheck --error-exitcode 1 \
    "$PYTHON" -m pytest -q -m cuda python_tests/test_cuda_ops.py -k "pack_bits or xnor"
}

# racecheck: shared-memory hazards, such as a stage of the tensor-core XNOR GEMM's copy ring
# refilled while a warp still reads it.
racecheck() {
  "$sanitizer" --tool racecheck --error-exitcode 1 \
    "$PYTHON" -m pytest -q -m cuda python_tests/test_cuda_ops.py -k "xnor_gemm_scaled"
}

b1_build() {
  local arch=(-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90)
  [[ -z $cap ]] || arch=(-gencode "arch=compute_$cap,code=sm_$cap")  # this GPU's own SASS
  rm -f build/b1_mma_bench  # never run a stale binary after a failed build
  mkdir -p build &&
    "$CUDA_HOME/bin/nvcc" -O3 -std=c++17 "${arch[@]}" -o build/b1_mma_bench \
      benchmarks/cuda/b1_mma_bench.cu
}

mkdir -p "$RESULTS"
if want build; then step "build with CUDA" build; fi
if want info; then
  step "emokernels info" "$PYTHON" -m emokernels info
  step "nvidia-smi" nvidia-smi
fi
if want test; then
  step "CUDA device and build" cuda_ready
  step "pytest -m cuda" "$PYTHON" -m pytest -q -m cuda python_tests
  # The Triton kernel's tests run on the GPU wherever there is one (the interpreter elsewhere).
  step "pytest triton" "$PYTHON" -m pytest -q python_tests/test_cp_triton.py
fi
if want memcheck; then
  sanitizer=$(command -v compute-sanitizer || true)
  for candidate in "$CUDA_HOME/bin/compute-sanitizer" \
                   "$CUDA_HOME/compute-sanitizer/compute-sanitizer"; do
    [[ -n $sanitizer || ! -x $candidate ]] || sanitizer=$candidate
  done
  if [[ -n $sanitizer ]]; then
    step "memcheck (pack_bits, xnor)" memcheck
    step "racecheck (xnor)" racecheck
  else
    skip "memcheck (pack_bits, xnor)" "compute-sanitizer not found"
    skip "racecheck (xnor)" "compute-sanitizer not found"
  fi
fi
if want b1; then
  step "b1 mma bench build" b1_build
  step "b1 mma bench" build/b1_mma_bench "$RESULTS/b1_mma.$slug.json"
fi
if want bench; then
  # BENCH_ARGS is split into words on purpose: it holds options.
  # shellcheck disable=SC2086
  step "bench xnor_gemm cuda" "$PYTHON" benchmarks/bench_xnor_gemm.py --device cuda ${BENCH_ARGS:-}
  # shellcheck disable=SC2086
  step "bench bwn_gemm cuda" "$PYTHON" benchmarks/bench_bwn_gemm.py --device cuda ${BENCH_ARGS:-}
  # shellcheck disable=SC2086
  step "bench hashed cuda" "$PYTHON" benchmarks/bench_hashed.py --device cuda ${BENCH_ARGS:-}
  # shellcheck disable=SC2086
  step "bench cp_conv2d cuda" "$PYTHON" benchmarks/bench_cp_conv.py --device cuda ${BENCH_ARGS:-}
fi

printf '\n=== summary (%s)\n' "${slug}"
printf '%s\n' "${summary[@]}"
exit "$failed"
