// The emulator's scheduler. Blocks run on the calling OS thread; the threads of a block run
// as cooperative fibers (ucontext). A fiber runs until it reaches a barrier, a warp
// collective or its end; then the scheduler resumes the next one. When every live fiber of
// a block waits, the scheduler releases the barrier (all at the same __syncthreads) or
// completes the warp collectives whose lanes have all arrived; anything else is a deadlock
// or a divergent barrier and is reported as an error.
//
// Blocks run one after another, except in the interleaved order: there up to
// kResidentBlocks blocks are resident at once (each in a slot with its own fibers, stacks
// and dynamic shared memory) and the scheduler picks a random resident block after every
// barrier release, like an SM that runs several blocks. The sanitizer (sanitizer.cpp) is
// told of every switch so that it knows which thread makes each access.
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

#include "emu/sanitizer.h"

thread_local uint3 threadIdx{0, 0, 0};
thread_local uint3 blockIdx{0, 0, 0};
thread_local dim3 blockDim{1, 1, 1};
thread_local dim3 gridDim{1, 1, 1};

namespace pyseg::emu {
namespace {

constexpr size_t kStackBytes = 256 * 1024;
constexpr size_t kMaxSharedBytes = detail::kDynamicSharedCapacity;  // the default limit without an opt-in
constexpr int kResidentBlocks = 4;             // blocks in flight in the interleaved order

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

// One resident block: its fibers (threads) and dynamic shared memory.
struct BlockRun {
  std::vector<Fiber> fibers;
  ucontext_t scheduler;
  Fiber* current = nullptr;
  void (*kernel_call)(void*) = nullptr;
  void* ctx = nullptr;
  std::exception_ptr error;
  int slot = 0;
  uint3 index{0, 0, 0};
  int64_t linear = 0;
  uint64_t interval = 0;
  std::vector<unsigned char> dynamic_shared;
};

thread_local BlockRun* g_run = nullptr;
thread_local std::vector<std::unique_ptr<Stack>> g_stacks;
uint64_t g_next_interval = 1;  // barrier intervals are numbered across blocks and launches

ThreadOrder g_order = ThreadOrder::kForward;
uint64_t g_seed = 0;
int64_t g_max_blocks = 8;
Stats g_stats;

PYSEG_EMU_NOT_INSTRUMENTED void fiber_main() {
  BlockRun* run = g_run;
  Fiber* self = run->current;
  try {
    detail::g_current.in_kernel = true;
    run->kernel_call(run->ctx);
    detail::g_current.in_kernel = false;
  } catch (...) {
    detail::g_current.in_kernel = false;
    if (!run->error) run->error = std::current_exception();
  }
  self->state = State::kDone;
  swapcontext(&self->context, &run->scheduler);
  // Never resumed.
}

// Suspends the calling fiber and returns to the scheduler; kernel code resumes afterwards.
PYSEG_EMU_NOT_INSTRUMENTED void yield_to_scheduler() {
  BlockRun* run = g_run;
  swapcontext(&run->current->context, &run->scheduler);
  detail::g_current.in_kernel = true;
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
      // Divergent: the mask leaves out lanes of the warp that have not exited.
      bool divergent = false;
      for (int m = 0; m < count; ++m)
        if (!(f.mask >> m & 1u) && run.fibers[first + m].state != State::kDone) divergent = true;
      detail::note_warp_collective(divergent);
      progressed = true;
    }
  }
  return progressed;
}

// Prepares the fibers of `run` (a block in slot run.slot) to start the kernel.
void start_block(BlockRun& run, uint3 index, const dim3& grid, size_t shared_bytes) {
  const int threads = static_cast<int>(run.fibers.size());
  run.index = index;
  run.linear = index.x + int64_t{grid.x} * (index.y + int64_t{grid.y} * index.z);
  run.interval = g_next_interval++;
  // Uninitialized shared memory reads show up as NaN. The buffer always has the 48 KiB a
  // block may ask for, so the sanitizer sees an overrun as an overrun of shared memory.
  if (run.dynamic_shared.size() != kMaxSharedBytes) run.dynamic_shared.resize(kMaxSharedBytes);
  std::fill_n(run.dynamic_shared.begin(), shared_bytes, 0xFF);
  for (int t = 0; t < threads; ++t) {
    Fiber& f = run.fibers[t];
    const Stack& stack = *g_stacks[run.slot * threads + t];
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = static_cast<char*>(stack.base);
    f.context.uc_stack.ss_size = stack.bytes;
    f.context.uc_link = nullptr;
    makecontext(&f.context, fiber_main, 0);
    f.state = State::kReady;
  }
  detail::begin_block(run.slot);
}

