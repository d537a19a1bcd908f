// The op library's name in the dispatcher. The test-only emulated build (EMOKERNELS_NAMESPACE
// set on the command line) registers the same kernels under another name beside the real ones.
#pragma once

#include <torch/library.h>

#ifndef EMOKERNELS_NAMESPACE
#define EMOKERNELS_NAMESPACE emokernels
#endif

// One level of indirection so that EMOKERNELS_NAMESPACE is expanded before torch pastes it.
#define EMOKERNELS_LIBRARY_(ns, m) TORCH_LIBRARY(ns, m)
#define EMOKERNELS_LIBRARY(m) EMOKERNELS_LIBRARY_(EMOKERNELS_NAMESPACE, m)
#define EMOKERNELS_LIBRARY_IMPL_(ns, key, m) TORCH_LIBRARY_IMPL(ns, key, m)
#define EMOKERNELS_LIBRARY_IMPL(key, m) EMOKERNELS_LIBRARY_IMPL_(EMOKERNELS_NAMESPACE, key, m)

// The dispatch key of the CUDA launchers: CUDA, or CPU where the test-only CPU emulation of
// CUDA runs them on CPU tensors.
#ifdef EMOKERNELS_CUDA_EMULATION
#define EMOKERNELS_CUDA_KEY CPU
#else
#define EMOKERNELS_CUDA_KEY CUDA
#endif
