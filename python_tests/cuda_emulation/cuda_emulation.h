// Test-only CPU emulation of the small CUDA subset the package's kernels are written in, so that
// the real kernel sources (.cuh) compile as ordinary C++ and run on CI machines without a GPU.
//
// Include this header BEFORE any kernel header. The kernels then use, unchanged:
//   __global__ __device__ __host__ __forceinline__ __launch_bounds__(...) (and __restrict__,
//   which g++ knows), dim3 / uint3, threadIdx blockIdx blockDim gridDim warpSize,
//   EK_SHARED(type, name, count)  (static shared memory; real CUDA: __shared__ type name[count]),
//   __syncthreads(), __syncthreads_count/_and/_or(pred),
//   __shfl_sync, __shfl_up_sync, __shfl_down_sync, __shfl_xor_sync, __ballot_sync, __any_sync,
//   __all_sync, __syncwarp, __popc(ll), __clz(ll), __ffs(ll), __brev, __float_as_uint & co,
//   __ldg, __threadfence(_block), atomicAdd/Sub/Min/Max/And/Or/Xor/Exch/CAS, min/max,
//   ek_emu::mma_b1_and_popc_m16n8k256 (the b1 tensor-core MMA, see below), ek_emu::cp_async.
// Host code launches with ek_emu::launch(grid, block, kernel, args...).
//
// How it runs (why it finds bugs): blocks run one after another; the threads of a block are
// fibers (ucontext) on the calling OS thread. A fiber runs until it reaches a barrier or warp
// collective, or exits; the next fiber is drawn at random (seed EMOKERNELS_EMU_SEED), so a
// missing __syncthreads reads shared memory that, in that order, nobody wrote yet: shared memory
// is poisoned (every 4-byte word 0xFFA5A5A5, a NaN as float) before each block. Barriers and
// collectives are rendezvous that check their rules (every thread of the block at the same
// __syncthreads; every lane of the mask in the same collective) and throw std::runtime_error
// (a Python RuntimeError through a torch op) instead of hanging.
//
// Rules the emulation enforces that a GPU may forgive: a thread that returns early must not skip
// a __syncthreads the others reach; the lanes of a collective's mask must all call it (and
// include the caller); a shuffle must not read a lane outside its mask.
// Limits: 1024 threads per block, 48 KiB of EK_SHARED per block, 64 KiB of stack per thread
// (a guard page turns an overflow into a segfault); threadIdx & co are macros.
//
// Not emulated: dynamic (extern) shared memory, memory of other blocks running concurrently
// (blocks never overlap, so cross-block waits hang), spin-waits on other threads of the block
// (fibers never preempt), __activemask, cooperative groups, textures, streams.
#pragma once

#ifdef __CUDACC__
#error "cuda_emulation.h is for the C++ (CPU) build only; nvcc compiles the kernels natively"
#endif

#define EMOKERNELS_CUDA_EMULATION 1

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <source_location>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

// ---- CUDA qualifiers: plain C++. __global__ is `inline` so a kernel header may be included by
// several translation units. (__noinline__ is deliberately not defined: libstdc++ uses it.)
#define __global__ inline
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)

struct uint3 {
  unsigned x, y, z;
};

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}  // NOLINT: implicit, as in CUDA
};

constexpr int warpSize = 32;

