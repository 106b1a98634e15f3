// Choosing the CPU capability at run time; see cpu_capability.h.
#include "common/cpu_capability.h"

#include <ATen/Version.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <mutex>

#include <unistd.h>

namespace pyseg::cpu {
namespace {

Capability cpuid_capability() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  // The AVX-512 subsets torch's AVX512 kernels (and ours) use.
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("fma"))
    return Capability::AVX512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("f16c"))
    return Capability::AVX2;
#endif
  return Capability::Default;
}

// torch's choice honours ATEN_CPU_CAPABILITY (and the OS support torch checks for).
Capability torch_capability() {
  const std::string t = at::get_cpu_capability();
  if (t == "AVX512") return Capability::AVX512;
  if (t == "AVX2") return Capability::AVX2;
  return Capability::Default;
}

Capability best_compiled() {
  Capability best = Capability::Default;
  for (Capability c : compiled_capabilities()) best = std::max(best, c);
  return best;
}

std::atomic<int> g_active{-1};
std::once_flag g_init;

void init_from_environment() {
  Capability c = std::min({supported_capability(), best_compiled()});
  if (const char* env = std::getenv("PYSEG_CPU_CAPABILITY"); env && *env) {
    const Capability want = parse_capability(env, "PYSEG_CPU_CAPABILITY");
    if (want > c) {
      TORCH_WARN("PYSEG_CPU_CAPABILITY=", env, " asks for more than this CPU/build supports; using ",
                 capability_name(c));
    } else {
      c = want;
    }
  }
  g_active.store(static_cast<int>(c));
}

}  // namespace

const char* capability_name(Capability c) {
  switch (c) {
    case Capability::AVX512: return "avx512";
    case Capability::AVX2: return "avx2";
    default: return "default";
  }
}

Capability parse_capability(const std::string& name, const char* what) {
  std::string s;
  for (char ch : name) s += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (s == "default") return Capability::Default;
  if (s == "avx2") return Capability::AVX2;
  if (s == "avx512") return Capability::AVX512;
  TORCH_CHECK(false, what, " must be one of default, avx2, avx512; got '", name, "'");
}

Capability supported_capability() {
  static const Capability c = std::min(cpuid_capability(), torch_capability());
  return c;
}

std::vector<Capability> compiled_capabilities() {
  std::vector<Capability> out{Capability::Default};
#ifdef PYSEG_CPU_X86
  out.push_back(Capability::AVX2);
  out.push_back(Capability::AVX512);
#endif
  return out;
}

int64_t l1_cache_bytes() {
#ifdef _SC_LEVEL1_DCACHE_SIZE
  static const int64_t v = sysconf(_SC_LEVEL1_DCACHE_SIZE);
  if (v >= 8192) return v;
#endif
  return 32 * 1024;
}

int64_t l2_cache_bytes() {
#ifdef _SC_LEVEL2_CACHE_SIZE
  static const int64_t v = sysconf(_SC_LEVEL2_CACHE_SIZE);
  if (v >= 65536) return v;
#endif
  return 512 * 1024;
}

Capability active_capability() {
  std::call_once(g_init, init_from_environment);
  return static_cast<Capability>(g_active.load(std::memory_order_relaxed));
}

Capability set_active_capability(Capability c) {
  std::call_once(g_init, init_from_environment);
  c = std::min({c, supported_capability(), best_compiled()});
  g_active.store(static_cast<int>(c));
  return c;
}

}  // namespace pyseg::cpu