enum class Step { kWarps, kBarrier, kDone };

// Runs the ready fibers of one block until all wait or are done, then completes warp
// collectives or releases the barrier.
Step step(BlockRun& run, const std::vector<int>& order) {
  const int threads = static_cast<int>(run.fibers.size());
  const int slot_base = run.slot * threads;
  blockIdx = run.index;
  g_run = &run;
  detail::Current& cur = detail::g_current;
  cur.bid = run.index;
  cur.block = run.linear;
  cur.slot = run.slot;
  cur.interval = run.interval;
  cur.dynamic_shared = run.dynamic_shared.data();
  for (;;) {
    for (int t : order) {
      Fiber& f = run.fibers[t];
      if (f.state != State::kReady) continue;
      threadIdx = f.tid;
      run.current = &f;
      const Stack& stack = *g_stacks[slot_base + t];
      cur.thread = t;
      cur.tid = f.tid;
      cur.stack_lo = static_cast<const char*>(stack.base);
      cur.stack_hi = cur.stack_lo + stack.bytes;
      swapcontext(&run.scheduler, &f.context);
      detail::g_current.in_kernel = false;
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
    if (all_done) return Step::kDone;
    if (any_warp && resolve_warps(run, threads)) return Step::kWarps;
    if (any_barrier && !any_warp) {
      for (Fiber& f : run.fibers) {
        if (f.state != State::kBarrier) continue;
        if (f.line != at_barrier->line || f.file != at_barrier->file)
          fail("divergent __syncthreads: threads wait at " + where(f) + " and at " + where(*at_barrier));
      }
      for (Fiber& f : run.fibers)
        if (f.state == State::kBarrier) f.state = State::kReady;
      ++g_stats.barriers;
      detail::note_barrier();
      run.interval = cur.interval = g_next_interval++;
      return Step::kBarrier;
    }
    std::string msg = "deadlock: ";
    for (const Fiber& f : run.fibers) {
      if (f.state == State::kWarp) { msg += "a warp collective at " + where(f) + " waits for lanes"; break; }
    }
    if (any_barrier) msg += " while other threads wait at __syncthreads " + where(*at_barrier);
    fail(msg);
  }
}

std::vector<uint3> block_indices(const dim3& grid) {
  std::vector<uint3> blocks;
  blocks.reserve(size_t{grid.x} * grid.y * grid.z);
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) blocks.push_back(uint3{bx, by, bz});
  return blocks;
}

// Blocks one after another, in grid order.
void run_sequential(std::vector<BlockRun>& slots, const dim3& grid, size_t shared_bytes,
                    std::vector<int>& order, std::mt19937_64& rng) {
  BlockRun& run = slots[0];
  const int threads = static_cast<int>(run.fibers.size());
  for (const uint3& index : block_indices(grid)) {
    if (g_order == ThreadOrder::kRandom) std::shuffle(order.begin(), order.end(), rng);
    start_block(run, index, grid, shared_bytes);
    while (step(run, order) != Step::kDone) {
    }
    detail::end_block(run.slot);
    ++g_stats.blocks;
    g_stats.threads += threads;
  }
}

// Up to kResidentBlocks blocks in flight, taken from the grid in a random order; after each
// barrier release (or block end) the scheduler continues with a random resident block.
void run_interleaved(std::vector<BlockRun>& slots, const dim3& grid, size_t shared_bytes,
                     std::mt19937_64& rng) {
  std::vector<uint3> pending = block_indices(grid);
  std::shuffle(pending.begin(), pending.end(), rng);
  const int threads = static_cast<int>(slots[0].fibers.size());
  std::vector<std::vector<int>> orders(slots.size(), std::vector<int>(threads));
  std::vector<int> resident;  // slots that hold a running block
  size_t next = 0;
  int shared_owner = -1;  // slot whose static shared memory is live
  auto admit = [&](int slot) {
    if (shared_owner >= 0 && shared_owner != slot) detail::switch_static_shared(shared_owner, slot);
    shared_owner = slot;
    std::iota(orders[slot].begin(), orders[slot].end(), 0);
    std::shuffle(orders[slot].begin(), orders[slot].end(), rng);
    start_block(slots[slot], pending[next++], grid, shared_bytes);
    resident.push_back(slot);
  };
  for (int s = 0; s < static_cast<int>(slots.size()) && next < pending.size(); ++s) admit(s);
  while (!resident.empty()) {
    const size_t pick = std::uniform_int_distribution<size_t>(0, resident.size() - 1)(rng);
    const int slot = resident[pick];
    if (shared_owner != slot) detail::switch_static_shared(shared_owner, slot);
    shared_owner = slot;
    Step result;
    while ((result = step(slots[slot], orders[slot])) == Step::kWarps) {
    }
    if (result != Step::kDone) continue;
    detail::end_block(slot);
    ++g_stats.blocks;
    g_stats.threads += threads;
    resident.erase(resident.begin() + static_cast<std::ptrdiff_t>(pick));
    if (next < pending.size()) admit(slot);
  }
}

}  // namespace

