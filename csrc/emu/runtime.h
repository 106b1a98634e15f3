// The emulator's host side: runs a grid of blocks, the threads of each block as fibers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "emu/cuda_shim.h"

namespace pyseg::emu {

// Order in which the scheduler resumes the fibers of a block. Running a test under two
// orders exposes many intra-block races: a correct kernel gives the same answer.
enum class ThreadOrder { kForward, kReverse, kRandom };

void set_thread_order(ThreadOrder order, uint64_t seed = 0);
ThreadOrder thread_order();
// The launcher caps 1-D grids at this many blocks so grid-stride loops are exercised.
int64_t max_blocks();
void set_max_blocks(int64_t blocks);

// Counters for tests: kernels launched, blocks and threads run, since the last reset.
struct Stats {
  int64_t launches = 0, blocks = 0, threads = 0, barriers = 0, warp_collectives = 0;
};
Stats stats();
void reset_stats();

// Runs `kernel_call(ctx)` once per thread of every block, with CUDA's coordinates set.
// Throws std::runtime_error for an invalid configuration, a divergent __syncthreads, a
// deadlock or a fiber stack overflow, and rethrows any exception thrown by a thread.
void launch(dim3 grid, dim3 block, size_t shared_bytes, void (*kernel_call)(void*), void* ctx);

}  // namespace pyseg::emu
