// Per-thread scratch buffers that live on across calls.
//
// A kernel that allocates a few megabytes and frees them on every call pays for it in page
// faults: glibc returns large freed blocks to the system, so each call maps and zeroes fresh
// pages (on DeconvNet's 512-channel transposed convolutions that was about a fifth of the
// op's time). A thread's buffer grows to the largest size asked of it and is kept; its
// contents are not initialized and do not survive the next request of the same Slot on the
// same thread, so one Slot serves one buffer at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <utility>

namespace pyseg::cpu {

// Cache-line alignment for GEMM operands: a 64-byte vector load from a 16-byte aligned
// buffer (what operator new and malloc give) spans two cache lines, and the packed panels
// are read one full vector at a time.
constexpr std::size_t kOperandAlignment = 64;

// std::allocator's interface with kOperandAlignment-aligned storage. Elements are
// default-initialized (resize() leaves floats unset): buffers are written before they are read.
template <typename T>
struct AlignedAllocator {
  using value_type = T;
  AlignedAllocator() = default;
  template <typename U>
  AlignedAllocator(const AlignedAllocator<U>&) {}  // NOLINT: rebinding is implicit
  T* allocate(std::size_t n) {
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(kOperandAlignment)));
  }
  void deallocate(T* p, std::size_t) { ::operator delete(p, std::align_val_t(kOperandAlignment)); }
  template <typename U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
  template <typename U>
  bool operator==(const AlignedAllocator<U>&) const { return true; }
};

template <typename T>
struct AlignedDelete {
  void operator()(T* p) const { ::operator delete[](p, std::align_val_t(kOperandAlignment)); }
};

template <typename T, int Slot>
T* thread_scratch(int64_t n) {
  thread_local std::unique_ptr<T[], AlignedDelete<T>> buf;
  thread_local int64_t capacity = 0;
  if (n > capacity) {
    // Uninitialized: callers write before they read.
    buf.reset(new (std::align_val_t(kOperandAlignment)) T[n]);
    capacity = n;
  }
  return buf.get();
}

}  // namespace pyseg::cpu
