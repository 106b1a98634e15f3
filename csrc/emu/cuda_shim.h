// The CUDA-on-CPU shim: lets kernel code written for nvcc compile with g++ and run under the
// emulator's fiber scheduler (csrc/emu/runtime.cpp). See csrc/emu/README.md for the model.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
// A block-scope thread_local is implicitly static: one object per instantiation, shared by
// all fibers (threads of a block) that run on this OS thread, like CUDA shared memory.
#define __shared__ thread_local
#define __constant__

struct uint3 {
  unsigned int x, y, z;
};

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1)
      : x(x_), y(y_), z(z_) {}
};

// The current fiber's coordinates; the scheduler sets them before each switch.
extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local dim3 blockDim;
extern thread_local dim3 gridDim;
constexpr int warpSize = 32;

// The vector types the kernels load 128 bits at a time (one 16-byte access, as on the GPU).
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(16) double2 {
  double x, y;
};

// The packed 16-bit pairs of cuda_fp16.h / cuda_bf16.h: one 32-bit word, .x the low half.
struct alignas(4) __half2 {
  c10::Half x, y;
};
struct alignas(4) __nv_bfloat162 {
  c10::BFloat16 x, y;
};

namespace pyseg::emu {

// Warp-collective kinds, see runtime.cpp.
enum class WarpOp : int { kIdx, kUp, kDown, kXor, kSync, kBallot };

void syncthreads(const char* file, int line);
uint64_t warp_exchange(unsigned mask, WarpOp op, uint64_t payload, int arg, int width,
                       const char* file, int line);
unsigned char* dynamic_shared_memory();
// Throws "emulator: <api> at file:line: <message>" (+ " (value)" when value >= 0) from kernel
// code: the message is built outside the kernel's instrumented code.
[[noreturn]] void kernel_error(const char* api, const char* message, int64_t value,
                               const char* file, int line);
// Bracket the read-modify-write of an emulated atomic: the sanitizer records one atomic
// access instead of the plain load and store inside.
void atomic_begin(const void* address, size_t bytes);
void atomic_end();

template <typename T>
T shuffle(unsigned mask, T value, WarpOp op, int arg, int width, const char* file, int line) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffle of a large type");
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  uint64_t out = warp_exchange(mask, op, bits, arg, width, file, line);
  T result;
  std::memcpy(&result, &out, sizeof(T));
  return result;
}

}  // namespace pyseg::emu

#define __syncthreads() ::pyseg::emu::syncthreads(__FILE__, __LINE__)
#define __syncwarp(...) \
  ((void)::pyseg::emu::warp_exchange(PYSEG_EMU_MASK_(__VA_ARGS__), ::pyseg::emu::WarpOp::kSync, 0, 0, 32, __FILE__, __LINE__))
#define PYSEG_EMU_MASK_(...) PYSEG_EMU_MASK_SEL_(__VA_ARGS__ __VA_OPT__(,) 0xffffffffu, 0)
#define PYSEG_EMU_MASK_SEL_(m, ...) (m)
#define __shfl_sync(mask, v, lane, ...) \
  ::pyseg::emu::shuffle((mask), (v), ::pyseg::emu::WarpOp::kIdx, (lane), PYSEG_EMU_WIDTH_(__VA_ARGS__), __FILE__, __LINE__)
#define __shfl_up_sync(mask, v, delta, ...) \
  ::pyseg::emu::shuffle((mask), (v), ::pyseg::emu::WarpOp::kUp, (delta), PYSEG_EMU_WIDTH_(__VA_ARGS__), __FILE__, __LINE__)
#define __shfl_down_sync(mask, v, delta, ...) \
  ::pyseg::emu::shuffle((mask), (v), ::pyseg::emu::WarpOp::kDown, (delta), PYSEG_EMU_WIDTH_(__VA_ARGS__), __FILE__, __LINE__)
#define __shfl_xor_sync(mask, v, lanemask, ...) \
  ::pyseg::emu::shuffle((mask), (v), ::pyseg::emu::WarpOp::kXor, (lanemask), PYSEG_EMU_WIDTH_(__VA_ARGS__), __FILE__, __LINE__)
#define PYSEG_EMU_WIDTH_(...) PYSEG_EMU_MASK_SEL_(__VA_ARGS__ __VA_OPT__(,) 32, 0)
#define __ballot_sync(mask, pred)                                                               \
  static_cast<unsigned>(::pyseg::emu::warp_exchange((mask), ::pyseg::emu::WarpOp::kBallot, \
                                                    (pred) ? 1 : 0, 0, 32, __FILE__, __LINE__))
#define __any_sync(mask, pred) (__ballot_sync((mask), (pred)) != 0u)
#define __all_sync(mask, pred) (__ballot_sync((mask), (pred)) == static_cast<unsigned>(mask))

// Threads of a block only switch at barriers and warp collectives, so a plain
// read-modify-write is atomic here; atomic_begin/atomic_end tell the sanitizer what it is.
#define PYSEG_EMU_ATOMIC_(name, update)                  \
  template <typename T, typename U>                      \
  inline T name(T* address, U value) {                   \
    ::pyseg::emu::atomic_begin(address, sizeof(T));      \
    T old = *address;                                    \
    update;                                              \
    ::pyseg::emu::atomic_end();                          \
    return old;                                          \
  }
PYSEG_EMU_ATOMIC_(atomicAdd, *address = static_cast<T>(old + static_cast<T>(value)))
PYSEG_EMU_ATOMIC_(atomicSub, *address = static_cast<T>(old - static_cast<T>(value)))
PYSEG_EMU_ATOMIC_(atomicMax, if (static_cast<T>(value) > old) *address = static_cast<T>(value))
PYSEG_EMU_ATOMIC_(atomicMin, if (static_cast<T>(value) < old) *address = static_cast<T>(value))
PYSEG_EMU_ATOMIC_(atomicExch, *address = static_cast<T>(value))
#undef PYSEG_EMU_ATOMIC_
// The packed 16-bit atomicAdd: one 32-bit atomic access; each half is added and rounded
// to its 16-bit type on its own, as RED.ADD.F16x2 / .BF16x2 do.
#define PYSEG_EMU_PACKED_ATOMIC_ADD_(T)                                        \
  inline T atomicAdd(T* address, T value) {                                     \
    ::pyseg::emu::atomic_begin(address, sizeof(T));                             \
    T old = *address;                                                           \
    *address = T{static_cast<decltype(old.x)>(static_cast<float>(old.x) +       \
                                              static_cast<float>(value.x)),     \
                 static_cast<decltype(old.y)>(static_cast<float>(old.y) +       \
                                              static_cast<float>(value.y))};    \
    ::pyseg::emu::atomic_end();                                                 \
    return old;                                                                 \
  }
PYSEG_EMU_PACKED_ATOMIC_ADD_(__half2)
PYSEG_EMU_PACKED_ATOMIC_ADD_(__nv_bfloat162)
#undef PYSEG_EMU_PACKED_ATOMIC_ADD_
template <typename T, typename U, typename V>
inline T atomicCAS(T* address, U compare, V value) {
  ::pyseg::emu::atomic_begin(address, sizeof(T));
  T old = *address;
  if (old == static_cast<T>(compare)) *address = static_cast<T>(value);
  ::pyseg::emu::atomic_end();
  return old;
}

template <typename T>
inline T __ldg(const T* p) {
  return *p;
}
inline void __threadfence() {}
inline void __threadfence_block() {}

// nvcuda::wmma: the warp matrix (tensor-core) fragments of <mma.h>.
#include "emu/wmma_shim.h"
