"""Triton kernels of the ops that run on GPUs (imported lazily: Triton is optional on the CPU)."""
