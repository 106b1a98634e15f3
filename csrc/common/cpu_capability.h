// Run-time CPU capability dispatch (the scheme of ATen's DispatchStub, reduced to what pyseg
// needs).
//
// A hot CPU kernel lives in a file named `*_cpu_kernel.cpp`. setup.py does not compile that
// file directly: it compiles one small wrapper per capability (build/cpu_capability/*.cpp),
// each of which sets the target ISA with `#pragma GCC target`, defines
//     CPU_CAPABILITY            DEFAULT | AVX2 | AVX512  (namespace of the variant)
//     CPU_CAPABILITY_AVX2 / CPU_CAPABILITY_AVX512        (what at::vec::Vectorized reads)
//     PYSEG_CPU_CAPABILITY_INDEX  0 | 1 | 2
// and `#include`s the kernel file. Everything a kernel file defines goes into namespace
// `pyseg::cpu::CPU_CAPABILITY` (no ODR clash between the variants), and the file registers
// its functions into stubs declared in ordinary headers:
//     PYSEG_REGISTER_CPU_KERNEL(gemm_f32_stub, &gemm<float>);
// Callers (compiled for baseline x86-64) call `gemm_f32_stub()(args...)`, which picks the
// variant of the capability in use.
//
// The capability in use is the best one that (a) the CPU supports (cpuid), (b) torch's own
// choice allows (at::get_cpu_capability(), so ATEN_CPU_CAPABILITY lowers pyseg too) and
// (c) PYSEG_CPU_CAPABILITY=default|avx2|avx512 allows. Asking for more than the CPU has
// clamps with a warning; an unknown value is an error naming the variable.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace pyseg::cpu {

enum class Capability : int { Default = 0, AVX2 = 1, AVX512 = 2 };
constexpr int kNumCapabilities = 3;

const char* capability_name(Capability c);
// The capability the kernels run with now.
Capability active_capability();
// The best capability this CPU (and torch's setting) supports.
Capability supported_capability();
// Capabilities compiled into this build (DEFAULT always; AVX2/AVX512 on x86-64).
std::vector<Capability> compiled_capabilities();
// Switch the variant in use (tests and benchmarks); clamps to what the CPU supports and
// returns the capability actually selected.
Capability set_active_capability(Capability c);
Capability parse_capability(const std::string& name, const char* what);
// Per-core data cache sizes in bytes (sysconf; typical values if the OS does not say).
int64_t l1_cache_bytes();
int64_t l2_cache_bytes();

// One function pointer per capability. Constant-initialized (constexpr constructor), so
// registrations from static initializers in any translation unit are safe.
template <typename Fn>
struct CpuStub {
  std::array<Fn, kNumCapabilities> table{};
  constexpr CpuStub() = default;
  // The variant for capability `c`, falling back to the best lower one compiled.
  Fn for_capability(Capability c) const {
    for (int i = static_cast<int>(c); i >= 0; --i)
      if (table[i]) return table[i];
    return nullptr;
  }
  Fn operator()() const { return for_capability(active_capability()); }
};

struct CpuStubRegistrar {
  template <typename Fn>
  CpuStubRegistrar(CpuStub<Fn>& stub, int index, Fn fn) { stub.table[index] = fn; }
};

}  // namespace pyseg::cpu

#ifdef PYSEG_CPU_CAPABILITY_INDEX
#define PYSEG_CPU_CONCAT_(a, b) a##b
#define PYSEG_CPU_CONCAT(a, b) PYSEG_CPU_CONCAT_(a, b)
// Inside a *_cpu_kernel.cpp: register this variant of a kernel.
#define PYSEG_REGISTER_CPU_KERNEL(stub, fn)                                  \
  static ::pyseg::cpu::CpuStubRegistrar PYSEG_CPU_CONCAT(registrar_, __LINE__)( \
      stub, PYSEG_CPU_CAPABILITY_INDEX, fn)
#endif
