// The package's CUDA launchers and kernels (csrc/cuda/*.cu), compiled as C++ under the CPU
// emulation of CUDA and registered for CPU tensors as torch.ops.emokernels_cuda_emu.*: every
// CI run executes the real CUDA kernel sources against the references.
#include "cuda_emulation.h"

#include "cuda/bwn_conv2d.cu"
#include "cuda/bwn_gemm.cu"
#include "cuda/pack_bits.cu"
#include "cuda/pack_channels.cu"
#include "cuda/xnor_gemm.cu"
#include "cuda/xnor_gemm_scaled.cu"
#include "cuda/xnor_gemm_sign.cu"
#include "cuda/hashed_linear.cu"
#include "cuda/hashed_linear_backward.cu"
