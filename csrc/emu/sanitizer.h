// What the scheduler (runtime.cpp) tells the sanitizer (sanitizer.cpp) and back. Not for
// kernels or ops: they see only cuda_shim.h and runtime.h.
//
// Kernel translation units are compiled with -fsanitize=thread, which makes GCC call
// __tsan_readN / __tsan_writeN(address) before every load and store. sanitizer.cpp defines
// those functions itself (libtsan is never linked): while a fiber runs kernel code they
// classify the address (the fiber's own stack, the launch's parameters, shared memory, a
// global buffer of the op) and run memcheck, racecheck and the counters; at any other time
// (host code of the same translation units) they return at once. See csrc/emu/README.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "emu/runtime.h"

// Functions that run while a fiber is in kernel code must not be instrumented themselves.
#define PYSEG_EMU_NOT_INSTRUMENTED __attribute__((no_sanitize_thread, noinline))

namespace pyseg::emu::detail {

// The (x, y, z) index of the `linear`-th thread of a block (extent: the block's dimensions)
// or block of a grid (extent: the grid's), x varying fastest as in CUDA.
inline uint3 unflatten(int64_t linear, const dim3& extent) {
  return uint3{static_cast<unsigned>(linear % extent.x),
               static_cast<unsigned>((linear / extent.x) % extent.y),
               static_cast<unsigned>(linear / (int64_t{extent.x} * extent.y))};
}

// Size of each block's dynamic shared memory buffer (the most a launch may ask for).
constexpr size_t kDynamicSharedCapacity = 48 * 1024;

// The thread (fiber) whose kernel code runs now; written by the scheduler at each switch.
struct Current {
  bool in_kernel = false;  // hooks act only while this is set
  bool in_atomic = false;  // between atomic_begin and atomic_end
  int thread = 0;          // linear thread index in the block
  uint3 tid{0, 0, 0};
  uint3 bid{0, 0, 0};
  int64_t block = 0;       // linear block index in the grid
  int slot = 0;            // resident-block slot (interleaved order runs several at once)
  uint64_t interval = 0;   // barrier interval of the block (unique across blocks and launches)
  const char* stack_lo = nullptr;
  const char* stack_hi = nullptr;
  unsigned char* dynamic_shared = nullptr;  // kDynamicSharedCapacity bytes, shared_bytes in use
};
extern thread_local Current g_current;

// Switches from the running fiber back to the scheduler for good, after recording `error`
// as the launch's error (the scheduler rethrows it). Defined in runtime.cpp.
[[noreturn]] void abort_fiber(const std::string& error);

// Launch lifecycle, called by the scheduler.
void begin_launch(const void* kernel, dim3 grid, dim3 block, size_t shared_bytes,
                  const void* params, size_t param_bytes, int resident_slots);
void end_launch(bool completed);
// A block starts in a resident slot: resets its counter records and fills its static shared
// memory with 0xFF (reads of uninitialised shared memory show up as NaN).
void begin_block(int slot);
void end_block(int slot);
// Interleaved order: the static shared memory of the block in `from` is saved and that of
// `to` restored (static __shared__ variables are one object per OS thread).
void switch_static_shared(int from, int to);
void note_barrier();
void clear_launch_counters();
void note_warp_collective(bool divergent);

}  // namespace pyseg::emu::detail
