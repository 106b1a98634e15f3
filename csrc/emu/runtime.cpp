// The emulator's scheduler. Blocks run one after another on the calling OS thread; the
// threads of a block run as cooperative fibers (ucontext). A fiber runs until it reaches a
// barrier, a warp collective or its end; then the scheduler resumes the next one. When
// every live fiber waits, the scheduler releases the barrier (all at the same
// __syncthreads) or completes the warp collectives whose lanes have all arrived; anything
// else is a deadlock or a divergent barrier and is reported as an error.
#include "emu/runtime.h"

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <exception>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>
#include <stdexcept>
#include <vector>

thread_local uint3 threadIdx{0, 0, 0};
thread_local uint3 blockIdx{0, 0, 0};
thread_local dim3 blockDim{1, 1, 1};
thread_local dim3 gridDim{1, 1, 1};

namespace pyseg::emu {
namespace {

constexpr size_t kStackBytes = 256 * 1024;
constexpr size_t kMaxSharedBytes = 48 * 1024;  // the default limit without an opt-in

enum class State { kReady, kBarrier, kWarp, kDone };

struct Fiber {
  ucontext_t context;  // points into itself: fibers live in a vector that never reallocates
  State state = State::kReady;
  uint3 tid{0, 0, 0};
  int linear = 0;
  const char* file = nullptr;
  int line = 0;
  // Warp collective in flight.
  unsigned mask = 0;
  WarpOp op = WarpOp::kSync;
  uint64_t payload = 0, result = 0;
  int arg = 0, width = 32;
};

// One mmap'ed stack per fiber slot, with a guard page below it, reused across launches.
struct Stack {
  void* base = nullptr;
  size_t bytes = 0;
  Stack() {
    long page = sysconf(_SC_PAGESIZE);
    bytes = kStackBytes + page;
    base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) throw std::runtime_error("emulator: cannot allocate a fiber stack");
    mprotect(base, page, PROT_NONE);
  }
  ~Stack() { munmap(base, bytes); }
  Stack(const Stack&) = delete;
  Stack& operator=(const Stack&) = delete;
};

struct BlockRun {
  std::vector<Fiber> fibers;
  ucontext_t scheduler;
  Fiber* current = nullptr;
  void (*kernel_call)(void*) = nullptr;
  void* ctx = nullptr;
  std::exception_ptr error;
};

thread_local BlockRun* g_run = nullptr;
thread_local std::vector<std::unique_ptr<Stack>> g_stacks;
thread_local std::vector<unsigned char> g_dynamic_shared;

ThreadOrder g_order = ThreadOrder::kForward;
uint64_t g_seed = 0;
int64_t g_max_blocks = 8;
Stats g_stats;

void fiber_main() {
  BlockRun* run = g_run;
  Fiber* self = run->current;
  try {
    run->kernel_call(run->ctx);
  } catch (...) {
    if (!run->error) run->error = std::current_exception();
  }
  self->state = State::kDone;
  swapcontext(&self->context, &run->scheduler);
  // Never resumed.
}

// Suspends the calling fiber and returns to the scheduler.
void yield_to_scheduler() {
  BlockRun* run = g_run;
  swapcontext(&run->current->context, &run->scheduler);
}

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error("emulator: " + what); }

std::string where(const Fiber& f) {
  std::ostringstream s;
  s << (f.file ? f.file : "?") << ":" << f.line;
  return s.str();
}

int source_lane(const Fiber& f, int lane) {
  const int w = f.width;
  const int base = lane & ~(w - 1);
  switch (f.op) {
    case WarpOp::kIdx: return base + (f.arg & (w - 1));
    case WarpOp::kUp: return (lane - base) - f.arg < 0 ? lane : lane - f.arg;
    case WarpOp::kDown: return (lane - base) + f.arg >= w ? lane : lane + f.arg;
    case WarpOp::kXor: {
      int src = lane ^ f.arg;
      return src >= base + w ? lane : src;  // later groups are out of reach, earlier ones not
    }
    default: return lane;
  }
}