PYSEG_EMU_NOT_INSTRUMENTED void syncthreads(const char* file, int line) {
  detail::g_current.in_kernel = false;
  BlockRun* run = g_run;
  if (!run) fail("__syncthreads outside a kernel");
  run->current->state = State::kBarrier;
  run->current->file = file;
  run->current->line = line;
  yield_to_scheduler();
}

PYSEG_EMU_NOT_INSTRUMENTED uint64_t warp_exchange(unsigned mask, WarpOp op, uint64_t payload,
                                                  int arg, int width, const char* file, int line) {
  detail::g_current.in_kernel = false;
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

PYSEG_EMU_NOT_INSTRUMENTED void kernel_error(const char* api, const char* message,
                                             int64_t value, const char* file, int line) {
  detail::g_current.in_kernel = false;
  std::string what = std::string(api) + " at " + (file ? file : "?") + ":" + std::to_string(line) +
                     ": " + message;
  if (value >= 0) what += " (" + std::to_string(value) + ")";
  fail(what);
}

PYSEG_EMU_NOT_INSTRUMENTED unsigned char* dynamic_shared_memory() {
  return detail::g_current.dynamic_shared;
}

namespace detail {

[[noreturn]] void abort_fiber(const std::string& error) {
  g_current.in_kernel = false;
  BlockRun* run = g_run;
  if (!run->error) run->error = std::make_exception_ptr(std::runtime_error("emulator: " + error));
  run->current->state = State::kDone;
  swapcontext(&run->current->context, &run->scheduler);
  std::abort();  // never resumed
}

}  // namespace detail

void set_thread_order(ThreadOrder order, uint64_t seed) {
  g_order = order;
  g_seed = seed;
}
ThreadOrder thread_order() { return g_order; }
int64_t max_blocks() { return g_max_blocks; }
void set_max_blocks(int64_t blocks) { g_max_blocks = std::max<int64_t>(1, blocks); }
Stats stats() { return g_stats; }
void reset_stats() {
  g_stats = Stats{};
  detail::clear_launch_counters();
}

void launch(dim3 grid, dim3 block, size_t shared_bytes, void (*kernel_call)(void*), void* ctx,
            size_t ctx_bytes, const void* kernel) {
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

  const int64_t blocks = int64_t{grid.x} * grid.y * grid.z;
  const int resident = g_order == ThreadOrder::kInterleaved
                           ? static_cast<int>(std::min<int64_t>(kResidentBlocks, blocks))
                           : 1;
  while (g_stacks.size() < static_cast<size_t>(threads * resident))
    g_stacks.push_back(std::make_unique<Stack>());

  std::vector<BlockRun> slots(resident);
  for (int r = 0; r < resident; ++r) {
    BlockRun& run = slots[r];
    run.slot = r;
    run.fibers.resize(threads);
    run.kernel_call = kernel_call;
    run.ctx = ctx;
    for (int t = 0; t < threads; ++t) {
      Fiber& f = run.fibers[t];
      f.linear = t;
      f.tid = detail::unflatten(t, block);
    }
  }
  std::vector<int> order(threads);
  std::iota(order.begin(), order.end(), 0);
  if (g_order == ThreadOrder::kReverse) std::reverse(order.begin(), order.end());
  std::mt19937_64 rng(g_seed);

  blockDim = block;
  gridDim = grid;
  ++g_stats.launches;
  detail::begin_launch(kernel, grid, block, shared_bytes, ctx, ctx_bytes, resident);
  try {
    if (g_order == ThreadOrder::kInterleaved) run_interleaved(slots, grid, shared_bytes, rng);
    else run_sequential(slots, grid, shared_bytes, order, rng);
  } catch (...) {
    g_run = nullptr;
    detail::end_launch(false);
    throw;
  }
  g_run = nullptr;
  detail::end_launch(true);
}

}  // namespace pyseg::emu
