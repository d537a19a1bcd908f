// Asynchronous global -> shared copies (PTX cp.async, sm_80 and later) for multi-stage tile
// pipelines: a stage's loads are in flight while the tensor cores work on the previous one. A
// copy whose source is out of range zero-fills its destination (src-size 0), so tiles past the
// matrix edge need no branches in the inner loop. Under the CPU emulation the copies are plain
// and complete at once (commit and wait do nothing).
#pragma once

#include "device.cuh"

namespace emokernels::cuda {

// 16 bytes, the destination and source aligned to them: the widest copy, one per thread.
struct alignas(16) Words4 {
  uint32_t w[4];
};

// Copies Bytes (4 or 16) from `src` to `dst` (shared memory), or zeros `dst` where !valid
// (`src` must still be a valid address: the base of the operand will do).
template <int Bytes>
__device__ inline void copy_async(void* dst, const void* src, bool valid) {
  static_assert(Bytes == 4 || Bytes == 16, "cp.async copies 4, 8 or 16 bytes; 4 and 16 used");
#if defined(EMOKERNELS_CUDA_EMULATION)
  ek_emu::cp_async(dst, src, Bytes, valid);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned to = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  const int src_bytes = valid ? Bytes : 0;
  if constexpr (Bytes == 16) {
    // .cg: straight to shared memory through L2, as each tile word is read once per block
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(to), "l"(src),
                 "r"(src_bytes));
  } else {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(to), "l"(src),
                 "r"(src_bytes));
  }
#else
  __trap();  // callers run only on sm_80 and later
#endif
}

// Closes the group of copies this thread issued since the last commit.
__device__ inline void commit_copies() {
#if !defined(EMOKERNELS_CUDA_EMULATION) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}

// Waits until at most Pending of this thread's committed groups are still in flight; the
// other threads' copies are visible after the __syncthreads that follows.
template <int Pending>
__device__ inline void wait_copies() {
#if !defined(EMOKERNELS_CUDA_EMULATION) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending));
#endif
}

}  // namespace emokernels::cuda
