// The emulator's nvcuda::wmma (CUDA's warp matrix API of <mma.h>), so that tensor-core code
// compiles with g++ and runs under the fiber scheduler with the hardware's semantics:
//
// - A fragment belongs to a warp: each lane holds num_elements of its elements. CUDA leaves
//   the element-to-lane mapping unspecified; here lane l holds elements l, l + 32, l + 64...
//   of the fragment's matrix enumerated row by row. Code that only uses the documented API
//   (fill / load / store / mma, element-wise operations on x[]) cannot tell the difference.
// - load_matrix_sync, store_matrix_sync, mma_sync and fill_fragment are collective: every
//   lane of the warp must call the same one with the same pointer and ldm. Each is a warp
//   exchange here, so a lane that skips it (divergence) is reported as a mismatched or
//   deadlocked collective, and lanes passing different pointers / ldm are an error.
// - Each lane loads and stores its own elements, so memcheck and racecheck see every access
//   of a fragment load or store as an access of that lane (one valid schedule of the
//   hardware's collective access). Pointers must be 256-bit aligned and ldm a multiple of
//   16 bytes, as CUDA requires.
// - mma_sync computes D = A B + C in float: products of half / bfloat16 / tf32 inputs are
//   exact in float, summed in k order onto C. precision::tf32 fragments hold floats of
//   which the multiplier reads only the tf32 bits (the low 13 mantissa bits are dropped, as
//   the hardware ignores them); __float_to_tf32 rounds to nearest, ties away from zero
//   (cvt.rna.tf32.f32), which is what code should apply before the product.
//
// Shapes: m16n16k16 (half, bfloat16 inputs, float accumulators) and m16n16k8 (tf32).
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

// cuda_fp16.h / cuda_bf16.h's scalar types: the fragment element types of 16-bit inputs.
using __half = c10::Half;
using __nv_bfloat16 = c10::BFloat16;

namespace nvcuda::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };
namespace precision {
struct tf32 {};
}  // namespace precision

namespace emu_detail {

template <typename T>
struct storage {
  using type = T;
};
template <>
struct storage<precision::tf32> {
  using type = float;
};

template <typename Use, int M, int N, int K>
struct extent;
template <int M, int N, int K>
struct extent<matrix_a, M, N, K> {
  static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct extent<matrix_b, M, N, K> {
  static constexpr int rows = K, cols = N;
};
template <int M, int N, int K>
struct extent<accumulator, M, N, K> {
  static constexpr int rows = M, cols = N;
};

// The float a multiplier reads from a tf32 operand: sign, exponent and 10 mantissa bits.
__attribute__((no_sanitize_thread, always_inline)) inline float tf32_bits(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  u &= 0xffffe000u;
  std::memcpy(&v, &u, sizeof v);
  return v;
}

}  // namespace emu_detail

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
class fragment {
  using ext = emu_detail::extent<Use, M, N, K>;
  static_assert(M == 16 && N == 16 && (K == 16 || K == 8),
                "the emulator's wmma has the m16n16k16 and m16n16k8 shapes");
  static_assert(std::is_same_v<Use, accumulator> == std::is_void_v<Layout>,
                "matrix_a / matrix_b fragments name a layout, accumulators do not");
  static_assert(!std::is_same_v<Use, accumulator> ? (K == 8) == std::is_same_v<T, precision::tf32>
                                                   : std::is_same_v<T, float>,
                "m16n16k16 takes __half / __nv_bfloat16, m16n16k8 takes precision::tf32, "
                "accumulators are float");