// Completes the warp collectives whose lanes have all arrived; returns whether any did.
bool resolve_warps(BlockRun& run, int threads) {
  bool progressed = false;
  const int warps = (threads + 31) / 32;
  for (int w = 0; w < warps; ++w) {
    const int first = w * 32, count = std::min(32, threads - first);
    for (int l = 0; l < count; ++l) {
      Fiber& f = run.fibers[first + l];
      if (f.state != State::kWarp) continue;
      // The group: lanes of this warp named in f's mask that exist in the block.
      bool complete = true;
      for (int m = 0; m < count; ++m) {
        if (!(f.mask >> m & 1u)) continue;
        const Fiber& g = run.fibers[first + m];
        if (g.state == State::kDone)
          fail("warp collective at " + where(f) + " names lane " + std::to_string(m) +
               " in its mask, but that thread has exited");
        if (g.state != State::kWarp) { complete = false; break; }
        if (g.mask != f.mask || g.op != f.op)
          fail("warp collectives do not match: " + where(f) + " and " + where(g));
      }
      if (!complete) continue;
      if (!(f.mask >> l & 1u)) fail("a lane calls a warp collective at " + where(f) + " whose mask omits it");
      uint32_t ballot = 0;
      for (int m = 0; m < count; ++m)
        if ((f.mask >> m & 1u) && run.fibers[first + m].payload) ballot |= 1u << m;
      for (int m = 0; m < count; ++m) {
        if (!(f.mask >> m & 1u)) continue;
        Fiber& g = run.fibers[first + m];
        if (g.op == WarpOp::kBallot) {
          g.result = ballot;
        } else if (g.op == WarpOp::kSync) {
          g.result = 0;
        } else {
          int src = source_lane(g, m);
          // A lane that is absent or outside the mask has no defined value: hand out
          // all-ones bits (NaN for floats) so that a kernel relying on it shows up in tests.
          if (src >= count || !(f.mask >> src & 1u)) g.result = ~uint64_t{0};
          else g.result = run.fibers[first + src].payload;
        }
        g.state = State::kReady;
      }
      ++g_stats.warp_collectives;
      progressed = true;
    }
  }
  return progressed;
}

void run_block(BlockRun& run, int threads, const std::vector<int>& order) {
  for (int t : order) {
    Fiber& f = run.fibers[t];
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = static_cast<char*>(g_stacks[t]->base);
    f.context.uc_stack.ss_size = g_stacks[t]->bytes;
    f.context.uc_link = nullptr;
    makecontext(&f.context, fiber_main, 0);
    f.state = State::kReady;
  }
  for (;;) {
    for (int t : order) {
      Fiber& f = run.fibers[t];
      if (f.state != State::kReady) continue;
      threadIdx = f.tid;
      run.current = &f;
      swapcontext(&run.scheduler, &f.context);
      if (run.error) std::rethrow_exception(run.error);
    }
    // Every fiber now waits or is done.
    bool all_done = true, any_barrier = false, any_warp = false;
    const Fiber* at_barrier = nullptr;
    for (const Fiber& f : run.fibers) {
      if (f.state != State::kDone) all_done = false;
      if (f.state == State::kBarrier) { any_barrier = true; at_barrier = &f; }
      if (f.state == State::kWarp) any_warp = true;
    }
    if (all_done) return;
    if (any_warp && resolve_warps(run, threads)) continue;
    if (any_barrier && !any_warp) {
      for (Fiber& f : run.fibers) {
        if (f.state != State::kBarrier) continue;
        if (f.line != at_barrier->line || f.file != at_barrier->file)
          fail("divergent __syncthreads: threads wait at " + where(f) + " and at " + where(*at_barrier));
      }
      for (Fiber& f : run.fibers)
        if (f.state == State::kBarrier) f.state = State::kReady;
      ++g_stats.barriers;
      continue;
    }
    std::string msg = "deadlock: ";
    for (const Fiber& f : run.fibers) {
      if (f.state == State::kWarp) { msg += "a warp collective at " + where(f) + " waits for lanes"; break; }
    }
    if (any_barrier) msg += " while other threads wait at __syncthreads " + where(*at_barrier);
    fail(msg);
  }
}

}  // namespace

