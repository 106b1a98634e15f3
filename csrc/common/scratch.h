// Per-thread scratch buffers that live on across calls.
//
// A kernel that allocates a few megabytes and frees them on every call pays for it in page
// faults: glibc returns large freed blocks to the system, so each call maps and zeroes fresh
// pages (on DeconvNet's 512-channel transposed convolutions that was about a fifth of the
// op's time). A thread's buffer grows to the largest size asked of it and is kept; its
// contents are not initialized and do not survive the next request of the same Slot on the
// same thread, so one Slot serves one buffer at a time.
#pragma once

#include <cstdint>
#include <memory>

namespace pyseg::cpu {

template <typename T, int Slot>
T* thread_scratch(int64_t n) {
  thread_local std::unique_ptr<T[]> buf;
  thread_local int64_t capacity = 0;
  if (n > capacity) {
    buf.reset(new T[n]);  // uninitialized: callers write before they read
    capacity = n;
  }
  return buf.get();
}

}  // namespace pyseg::cpu