 public:
  using element_type = typename emu_detail::storage<T>::type;
  static constexpr int rows = ext::rows, cols = ext::cols;
  static constexpr int num_elements = rows * cols / 32;
  element_type x[num_elements];
};

namespace emu_detail {

struct Lane {
  int warp, lane;
};

inline Lane lane_of_thread(const char* what, const char* file, int line) {
  const unsigned linear = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  if ((blockDim.x * blockDim.y * blockDim.z) % 32 != 0)
    ::pyseg::emu::kernel_error(what, "the block has a partial warp (wmma needs all 32 lanes)", -1,
                               file, line);
  return {static_cast<int>(linear / 32), static_cast<int>(linear % 32)};
}

// One collective step: every lane of the warp arrives with `value`; all must agree.
inline void agree(uint64_t value, const char* what, const char* file, int line) {
  const uint64_t first = ::pyseg::emu::shuffle(0xffffffffu, value, ::pyseg::emu::WarpOp::kIdx,
                                               0, 32, file, line);
  if (first != value)
    ::pyseg::emu::kernel_error(what,
                               "the lanes of a warp passed different arguments or reached "
                               "different fragment operations (a fragment operation is "
                               "collective: the same call, pointer and ldm in every lane)",
                               -1, file, line);
}

inline uint64_t tag(int op, unsigned ldm, int layout) {
  return (uint64_t{0x574d4d41u} << 32) | (uint64_t(op) << 24) | (uint64_t(layout) << 20) | ldm;
}

template <typename E>
inline void check_address(const E* p, unsigned ldm, const char* what, const char* file,
                          int line) {
  if (reinterpret_cast<uintptr_t>(p) % 32 != 0)
    ::pyseg::emu::kernel_error(what, "the pointer is not 256-bit aligned", -1, file, line);
  if ((ldm * sizeof(E)) % 16 != 0)
    ::pyseg::emu::kernel_error(what, "ldm is not a multiple of 16 bytes", ldm, file, line);
}

// The lanes' fragments, published for one mma_sync (one warp at a time runs between its two
// exchanges, and blocks switch only at barriers, so one table per OS thread suffices).
inline thread_local std::array<std::array<std::array<const void*, 3>, 32>, 32> g_mma_operands;

// Element e (row by row) of a fragment of the warp: lane e % 32 holds it, as its x[e / 32].
template <class Frag>
__attribute__((no_sanitize_thread, always_inline)) inline float element(const void* frag, int e) {
  return static_cast<float>(static_cast<const Frag*>(frag)->x[e / 32]);
}

template <class FragD, class FragA, class FragB, class FragC>
__attribute__((no_sanitize_thread, noinline)) void mma_compute(int warp, int lane,
                                                               float (&out)[FragD::num_elements]) {
  constexpr int kK = FragA::cols, kN = FragB::cols;
  static_assert(FragA::rows * kN / 32 == FragD::num_elements, "D is M x N");
  constexpr bool kTf32 = std::is_same_v<typename FragA::element_type, float>;
  const auto& lanes = g_mma_operands[warp];
  for (int t = 0; t < FragD::num_elements; ++t) {
    const int e = lane + 32 * t, r = e / kN, c = e % kN;
    float acc = element<FragC>(lanes[e % 32][2], e);
    for (int k = 0; k < kK; ++k) {
      const int ea = r * kK + k, eb = k * kN + c;
      float a = element<FragA>(lanes[ea % 32][0], ea);
      float b = element<FragB>(lanes[eb % 32][1], eb);
      if constexpr (kTf32) a = tf32_bits(a), b = tf32_bits(b);
      acc += a * b;  // the product is exact (at most 11 + 11 significant bits): a float sum
    }
    out[t] = acc;
  }
}

template <typename Frag>
__attribute__((no_sanitize_thread, noinline)) void publish(int warp, int lane, int which,
                                                           const Frag* frag) {
  g_mma_operands[warp][lane][which] = frag;
}

template <class Frag>
constexpr bool is_row_major = std::is_same_v<Frag, row_major>;

}  // namespace emu_detail

// Rounds to the nearest tf32 (10 mantissa bits), ties away from zero; NaN and infinity pass.
inline float __float_to_tf32(float in) {
  uint32_t u;
  std::memcpy(&u, &in, sizeof u);
  if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & 0xffffe000u;
  std::memcpy(&in, &u, sizeof in);
  return in;
}

template <typename Use, int M, int N, int K, typename T, typename L, typename V>
inline void fill_fragment(fragment<Use, M, N, K, T, L>& f, const V& value,
                          const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  (void)emu_detail::lane_of_thread("wmma::fill_fragment", file, line);
  emu_detail::agree(emu_detail::tag(1, 0, 0), "wmma::fill_fragment", file, line);
  for (auto& v : f.x) v = static_cast<typename fragment<Use, M, N, K, T, L>::element_type>(value);
}

// matrix_a / matrix_b: the layout is the fragment's. Element (r, c) at p[r * ldm + c]
// (row_major) or p[c * ldm + r] (col_major).
template <typename Use, int M, int N, int K, typename T, typename L, typename E>
inline void load_matrix_sync(fragment<Use, M, N, K, T, L>& f, const E* p, unsigned ldm,
                             const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  using Frag = fragment<Use, M, N, K, T, L>;
  static_assert(!std::is_void_v<L>, "an accumulator load names its memory layout");
  static_assert(std::is_same_v<E, typename Frag::element_type>, "pointer of the fragment's type");
  const emu_detail::Lane id = emu_detail::lane_of_thread("wmma::load_matrix_sync", file, line);
  emu_detail::agree(reinterpret_cast<uintptr_t>(p), "wmma::load_matrix_sync", file, line);
  emu_detail::agree(emu_detail::tag(2, ldm, emu_detail::is_row_major<L>),
                    "wmma::load_matrix_sync",
                    file, line);
  emu_detail::check_address(p, ldm, "wmma::load_matrix_sync", file, line);
  for (int t = 0; t < Frag::num_elements; ++t) {
    const int e = id.lane + 32 * t, r = e / Frag::cols, c = e % Frag::cols;
    f.x[t] = emu_detail::is_row_major<L> ? p[r * ldm + c] : p[c * ldm + r];
  }
}

template <int M, int N, int K>
inline void load_matrix_sync(fragment<accumulator, M, N, K, float>& f, const float* p,
                             unsigned ldm, layout_t layout, const char* file = __builtin_FILE(),
                             int line = __builtin_LINE()) {
  using Frag = fragment<accumulator, M, N, K, float>;
  const emu_detail::Lane id = emu_detail::lane_of_thread("wmma::load_matrix_sync", file, line);
  emu_detail::agree(reinterpret_cast<uintptr_t>(p), "wmma::load_matrix_sync", file, line);
  emu_detail::agree(emu_detail::tag(3, ldm, layout), "wmma::load_matrix_sync", file, line);
  emu_detail::check_address(p, ldm, "wmma::load_matrix_sync", file, line);
  for (int t = 0; t < Frag::num_elements; ++t) {
    const int e = id.lane + 32 * t, r = e / Frag::cols, c = e % Frag::cols;
    f.x[t] = layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
  }
}

template <int M, int N, int K>
inline void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f,
                              unsigned ldm, layout_t layout, const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
  using Frag = fragment<accumulator, M, N, K, float>;
  const emu_detail::Lane id = emu_detail::lane_of_thread("wmma::store_matrix_sync", file, line);
  emu_detail::agree(reinterpret_cast<uintptr_t>(p), "wmma::store_matrix_sync", file, line);
  emu_detail::agree(emu_detail::tag(4, ldm, layout), "wmma::store_matrix_sync", file, line);
  emu_detail::check_address(p, ldm, "wmma::store_matrix_sync", file, line);
  for (int t = 0; t < Frag::num_elements; ++t) {
    const int e = id.lane + 32 * t, r = e / Frag::cols, c = e % Frag::cols;
    (layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[t];
  }
}

// D = A B + C (D may be C). Two exchanges: after the first every lane's operands are
// published; each lane computes its elements of D; after the second every lane has read
// the operands, so D (possibly C itself) can be written.
template <int M, int N, int K, typename TA, typename LA, typename TB, typename LB>
inline void mma_sync(fragment<accumulator, M, N, K, float>& d,
                     const fragment<matrix_a, M, N, K, TA, LA>& a,
                     const fragment<matrix_b, M, N, K, TB, LB>& b,
                     const fragment<accumulator, M, N, K, float>& c,
                     const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  static_assert(std::is_same_v<TA, TB>, "A and B have the same input type");
  using FragD = fragment<accumulator, M, N, K, float>;
  const emu_detail::Lane id = emu_detail::lane_of_thread("wmma::mma_sync", file, line);
  emu_detail::publish(id.warp, id.lane, 0, &a);
  emu_detail::publish(id.warp, id.lane, 1, &b);
  emu_detail::publish(id.warp, id.lane, 2, &c);
  emu_detail::agree(emu_detail::tag(5, 0, 0), "wmma::mma_sync", file, line);
  float out[FragD::num_elements];
  emu_detail::mma_compute<FragD, fragment<matrix_a, M, N, K, TA, LA>,
                          fragment<matrix_b, M, N, K, TB, LB>, FragD>(id.warp, id.lane, out);
  emu_detail::agree(emu_detail::tag(6, 0, 0), "wmma::mma_sync", file, line);
  for (int t = 0; t < FragD::num_elements; ++t) d.x[t] = out[t];
}

}  // namespace nvcuda::wmma