void syncthreads(const char* file, int line) {
  BlockRun* run = g_run;
  if (!run) fail("__syncthreads outside a kernel");
  run->current->state = State::kBarrier;
  run->current->file = file;
  run->current->line = line;
  yield_to_scheduler();
}

uint64_t warp_exchange(unsigned mask, WarpOp op, uint64_t payload, int arg, int width,
                       const char* file, int line) {
  BlockRun* run = g_run;
  if (!run) fail("warp collective outside a kernel");
  if (width <= 0 || width > 32 || (width & (width - 1)))
    fail("warp collective width must be a power of two up to 32, got " + std::to_string(width));
  Fiber* f = run->current;
  f->state = State::kWarp;
  f->mask = mask;
  f->op = op;
  f->payload = payload;
  f->arg = arg;
  f->width = width;
  f->file = file;
  f->line = line;
  yield_to_scheduler();
  return f->result;
}

unsigned char* dynamic_shared_memory() { return g_dynamic_shared.data(); }

void set_thread_order(ThreadOrder order, uint64_t seed) {
  g_order = order;
  g_seed = seed;
}
ThreadOrder thread_order() { return g_order; }
int64_t max_blocks() { return g_max_blocks; }
void set_max_blocks(int64_t blocks) { g_max_blocks = std::max<int64_t>(1, blocks); }
Stats stats() { return g_stats; }
void reset_stats() { g_stats = Stats{}; }

void launch(dim3 grid, dim3 block, size_t shared_bytes, void (*kernel_call)(void*), void* ctx) {
  if (g_run) fail("kernel launch from inside a kernel (dynamic parallelism) is not emulated");
  const int64_t threads = int64_t{block.x} * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || threads == 0 || threads > 1024 ||
      block.z > 64 || grid.y > 65535 || grid.z > 65535 || grid.x > 2147483647u)
    fail("invalid configuration argument: grid (" + std::to_string(grid.x) + ", " +
         std::to_string(grid.y) + ", " + std::to_string(grid.z) + "), block (" +
         std::to_string(block.x) + ", " + std::to_string(block.y) + ", " +
         std::to_string(block.z) + ")");
  if (shared_bytes > kMaxSharedBytes)
    fail("dynamic shared memory of " + std::to_string(shared_bytes) + " bytes exceeds 48 KiB");

  while (g_stacks.size() < static_cast<size_t>(threads)) g_stacks.push_back(std::make_unique<Stack>());
  g_dynamic_shared.assign(std::max<size_t>(shared_bytes, 1), 0xFF);

  BlockRun run;
  run.fibers.resize(threads);
  run.kernel_call = kernel_call;
  run.ctx = ctx;
  for (int t = 0; t < threads; ++t) {
    Fiber& f = run.fibers[t];
    f.linear = t;
    f.tid = uint3{static_cast<unsigned>(t % block.x), static_cast<unsigned>((t / block.x) % block.y),
                  static_cast<unsigned>(t / (block.x * block.y))};
  }
  std::vector<int> order(threads);
  std::iota(order.begin(), order.end(), 0);
  if (g_order == ThreadOrder::kReverse) std::reverse(order.begin(), order.end());
  std::mt19937_64 rng(g_seed);

  blockDim = block;
  gridDim = grid;
  g_run = &run;
  ++g_stats.launches;
  try {
    for (unsigned bz = 0; bz < grid.z; ++bz)
      for (unsigned by = 0; by < grid.y; ++by)
        for (unsigned bx = 0; bx < grid.x; ++bx) {
          blockIdx = uint3{bx, by, bz};
          if (g_order == ThreadOrder::kRandom) std::shuffle(order.begin(), order.end(), rng);
          // Uninitialized shared memory reads show up as NaN.
          std::fill(g_dynamic_shared.begin(), g_dynamic_shared.end(), 0xFF);
          run_block(run, static_cast<int>(threads), order);
          ++g_stats.blocks;
          g_stats.threads += threads;
        }
  } catch (...) {
    g_run = nullptr;
    throw;
  }
  g_run = nullptr;
}

}  // namespace pyseg::emu
