// The emulator's host side: runs a grid of blocks, the threads of each block as fibers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "emu/cuda_shim.h"

namespace pyseg::emu {

// Order in which the scheduler resumes the fibers of a block. Running a test under two
// orders exposes many intra-block races: a correct kernel gives the same answer.
// kInterleaved keeps several blocks resident at once, each with its threads in a random
// order, and switches between blocks in a random order at their barriers (blocks have no
// order on a GPU).
enum class ThreadOrder { kForward, kReverse, kRandom, kInterleaved };

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

// What the instrumented build (PYSEG_EMU_CHECKS=1, the default) checks on every access a
// kernel makes. memcheck: global accesses inside a buffer of the launch and aligned, shared
// accesses inside the block's shared memory. racecheck: shared-memory races inside a
// barrier interval, global races between blocks of a launch. counters: per launch
// memory-request statistics (launch_counters()). A violation raises std::runtime_error.
struct Checks {
  bool memcheck = true, racecheck = true, counters = false;
};
void set_checks(const Checks& checks);
Checks checks();
bool instrumented();  // whether kernels were compiled with the access hooks

// Global memory an op's launches may touch: emu_op.h registers the op's tensor arguments and
// every CPU allocation made while the op runs (its outputs and workspaces).
void register_buffer(const void* begin, size_t bytes, std::string name);
void unregister_buffer(const void* begin);

// Memory statistics of one launch, as Nsight Compute counts them: a request is one warp
// executing one memory instruction; a sector is an aligned 32-byte piece of global memory;
// a shared request takes one wavefront per distinct 4-byte word in its busiest bank.
// "ideal" is what the same bytes would cost packed contiguously and aligned.
struct LaunchCounters {
  std::string kernel;
  dim3 grid, block;
  int64_t global_load_requests = 0, global_load_sectors = 0, global_load_ideal_sectors = 0;
  int64_t global_store_requests = 0, global_store_sectors = 0, global_store_ideal_sectors = 0;
  int64_t shared_requests = 0, shared_wavefronts = 0, shared_ideal_wavefronts = 0;
  int64_t atomics = 0;  // per thread
  int64_t barriers = 0;
  int64_t warp_collectives = 0, divergent_collectives = 0;  // collectives whose mask leaves out live lanes
};
// Launches since the last reset_stats() that ran with counters on.
std::vector<LaunchCounters> launch_counters();

// Runs `kernel_call(ctx)` once per thread of every block, with CUDA's coordinates set.
// `ctx` (ctx_bytes long) holds the kernel's arguments: the sanitizer lets kernels read it
// and takes the buffers it points into as the launch's buffers. `kernel` names the kernel
// in reports. Throws std::runtime_error for an invalid configuration, a divergent
// __syncthreads, a deadlock, a memcheck or racecheck violation, and rethrows any exception
// thrown by a thread.
void launch(dim3 grid, dim3 block, size_t shared_bytes, void (*kernel_call)(void*), void* ctx,
            size_t ctx_bytes, const void* kernel);

}  // namespace pyseg::emu
