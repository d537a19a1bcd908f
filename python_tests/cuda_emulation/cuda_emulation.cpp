// The scheduler behind cuda_emulation.h: a block's threads as fibers, barriers and warp
// collectives as rendezvous with checked rules, shared memory, and the error messages.
#include "cuda_emulation.h"

#include <cxxabi.h>
#include <dlfcn.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace ek_emu::detail {

thread_local const ThreadCtx* tl_ctx = nullptr;

void outside_kernel(const char* what) {
  throw std::runtime_error(std::string("CUDA emulation: ") + what +
                           " used outside a kernel run by ek_emu::launch");
}

namespace {

// Without EMOKERNELS_EMU_SEED every run draws the same thread orders (reproducible CI).
constexpr std::uint64_t kDefaultSeed = 0x5EED;

enum class State : std::uint8_t { kReady, kBarrier, kWarp, kDone };

// splitmix64: a good enough stream for picking threads, without <random>'s compile time.
struct Rng {
  std::uint64_t state = 0;
  std::uint64_t operator()() {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
};

const char* op_name(Op op) {
  static const char* const names[] = {"__shfl_sync",     "__shfl_up_sync", "__shfl_down_sync",
                                      "__shfl_xor_sync", "__ballot_sync",  "__any_sync",
                                      "__all_sync",      "__syncwarp",
                                      "mma_b1_and_popc_m16n8k256"};
  return names[static_cast<int>(op)];
}

const char* barrier_name(BarrierKind kind) {
  static const char* const names[] = {"__syncthreads", "__syncthreads_count",
                                      "__syncthreads_and", "__syncthreads_or"};
  return names[static_cast<int>(kind)];
}

std::string site(const std::source_location& where) {
  const char* file = where.file_name();
  const char* slash = std::strrchr(file, '/');
  return std::string(slash ? slash + 1 : file) + ":" + std::to_string(where.line());
}

bool same_site(const std::source_location& a, const std::source_location& b) {
  return a.line() == b.line() && a.column() == b.column() &&
         std::strcmp(a.file_name(), b.file_name()) == 0;
}

std::string hex(unsigned v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// "0-15, 17, 20-31": thread or lane lists stay one short line (the first 8 runs, then a count).
std::string id_list(const std::vector<unsigned>& ids) {
  std::string out;
  int runs = 0;
  for (std::size_t i = 0; i < ids.size();) {
    std::size_t j = i;
    while (j + 1 < ids.size() && ids[j + 1] == ids[j] + 1) ++j;
    if (++runs > 8) return out + ", ... (" + std::to_string(ids.size()) + " in all)";
    if (!out.empty()) out += ", ";
    out += std::to_string(ids[i]);
    if (j > i) out += "-" + std::to_string(ids[j]);
    i = j + 1;
  }
  return out;
}

// "thread 3" / "threads 0-15".
std::string ids(const char* noun, const std::vector<unsigned>& list) {
  return std::string(noun) + (list.size() == 1 ? " " : "s ") + id_list(list);
}

std::string kernel_name(const void* kernel) {
  // The symbol, when the kernel is exported (inline / template kernels are); else its address.
  Dl_info info;
  if (dladdr(kernel, &info) != 0 && info.dli_sname != nullptr && info.dli_saddr == kernel) {
    int status = 0;
    char* demangled = abi::__cxa_demangle(info.dli_sname, nullptr, nullptr, &status);
    std::string name = status == 0 && demangled ? demangled : info.dli_sname;
    std::free(demangled);
    return name;
  }
  char buf[48];
  std::snprintf(buf, sizeof buf, "kernel at %p", kernel);
  return buf;
}

std::uint64_t read_seed() {
  const char* env = std::getenv("EMOKERNELS_EMU_SEED");
  if (env == nullptr || *env == '\0') return kDefaultSeed;
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(env, &end, 0);
  if (*end != '\0' || errno != 0) {
    throw std::runtime_error(std::string("EMOKERNELS_EMU_SEED must be an unsigned integer, got '") +
                             env + "'");
  }
  return v;
}

struct Fiber {
  ucontext_t uc;
  ThreadCtx ctx;
  unsigned id;  // linear index in the block: x + y * bx + z * bx * by (a lane is id % 32)
  State state;
  std::source_location where;  // of the barrier or collective it waits at
  BarrierKind barrier_kind;
  int pred, barrier_result;
  Op op;
  unsigned mask;
  std::uint64_t value, result;
  int arg, width;
  const std::uint32_t* mma_a;
  const std::uint32_t* mma_b;
  const std::int32_t* mma_c;
  std::int32_t* mma_d;
};

class Scheduler {
 public:
  Scheduler() : page_(static_cast<std::size_t>(sysconf(_SC_PAGESIZE))) {}
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;
  ~Scheduler() {
    for (char* s : stacks_) munmap(s, page_ + kFiberStackBytes);
  }

  bool in_kernel() const { return running_ != nullptr; }

  void run(dim3 grid, dim3 block, void (*body)(void*), void* ctx, const void* kernel,
           const std::source_location& where);
  int barrier(BarrierKind kind, int pred, const std::source_location& where);
  std::uint64_t warp_op(Op op, unsigned mask, std::uint64_t value, int arg, int width,
                        const std::source_location& where);
  void mma(std::int32_t* d, const std::uint32_t* a, const std::uint32_t* b, const std::int32_t* c,
           const std::source_location& where);
  void* shared_slot(const void* site, std::size_t bytes, std::size_t align, const char* name);

 private:
  static void fiber_main();
  void run_block(uint3 block_idx);
  void yield();
  void arrived_at_warp(const Fiber& f);
  void complete_warp(unsigned base, const Fiber& f);
  void resolve_stall();
  void poison(std::size_t begin, std::size_t end);
  std::string thread_name(unsigned id) const;
  [[noreturn]] void fail(const std::string& what) const;

  std::size_t page_;
  std::vector<char*> stacks_;  // one per thread slot, reused by every block and launch
  std::vector<Fiber> fibers_;  // sized before a launch, never during one (fibers hold pointers)
  std::vector<unsigned> ready_;
  ucontext_t main_{}, template_{};
  Rng rng_;
  Fiber* running_ = nullptr;
  bool active_ = false;

  // The launch and block being run, for the messages.
  std::string kernel_;
  std::source_location launch_where_;
  dim3 grid_, block_;
  uint3 block_idx_{};
  unsigned nthreads_ = 0, live_ = 0;
  std::uint64_t seed_ = 0;
  void (*body_)(void*) = nullptr;
  void* body_ctx_ = nullptr;
  std::exception_ptr fiber_error_;

  struct Slot {
    const void* site;
    std::size_t offset;
  };
  std::vector<Slot> slots_;
  std::size_t used_ = 0;
  alignas(256) unsigned char arena_[kMaxSharedBytes];
};

thread_local std::unique_ptr<Scheduler> tl_sched;

Scheduler& scheduler() {
  if (!tl_sched) tl_sched = std::make_unique<Scheduler>();
  return *tl_sched;
}

Scheduler& in_kernel(const char* what) {
  Scheduler* s = tl_sched.get();
  if (s == nullptr || !s->in_kernel()) outside_kernel(what);
  return *s;
}

void Scheduler::fail(const std::string& what) const {
  throw std::runtime_error(
      "CUDA emulation: " + what + " [kernel " + kernel_ + " launched at " + site(launch_where_) +
      " with grid (" + std::to_string(grid_.x) + "," + std::to_string(grid_.y) + "," +
      std::to_string(grid_.z) + ") block (" + std::to_string(block_.x) + "," +
      std::to_string(block_.y) + "," + std::to_string(block_.z) + "); in block (" +
      std::to_string(block_idx_.x) + "," + std::to_string(block_idx_.y) + "," +
      std::to_string(block_idx_.z) + "); EMOKERNELS_EMU_SEED=" + std::to_string(seed_) + "]");
}

std::string Scheduler::thread_name(unsigned id) const {
  const Fiber& f = fibers_[id];
  std::string name = "thread " + std::to_string(id);
  if (block_.y > 1 || block_.z > 1) {
    name += " (" + std::to_string(f.ctx.thread_idx.x) + "," + std::to_string(f.ctx.thread_idx.y) +
            "," + std::to_string(f.ctx.thread_idx.z) + ")";
  }
  return name;
}

void Scheduler::run(dim3 grid, dim3 block, void (*body)(void*), void* ctx, const void* kernel,
                    const std::source_location& where) {
  if (active_) {
    throw std::runtime_error("CUDA emulation: ek_emu::launch called inside a kernel (at " +
                             site(where) + ")");
  }
  kernel_ = kernel_name(kernel);
  launch_where_ = where;
  grid_ = grid;
  block_ = block;
  block_idx_ = {0, 0, 0};
  seed_ = read_seed();
  // CUDA's limits (cudaErrorInvalidConfiguration), so a launch that fails on the GPU fails here.
  const unsigned long long threads = 1ull * block.x * block.y * block.z;
  if (block.x == 0 || block.y == 0 || block.z == 0 || block.x > 1024 || block.y > 1024 ||
      block.z > 64 || threads > kMaxThreadsPerBlock) {
    fail("invalid block shape: CUDA allows at most 1024 threads, x and y <= 1024, z <= 64");
  }
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7FFFFFFFu || grid.y > 65535 ||
      grid.z > 65535) {
    fail("invalid grid shape: x in [1, 2^31-1], y and z in [1, 65535]");
  }
  nthreads_ = static_cast<unsigned>(threads);
  if (fibers_.size() < nthreads_) fibers_.resize(nthreads_);
  while (stacks_.size() < nthreads_) {
    // A PROT_NONE page below each stack: an overflow is a segfault, not silent corruption.
    void* p = mmap(nullptr, page_ + kFiberStackBytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("CUDA emulation: no memory for fiber stacks");
    mprotect(p, page_, PROT_NONE);
    stacks_.push_back(static_cast<char*>(p));
  }
  rng_.state = seed_;
  slots_.clear();
  used_ = 0;
  body_ = body;
  body_ctx_ = ctx;
  fiber_error_ = nullptr;
  // One getcontext per launch (a syscall); each fiber starts from a copy of it.
  getcontext(&template_);

  // Whatever happens (an error leaves fibers suspended mid-kernel: their stacks are simply
  // reused), the next launch starts clean.
  struct Reset {
    Scheduler& s;
    ~Reset() {
      s.active_ = false;
      s.running_ = nullptr;
      tl_ctx = nullptr;
    }
  } reset{*this};
  active_ = true;
  for (unsigned z = 0; z < grid.z; ++z) {
    for (unsigned y = 0; y < grid.y; ++y) {
      for (unsigned x = 0; x < grid.x; ++x) run_block({x, y, z});
    }
  }
}

void Scheduler::fiber_main() {
  Scheduler& s = *tl_sched;
  Fiber& f = *s.running_;
  // No exception may leave a fiber (there is no frame above it to unwind into).
  try {
    s.body_(s.body_ctx_);
  } catch (...) {
    s.fiber_error_ = std::current_exception();
  }
  f.state = State::kDone;
  // Returning resumes uc_link, the scheduler.
}

void Scheduler::poison(std::size_t begin, std::size_t end) {
  for (std::size_t i = begin; i < end; ++i) {
    arena_[i] = static_cast<unsigned char>(kSharedPoison >> (8 * (i & 3)));  // little endian
  }
}

void Scheduler::run_block(uint3 block_idx) {
  block_idx_ = block_idx;
  poison(0, used_);
  ready_.clear();
  for (unsigned id = 0; id < nthreads_; ++id) {
    Fiber& f = fibers_[id];
    f.uc = template_;
    f.uc.uc_stack.ss_sp = stacks_[id] + page_;
    f.uc.uc_stack.ss_size = kFiberStackBytes;
    f.uc.uc_link = &main_;
    makecontext(&f.uc, &Scheduler::fiber_main, 0);
    f.ctx.thread_idx = {id % block_.x, id / block_.x % block_.y, id / (block_.x * block_.y)};
    f.ctx.block_idx = block_idx;
    f.ctx.block_dim = block_;
    f.ctx.grid_dim = grid_;
    f.id = id;
    f.state = State::kReady;
    ready_.push_back(id);
  }
  live_ = nthreads_;
  for (;;) {
    while (!ready_.empty()) {
      // The random draw at every switch is what exposes missing barriers.
      const std::size_t pick = rng_() % ready_.size();
      Fiber& f = fibers_[ready_[pick]];
      ready_[pick] = ready_.back();
      ready_.pop_back();
      running_ = &f;
      tl_ctx = &f.ctx;
      swapcontext(&main_, &f.uc);
      running_ = nullptr;
      tl_ctx = nullptr;
      if (fiber_error_) {
        const std::exception_ptr error = std::exchange(fiber_error_, nullptr);
        try {
          std::rethrow_exception(error);
        } catch (const std::exception& e) {
          fail(thread_name(f.id) + ": " + e.what());
        } catch (...) {
          fail(thread_name(f.id) + " threw a non-standard exception");
        }
      }
      if (f.state == State::kDone) {
        --live_;
      } else if (f.state == State::kWarp) {
        arrived_at_warp(f);
      }
    }
    if (live_ == 0) return;
    resolve_stall();  // releases a barrier, or throws
  }
}

void Scheduler::yield() { swapcontext(&running_->uc, &main_); }

int Scheduler::barrier(BarrierKind kind, int pred, const std::source_location& where) {
  Fiber& f = *running_;
  f.state = State::kBarrier;
  f.barrier_kind = kind;
  f.pred = pred;
  f.where = where;
  yield();
  return f.barrier_result;
}

std::uint64_t Scheduler::warp_op(Op op, unsigned mask, std::uint64_t value, int arg, int width,
                                 const std::source_location& where) {
  Fiber& f = *running_;
  const unsigned lane = f.id % 32, base = f.id - lane;
  const unsigned lanes = nthreads_ - base < 32 ? nthreads_ - base : 32;
  const unsigned existing = lanes == 32 ? 0xFFFFFFFFu : (1u << lanes) - 1u;
  // Checks of one lane's call throw here, inside the fiber: the message names the thread.
  if (((mask >> lane) & 1u) == 0) {
    throw std::runtime_error(std::string(op_name(op)) + " at " + site(where) + ": mask " +
                             hex(mask) + " leaves out the calling lane " + std::to_string(lane));
  }
  if ((mask & ~existing) != 0) {
    throw std::runtime_error(std::string(op_name(op)) + " at " + site(where) + ": mask " +
                             hex(mask) + " names lanes past the block's " +
                             std::to_string(nthreads_) + " threads (this warp has " +
                             std::to_string(lanes) + " lanes)");
  }
  if (width < 1 || width > 32 || (width & (width - 1)) != 0) {
    throw std::runtime_error(std::string(op_name(op)) + " at " + site(where) + ": width " +
                             std::to_string(width) + " is not a power of 2 in [1, 32]");
  }
  f.state = State::kWarp;
  f.op = op;
  f.mask = mask;
  f.value = value;
  f.arg = arg;
  f.width = width;
  f.where = where;
  yield();
  return f.result;
}

void Scheduler::mma(std::int32_t* d, const std::uint32_t* a, const std::uint32_t* b,
                    const std::int32_t* c, const std::source_location& where) {
  Fiber& f = *running_;
  f.mma_a = a;
  f.mma_b = b;
  f.mma_c = c;
  f.mma_d = d;
  warp_op(Op::kMma, 0xFFFFFFFFu, 0, 0, 32, where);
}

void* Scheduler::shared_slot(const void* site_key, std::size_t bytes, std::size_t align,
                             const char* name) {
  for (const Slot& s : slots_) {
    if (s.site == site_key) return arena_ + s.offset;
  }
  if (align < 16) align = 16;
  const std::size_t offset = (used_ + align - 1) / align * align;
  if (offset + bytes > kMaxSharedBytes) {
    throw std::runtime_error("EK_SHARED " + std::string(name) + ": the block's static shared " +
                             "memory would reach " + std::to_string(offset + bytes) +
                             " bytes, over CUDA's 48 KiB");
  }
  slots_.push_back({site_key, offset});
  poison(used_, offset + bytes);
  used_ = offset + bytes;
  return arena_ + offset;
}

void Scheduler::arrived_at_warp(const Fiber& f) {
  // The collective completes when every lane of the mask waits in the same one (same op and
  // mask; the call site may differ, as on Volta and later).
  const unsigned base = f.id - f.id % 32;
  for (unsigned m = f.mask; m != 0; m &= m - 1) {
    const Fiber& o = fibers_[base + static_cast<unsigned>(std::countr_zero(m))];
    if (o.state != State::kWarp || o.op != f.op || o.mask != f.mask) return;
  }
  complete_warp(base, f);
}

void Scheduler::complete_warp(unsigned base, const Fiber& f) {
  const unsigned mask = f.mask;
  auto lane = [&](unsigned l) -> Fiber& { return fibers_[base + l]; };
  switch (f.op) {
    case Op::kShfl:
    case Op::kShflUp:
    case Op::kShflDown:
    case Op::kShflXor:
      // Source lanes as PTX shfl.sync defines them, with CUDA's operand c of the intrinsics
      // (segmask = 32 - width; clamp 31, or 0 for up): j out of the lane's width-segment (past
      // its end; below its start for up) means the lane keeps its own value. xor may read an
      // earlier segment, as the CUDA guide says.
      for (unsigned m = mask; m != 0; m &= m - 1) {
        const int l = std::countr_zero(m);
        Fiber& o = lane(static_cast<unsigned>(l));
        const int seg_start = l & ~(o.width - 1), seg_end = seg_start + o.width - 1;
        int j = l;
        switch (f.op) {
          case Op::kShfl:
            j = seg_start + (o.arg & (o.width - 1));
            break;
          case Op::kShflUp:
            j = l - o.arg >= seg_start ? l - o.arg : l;
            break;
          case Op::kShflDown:
            j = l + o.arg <= seg_end ? l + o.arg : l;
            break;
          default:
            j = (l ^ (o.arg & 31)) <= seg_end ? l ^ (o.arg & 31) : l;
            break;
        }
        if (((mask >> j) & 1u) == 0) {
          fail(std::string(op_name(f.op)) + " at " + site(o.where) + ": lane " +
               std::to_string(l) + " of warp " + std::to_string(base / 32) + " reads lane " +
               std::to_string(j) + ", outside the mask " + hex(mask) +
               " (its value is undefined on the GPU)");
        }
        o.result = lane(static_cast<unsigned>(j)).value;
      }
      break;
    case Op::kBallot:
    case Op::kAny:
    case Op::kAll: {
      unsigned votes = 0;
      for (unsigned m = mask; m != 0; m &= m - 1) {
        const int l = std::countr_zero(m);
        if (lane(static_cast<unsigned>(l)).value != 0) votes |= 1u << l;
      }
      const std::uint64_t r =
          f.op == Op::kBallot ? votes : f.op == Op::kAny ? votes != 0 : votes == mask;
      for (unsigned m = mask; m != 0; m &= m - 1) {
        lane(static_cast<unsigned>(std::countr_zero(m))).result = r;
      }
      break;
    }
    case Op::kSyncwarp:
      break;
    case Op::kMma: {
      // .aligned: the whole warp executes the same mma instruction.
      for (unsigned l = 1; l < 32; ++l) {
        if (!same_site(lane(l).where, lane(0).where)) {
          fail("mma_b1_and_popc_m16n8k256: lanes of warp " + std::to_string(base / 32) +
               " call it at different sites (" + site(lane(0).where) + ", " +
               site(lane(l).where) + "); mma.sync.aligned needs one instruction for the warp");
        }
      }
      // Gather the tile (layout: see cuda_emulation.h), compute, then scatter: d may alias c.
      std::uint32_t a[16][8], b[8][8];
      std::int32_t c[16][8];
      for (unsigned l = 0; l < 32; ++l) {
        const Fiber& o = lane(l);
        const unsigned g = l >> 2, t = l & 3;
        a[g][t] = o.mma_a[0];
        a[g + 8][t] = o.mma_a[1];
        a[g][4 + t] = o.mma_a[2];
        a[g + 8][4 + t] = o.mma_a[3];
        b[g][t] = o.mma_b[0];
        b[g][4 + t] = o.mma_b[1];
        c[g][2 * t] = o.mma_c[0];
        c[g][2 * t + 1] = o.mma_c[1];
        c[g + 8][2 * t] = o.mma_c[2];
        c[g + 8][2 * t + 1] = o.mma_c[3];
      }
      std::int32_t d[16][8];
      for (int m = 0; m < 16; ++m) {
        for (int n = 0; n < 8; ++n) {
          std::uint32_t acc = static_cast<std::uint32_t>(c[m][n]);  // s32 wraps, no .satfinite
          for (int w = 0; w < 8; ++w) acc += std::popcount(a[m][w] & b[n][w]);
          d[m][n] = static_cast<std::int32_t>(acc);
        }
      }
      for (unsigned l = 0; l < 32; ++l) {
        std::int32_t* out = lane(l).mma_d;
        const unsigned g = l >> 2, t = l & 3;
        out[0] = d[g][2 * t];
        out[1] = d[g][2 * t + 1];
        out[2] = d[g + 8][2 * t];
        out[3] = d[g + 8][2 * t + 1];
      }
      break;
    }
  }
  for (unsigned m = mask; m != 0; m &= m - 1) {
    Fiber& o = lane(static_cast<unsigned>(std::countr_zero(m)));
    o.state = State::kReady;
    ready_.push_back(o.id);
  }
}

void Scheduler::resolve_stall() {
  // No fiber can run: either the whole block waits at one barrier (release it) or the block is
  // stuck, which on a GPU is a hang or undefined behaviour; say who waits where.
  std::vector<unsigned> at_barrier, exited;
  const Fiber* first_warp = nullptr;
  for (unsigned id = 0; id < nthreads_; ++id) {
    const Fiber& f = fibers_[id];
    if (f.state == State::kBarrier) at_barrier.push_back(id);
    if (f.state == State::kDone) exited.push_back(id);
    if (f.state == State::kWarp && first_warp == nullptr) first_warp = &f;
  }
  if (first_warp == nullptr) {
    std::vector<std::pair<std::source_location, std::vector<unsigned>>> sites;
    for (unsigned id : at_barrier) {
      const std::source_location& w = fibers_[id].where;
      auto it = sites.begin();
      while (it != sites.end() && !same_site(it->first, w)) ++it;
      if (it == sites.end()) {
        sites.push_back({w, {id}});
      } else {
        it->second.push_back(id);
      }
    }
    const char* name = barrier_name(fibers_[at_barrier[0]].barrier_kind);
    if (sites.size() > 1) {
      std::string msg = "divergent __syncthreads: threads of the block wait at different barriers:";
      for (const auto& [w, list] : sites) {
        msg += " " + ids("thread", list) + " at " + site(w) + ";";
      }
      fail(msg + " every thread must reach the same __syncthreads");
    }
    if (!exited.empty()) {
      fail(std::string(name) + " at " + site(sites[0].first) + " reached by " +
           ids("thread", at_barrier) + " while " + ids("thread", exited) +
           " exited without reaching it; every thread of the block must reach each barrier");
    }
    int count = 0;
    for (unsigned id : at_barrier) count += fibers_[id].pred;
    const BarrierKind kind = fibers_[at_barrier[0]].barrier_kind;
    const int n = static_cast<int>(at_barrier.size());
    const int result = kind == BarrierKind::kCount ? count
                       : kind == BarrierKind::kAnd ? count == n
                       : kind == BarrierKind::kOr  ? count != 0
                                                   : 0;
    for (unsigned id : at_barrier) {
      fibers_[id].barrier_result = result;
      fibers_[id].state = State::kReady;
      ready_.push_back(id);
    }
    return;
  }
  // A collective that cannot complete: group the lanes of its mask by what they do instead.
  const Fiber& f = *first_warp;
  const unsigned base = f.id - f.id % 32;
  std::vector<unsigned> here;
  std::vector<std::pair<std::string, std::vector<unsigned>>> elsewhere;
  for (unsigned m = f.mask; m != 0; m &= m - 1) {
    const unsigned l = static_cast<unsigned>(std::countr_zero(m));
    const Fiber& o = fibers_[base + l];
    std::string what;
    if (o.state == State::kWarp && o.op == f.op && o.mask == f.mask) {
      here.push_back(l);
      continue;
    }
    if (o.state == State::kDone) {
      what = "exited";
    } else if (o.state == State::kBarrier) {
      what = std::string("wait at ") + barrier_name(o.barrier_kind) + " " + site(o.where);
    } else {
      what = std::string("wait in ") + op_name(o.op) + "(mask " + hex(o.mask) + ") at " +
             site(o.where);
    }
    auto it = elsewhere.begin();
    while (it != elsewhere.end() && it->first != what) ++it;
    if (it == elsewhere.end()) {
      elsewhere.push_back({what, {l}});
    } else {
      it->second.push_back(l);
    }
  }
  std::string msg = std::string("deadlocked ") + op_name(f.op) + ": " + ids("lane", here) +
                    " of warp " + std::to_string(base / 32) + " wait in " + op_name(f.op) +
                    "(mask " + hex(f.mask) + ") at " + site(f.where) + ", but";
  for (const auto& [what, lanes] : elsewhere) {
    msg += " " + ids("lane", lanes) + " " + what + ";";
  }
  fail(msg + " every lane of the mask must reach the same collective");
}

}  // namespace

int barrier(BarrierKind kind, int pred, const std::source_location& where) {
  return in_kernel(barrier_name(kind)).barrier(kind, pred, where);
}

std::uint64_t warp_op(Op op, unsigned mask, std::uint64_t value, int arg, int width,
                      const std::source_location& where) {
  return in_kernel(op_name(op)).warp_op(op, mask, value, arg, width, where);
}

void mma_b1_and_popc(std::int32_t* d, const std::uint32_t* a, const std::uint32_t* b,
                     const std::int32_t* c, const std::source_location& where) {
  in_kernel("mma_b1_and_popc_m16n8k256").mma(d, a, b, c, where);
}

void* shared_slot(const void* site_key, std::size_t bytes, std::size_t align, const char* name) {
  return in_kernel("EK_SHARED").shared_slot(site_key, bytes, align, name);
}

void run(dim3 grid, dim3 block, void (*body)(void*), void* ctx, const void* kernel,
         const std::source_location& where) {
  scheduler().run(grid, block, body, ctx, kernel, where);
}

}  // namespace ek_emu::detail