// Everything of the harness is hidden so that two extensions loaded in one process (this test
// extension and one with the package's kernels) each keep their own scheduler.
namespace [[gnu::visibility("hidden")]] ek_emu {

// Most threads in a block (CUDA's limit), and the stack each thread (fiber) gets.
constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr std::size_t kFiberStackBytes = 64 * 1024;
// Static shared memory per block: CUDA's limit for __shared__ arrays (48 KiB).
constexpr std::size_t kMaxSharedBytes = 48 * 1024;
// Every 4-byte word of shared memory holds this at the start of each block: a NaN as float,
// -5921371 as int32, an unlikely bit pattern for packed bits.
constexpr std::uint32_t kSharedPoison = 0xFFA5A5A5u;

namespace detail {

// Where the current fiber is in the grid; read by threadIdx & co.
struct ThreadCtx {
  uint3 thread_idx, block_idx;
  dim3 block_dim, grid_dim;
};
extern thread_local const ThreadCtx* tl_ctx;
[[noreturn]] void outside_kernel(const char* what);

inline const ThreadCtx& current(const char* what) {
  if (tl_ctx == nullptr) outside_kernel(what);
  return *tl_ctx;
}

// The collectives, in the order of their names in the .cpp.
enum class Op : int { kShfl, kShflUp, kShflDown, kShflXor, kBallot, kAny, kAll, kSyncwarp, kMma };
enum class BarrierKind : int { kSync, kCount, kAnd, kOr };

// Blocks the calling fiber until the whole block reaches a barrier; returns the reduction of
// `pred` for the _count/_and/_or variants.
int barrier(BarrierKind kind, int pred, const std::source_location& where);
// A rendezvous of the lanes in `mask`; `value` is the lane's 64-bit payload, `arg` its lane /
// delta / lane mask. Returns this lane's result.
std::uint64_t warp_op(Op op, unsigned mask, std::uint64_t value, int arg, int width,
                      const std::source_location& where);
void mma_b1_and_popc(std::int32_t* d, const std::uint32_t* a, const std::uint32_t* b,
                     const std::int32_t* c, const std::source_location& where);
// The block's storage for the EK_SHARED declaration identified by `site` (poisoned per block).
void* shared_slot(const void* site, std::size_t bytes, std::size_t align, const char* name);
// Runs body(ctx) once per thread of the grid.
void run(dim3 grid, dim3 block, void (*body)(void*), void* ctx, const void* kernel,
         const std::source_location& where);

template <typename T>
std::uint64_t to_bits(T v) {
  static_assert(std::is_trivially_copyable_v<T> && (sizeof(T) == 4 || sizeof(T) == 8),
                "warp collectives move 4- or 8-byte values");
  if constexpr (sizeof(T) == 4) {
    return std::bit_cast<std::uint32_t>(v);
  } else {
    return std::bit_cast<std::uint64_t>(v);
  }
}

template <typename T>
T from_bits(std::uint64_t v) {
  if constexpr (sizeof(T) == 4) {
    return std::bit_cast<T>(static_cast<std::uint32_t>(v));
  } else {
    return std::bit_cast<T>(v);
  }
}

template <typename T>
T shuffle(Op op, unsigned mask, T v, int arg, int width, const std::source_location& where) {
  return from_bits<T>(warp_op(op, mask, to_bits(v), arg, width, where));
}

template <typename F>
void invoke(void* f) {
  (*static_cast<F*>(f))();
}

}  // namespace detail

// The grid argument of launch(); it also records where launch() was called, for the messages.
struct Grid {
  dim3 dims;
  std::source_location where;
  Grid(dim3 d, std::source_location w = std::source_location::current())  // NOLINT: implicit
      : dims(d), where(w) {}
  Grid(unsigned x, std::source_location w = std::source_location::current())  // NOLINT
      : dims(x), where(w) {}
};

// kernel<<<grid, block>>>(args...), run to completion on the calling thread. The arguments are
// converted to the kernel's parameter types once (as a CUDA launch does), and every thread gets
// its own copy. Errors (divergent barrier, deadlocked collective, an exception in the kernel)
// are thrown as std::runtime_error naming the kernel, launch site, block and threads.
template <typename... P, typename... A>
void launch(Grid grid, dim3 block, void (*kernel)(P...), A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "launch: wrong number of kernel arguments");
  std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
  auto body = [&] { std::apply(kernel, params); };
  detail::run(grid.dims, block, &detail::invoke<decltype(body)>, &body,
              reinterpret_cast<const void*>(kernel), grid.where);
}

