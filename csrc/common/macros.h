// Macros shared by host code and kernels. Safe to include from .cpp, .cu and the emulator.
#pragma once

#if defined(__CUDACC__) || defined(PYSEG_EMULATOR)
#define PYSEG_HOST_DEVICE __host__ __device__
#define PYSEG_DEVICE __device__
#else
#define PYSEG_HOST_DEVICE
#define PYSEG_DEVICE
#endif

#define PYSEG_INLINE PYSEG_HOST_DEVICE inline

namespace pyseg {
// std::min/max are not device functions; these are usable on both sides.
template <typename T>
PYSEG_INLINE T min_of(T a, T b) { return b < a ? b : a; }
template <typename T>
PYSEG_INLINE T max_of(T a, T b) { return a < b ? b : a; }
}  // namespace pyseg