// PTX mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc: D = C + popc(A AND B) for a
// 16 x 8 tile over k = 256 bits; a warp-wide collective (all 32 lanes call it at one site).
// Fragments, with g = lane >> 2, t = lane & 3, bit j of a register = element j of its 32:
//   a[0]: A row g,   k 32t+j      a[1]: A row g+8, k 32t+j
//   a[2]: A row g,   k 128+32t+j  a[3]: A row g+8, k 128+32t+j
//   b[0]: B col g,   k 32t+j      b[1]: B col g,   k 128+32t+j
//   c/d[0]: (g, 2t)  c/d[1]: (g, 2t+1)  c/d[2]: (g+8, 2t)  c/d[3]: (g+8, 2t+1)
// Source: PTX ISA, "Matrix Fragments for mma.m16n8k256" (row formulas; its column formula for
// A reads "32t + i for i < 64", a misprint: a[1] would overlap a[2]), as corrected by CUTLASS's
// cute MMA_Traits<SM80_16x8x256_S32U1U1S32_TN_XORPOPC> (ALayout ((4,8),(32,2,2)) :
// ((512,1),(16,8,2048)), BLayout ((4,8),(32,2)) : ((256,1),(8,1024)), CLayout SM80_16x8_Row;
// CUTLASS PR #1856 "fix wrong A/BLayout"). With .and.popc the order of bits inside a register
// does not change D, as long as A and B agree on it; only the register -> (row, k range) map does.
inline void mma_b1_and_popc_m16n8k256(
    std::int32_t d[4], const std::uint32_t a[4], const std::uint32_t b[2], const std::int32_t c[4],
    std::source_location where = std::source_location::current()) {
  detail::mma_b1_and_popc(d, a, b, c, where);
}

// PTX cp.async (global -> shared, 4, 8 or 16 bytes): here a plain copy that completes at once,
// or zeros where !valid (src-size 0). Both addresses must be aligned to the size, as the
// hardware demands (a misaligned one faults there): an error here.
inline void cp_async(void* dst, const void* src, int bytes, bool valid) {
  const auto misaligned = [bytes](const void* p) {
    return reinterpret_cast<std::uintptr_t>(p) % bytes != 0;
  };
  if (misaligned(dst) || misaligned(src)) {
    throw std::runtime_error("cp.async of " + std::to_string(bytes) +
                             " bytes from or to an address not aligned to them");
  }
  auto* to = static_cast<unsigned char*>(dst);
  const auto* from = static_cast<const unsigned char*>(src);
  for (int i = 0; i < bytes; ++i) to[i] = valid ? from[i] : 0;
}

}  // namespace ek_emu

// ---- Thread coordinates: the current fiber's.
#define threadIdx (::ek_emu::detail::current("threadIdx").thread_idx)
#define blockIdx (::ek_emu::detail::current("blockIdx").block_idx)
#define blockDim (::ek_emu::detail::current("blockDim").block_dim)
#define gridDim (::ek_emu::detail::current("gridDim").grid_dim)

// ---- Static shared memory: one array per declaration site (the address of a function-local
// static, so each template instantiation gets its own), shared by the block's threads.
#define EK_SHARED(type, name, count)                                                        \
  static char ek_shared_site_##name;                                                        \
  type(&name)[count] = *static_cast<type(*)[count]>(::ek_emu::detail::shared_slot(        \
      &ek_shared_site_##name, sizeof(type[count]), alignof(type), #name))

// ---- Barriers. The call site (a defaulted std::source_location) tells barriers apart.
inline void __syncthreads(std::source_location w = std::source_location::current()) {
  ::ek_emu::detail::barrier(::ek_emu::detail::BarrierKind::kSync, 0, w);
}
inline int __syncthreads_count(int pred, std::source_location w = std::source_location::current()) {
  return ::ek_emu::detail::barrier(::ek_emu::detail::BarrierKind::kCount, pred != 0, w);
}
inline int __syncthreads_and(int pred, std::source_location w = std::source_location::current()) {
  return ::ek_emu::detail::barrier(::ek_emu::detail::BarrierKind::kAnd, pred != 0, w);
}
inline int __syncthreads_or(int pred, std::source_location w = std::source_location::current()) {
  return ::ek_emu::detail::barrier(::ek_emu::detail::BarrierKind::kOr, pred != 0, w);
}
inline void __threadfence() {}
inline void __threadfence_block() {}

// ---- Warp collectives. Overloads per type as in CUDA (so a short promotes to int).
#define EK_EMU_SHUFFLES(T)                                                                      \
  inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = warpSize,                  \
                       std::source_location w = std::source_location::current()) {             \
    return ::ek_emu::detail::shuffle<T>(::ek_emu::detail::Op::kShfl, mask, v, src_lane, width,  \
                                        w);                                                     \
  }                                                                                             \
  inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = warpSize,             \
                          std::source_location w = std::source_location::current()) {          \
    return ::ek_emu::detail::shuffle<T>(::ek_emu::detail::Op::kShflUp, mask, v,                 \
                                        static_cast<int>(delta & 31u), width, w);               \
  }                                                                                             \
  inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = warpSize,           \
                            std::source_location w = std::source_location::current()) {        \
    return ::ek_emu::detail::shuffle<T>(::ek_emu::detail::Op::kShflDown, mask, v,               \
                                        static_cast<int>(delta & 31u), width, w);               \
  }                                                                                             \
  inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = warpSize,             \
                           std::source_location w = std::source_location::current()) {         \
    return ::ek_emu::detail::shuffle<T>(::ek_emu::detail::Op::kShflXor, mask, v, lane_mask,     \
                                        width, w);                                              \
  }
EK_EMU_SHUFFLES(int)
EK_EMU_SHUFFLES(unsigned)
EK_EMU_SHUFFLES(long)
EK_EMU_SHUFFLES(unsigned long)
EK_EMU_SHUFFLES(long long)
EK_EMU_SHUFFLES(unsigned long long)
EK_EMU_SHUFFLES(float)
EK_EMU_SHUFFLES(double)
#undef EK_EMU_SHUFFLES

inline unsigned __ballot_sync(unsigned mask, int pred,
                              std::source_location w = std::source_location::current()) {
  return static_cast<unsigned>(
      ::ek_emu::detail::warp_op(::ek_emu::detail::Op::kBallot, mask, pred != 0, 0, 32, w));
}
inline int __any_sync(unsigned mask, int pred,
                      std::source_location w = std::source_location::current()) {
  return static_cast<int>(
      ::ek_emu::detail::warp_op(::ek_emu::detail::Op::kAny, mask, pred != 0, 0, 32, w));
}
inline int __all_sync(unsigned mask, int pred,
                      std::source_location w = std::source_location::current()) {
  return static_cast<int>(
      ::ek_emu::detail::warp_op(::ek_emu::detail::Op::kAll, mask, pred != 0, 0, 32, w));
}
inline void __syncwarp(unsigned mask = 0xFFFFFFFFu,
                       std::source_location w = std::source_location::current()) {
  ::ek_emu::detail::warp_op(::ek_emu::detail::Op::kSyncwarp, mask, 0, 0, 32, w);
}

// ---- Integer and bit intrinsics.
inline int __popc(unsigned v) { return std::popcount(v); }
inline int __popcll(unsigned long long v) { return std::popcount(v); }
inline int __clz(int v) { return std::countl_zero(static_cast<unsigned>(v)); }
inline int __clzll(long long v) { return std::countl_zero(static_cast<unsigned long long>(v)); }
inline int __ffs(int v) { return v == 0 ? 0 : std::countr_zero(static_cast<unsigned>(v)) + 1; }
inline int __ffsll(long long v) {
  return v == 0 ? 0 : std::countr_zero(static_cast<unsigned long long>(v)) + 1;
}
inline unsigned __brev(unsigned v) {
  v = ((v >> 1) & 0x55555555u) | ((v & 0x55555555u) << 1);
  v = ((v >> 2) & 0x33333333u) | ((v & 0x33333333u) << 2);
  v = ((v >> 4) & 0x0F0F0F0Fu) | ((v & 0x0F0F0F0Fu) << 4);
  v = ((v >> 8) & 0x00FF00FFu) | ((v & 0x00FF00FFu) << 8);
  return (v >> 16) | (v << 16);
}
inline unsigned __float_as_uint(float v) { return std::bit_cast<unsigned>(v); }
inline int __float_as_int(float v) { return std::bit_cast<int>(v); }
inline float __uint_as_float(unsigned v) { return std::bit_cast<float>(v); }
inline float __int_as_float(int v) { return std::bit_cast<float>(v); }
template <typename T>
inline T __ldg(const T* p) {
  return *p;
}

// ---- Atomics: plain read-modify-write, because fibers never interrupt each other (only
// barriers and collectives switch threads) and blocks never overlap.
#define EK_EMU_ATOMIC(name, T, expr)      \
  inline T name(T* address, T val) {      \
    const T old = *address;               \
    *address = (expr);                    \
    return old;                           \
  }
EK_EMU_ATOMIC(atomicAdd, int, old + val)
EK_EMU_ATOMIC(atomicAdd, unsigned, old + val)
EK_EMU_ATOMIC(atomicAdd, unsigned long long, old + val)
EK_EMU_ATOMIC(atomicAdd, float, old + val)
EK_EMU_ATOMIC(atomicAdd, double, old + val)
EK_EMU_ATOMIC(atomicSub, int, old - val)
EK_EMU_ATOMIC(atomicSub, unsigned, old - val)
EK_EMU_ATOMIC(atomicMin, int, val < old ? val : old)
EK_EMU_ATOMIC(atomicMin, unsigned, val < old ? val : old)
EK_EMU_ATOMIC(atomicMin, long long, val < old ? val : old)
EK_EMU_ATOMIC(atomicMin, unsigned long long, val < old ? val : old)
EK_EMU_ATOMIC(atomicMax, int, val > old ? val : old)
EK_EMU_ATOMIC(atomicMax, unsigned, val > old ? val : old)
EK_EMU_ATOMIC(atomicMax, long long, val > old ? val : old)
EK_EMU_ATOMIC(atomicMax, unsigned long long, val > old ? val : old)
EK_EMU_ATOMIC(atomicAnd, int, old & val)
EK_EMU_ATOMIC(atomicAnd, unsigned, old & val)
EK_EMU_ATOMIC(atomicAnd, unsigned long long, old & val)
EK_EMU_ATOMIC(atomicOr, int, old | val)
EK_EMU_ATOMIC(atomicOr, unsigned, old | val)
EK_EMU_ATOMIC(atomicOr, unsigned long long, old | val)
EK_EMU_ATOMIC(atomicXor, int, old ^ val)
EK_EMU_ATOMIC(atomicXor, unsigned, old ^ val)
EK_EMU_ATOMIC(atomicXor, unsigned long long, old ^ val)
EK_EMU_ATOMIC(atomicExch, int, val)
EK_EMU_ATOMIC(atomicExch, unsigned, val)
EK_EMU_ATOMIC(atomicExch, unsigned long long, val)
EK_EMU_ATOMIC(atomicExch, float, val)
#undef EK_EMU_ATOMIC
#define EK_EMU_CAS(T)                                 \
  inline T atomicCAS(T* address, T compare, T val) {  \
    const T old = *address;                           \
    if (old == compare) *address = val;               \
    return old;                                       \
  }
EK_EMU_CAS(int)
EK_EMU_CAS(unsigned)
EK_EMU_CAS(unsigned long long)
#undef EK_EMU_CAS

// ---- min / max as CUDA's device code has them (global overloads; std:: is untouched).
#define EK_EMU_MINMAX(T)                                  \
  inline T min(T a, T b) { return b < a ? b : a; }        \
  inline T max(T a, T b) { return a < b ? b : a; }
EK_EMU_MINMAX(int)
EK_EMU_MINMAX(unsigned)
EK_EMU_MINMAX(long)
EK_EMU_MINMAX(unsigned long)
EK_EMU_MINMAX(long long)
EK_EMU_MINMAX(unsigned long long)
#undef EK_EMU_MINMAX
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }
inline double max(double a, double b) { return std::fmax(a, b); }
