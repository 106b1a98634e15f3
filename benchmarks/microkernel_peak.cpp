// The GEMM micro-kernel's own speed, its operands in cache: the loop of pyseg's AVX-512
// micro-kernel (csrc/common/gemm_cpu_kernel.cpp: MR rows of A broadcast, NV vectors of B, k in
// order) on one 256-step k block, A cycling through 64 packed panels (L2), B one 32 KB panel
// (L1), C 64 tiles. Compare with the FMA peak of benchmarks/gemm_peak.py: what the GEMM loses
// beyond this is outside the loop (packing passes, C traffic, edge tiles).
//
//     g++ -O3 -mavx512f -mavx512dq -mavx512bw -mavx512vl -mfma -std=c++17 \
//         benchmarks/microkernel_peak.cpp -o /tmp/microkernel_peak && /tmp/microkernel_peak
#include <immintrin.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
template <int MR, int NV, bool EMB>
__attribute__((noinline)) void kern(long k, const float* __restrict a, const float* __restrict b, float* __restrict c, long ldc) {
  __m512 acc[MR][NV];
  for (int i = 0; i < MR; ++i) for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_setzero_ps();
  for (long p = 0; p < k; ++p) {
    __m512 bv[NV];
    for (int j = 0; j < NV; ++j) bv[j] = _mm512_loadu_ps(b + j * 16);
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
      if (EMB) {
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) {
          __m512 av;
          asm("vbroadcastss %1, %0" : "=v"(av) : "m"(a[i]));
          acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
        }
      } else {
        __m512 av = _mm512_set1_ps(a[i]);
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
      }
    }
    a += MR; b += NV * 16;
  }
  for (int i = 0; i < MR; ++i) for (int j = 0; j < NV; ++j) _mm512_storeu_ps(c + i * ldc + j * 16, _mm512_add_ps(acc[i][j], _mm512_loadu_ps(c + i * ldc + j * 16)));
}
// The same loop reading MR rows of a row-major A in place (lda apart), as pyseg does for an
// im2col matrix or an implicit conv's shifted input; PF: prefetch each row's next line.
template <int MR, int NV, int PF>
__attribute__((noinline)) void kern_rows(long k, const float* __restrict a, long lda,
                                         const float* __restrict b, float* __restrict c, long ldc) {
  __m512 acc[MR][NV];
  for (int i = 0; i < MR; ++i) for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_setzero_ps();
  for (long p = 0; p < k; ++p) {
    if (PF == 1 && p % 16 == 0)
      for (int i = 0; i < MR; ++i) __builtin_prefetch(a + i * lda + p + 32);
    // PF 2: the next tile's rows (the MR rows after these), one line per row every 16 steps.
    if (PF == 2 && p % 16 == 0)
      for (int i = 0; i < MR; ++i) __builtin_prefetch(a + (MR + i) * lda + p, 0, 2);
    __m512 bv[NV];
    for (int j = 0; j < NV; ++j) bv[j] = _mm512_loadu_ps(b + j * 16);
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
      __m512 av = _mm512_set1_ps(a[i * lda + p]);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
    }
    b += NV * 16;
  }
  for (int i = 0; i < MR; ++i) for (int j = 0; j < NV; ++j) _mm512_storeu_ps(c + i * ldc + j * 16, _mm512_add_ps(acc[i][j], _mm512_loadu_ps(c + i * ldc + j * 16)));
}

template <int MR, int NV, int PF>
void run_rows(const char* name, long lda, long tiles = 64) {
  const long k = 256;
  float* a = (float*)aligned_alloc(64, MR * lda * 4 * tiles + 4096);
  float* b = (float*)aligned_alloc(64, NV * 16 * k * 4);
  float* c = (float*)aligned_alloc(64, MR * NV * 16 * 4 * tiles);
  for (long i = 0; i < MR * lda * tiles; ++i) a[i] = 1e-6f * (i % 7);
  for (long i = 0; i < NV * 16 * k; ++i) b[i] = 1e-6f * (i % 5);
  memset(c, 0, MR * NV * 16 * 4 * tiles);
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    const long iters = 20000;
    for (long it = 0; it < iters; ++it)
      kern_rows<MR, NV, PF>(k, a + (it % tiles) * MR * lda, lda, b, c + (it % tiles) * MR * NV * 16, NV * 16);
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 2.0 * MR * NV * 16 * k * iters / dt / 1e9);
  }
  printf("%s %dx%d, A rows %ld floats apart: %.1f GFLOP/s\n", name, MR, NV * 16, lda, best);
}

template <int MR, int NV, bool EMB>
void run(const char* name) {
  const long k = 256;
  float* a = (float*)aligned_alloc(64, MR * k * 4 * 64);
  float* b = (float*)aligned_alloc(64, NV * 16 * k * 4);
  float* c = (float*)aligned_alloc(64, MR * NV * 16 * 4 * 64);
  for (long i = 0; i < MR * k * 64; ++i) a[i] = 1e-6f * (i % 7);
  for (long i = 0; i < NV * 16 * k; ++i) b[i] = 1e-6f * (i % 5);
  memset(c, 0, MR * NV * 16 * 4 * 64);
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    const long iters = 20000;
    for (long it = 0; it < iters; ++it) kern<MR, NV, EMB>(k, a + (it % 64) * MR * k, b, c + (it % 64) * MR * NV * 16, NV * 16);
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 2.0 * MR * NV * 16 * k * iters / dt / 1e9);
  }
  printf("%s %dx%d: %.1f GFLOP/s\n", name, MR, NV * 16, best);
}
int main() {
  run<14, 2, false>("broadcast");       // pyseg's AVX-512 float32 tile
  run<14, 2, true>("broadcast per FMA");  // a broadcast per FMA instead of one per row
  run<12, 2, false>("broadcast");
  run<8, 3, false>("broadcast");
  run<6, 4, false>("broadcast");
  run<24, 1, false>("broadcast");
  run_rows<14, 2, 0>("rows in place (L2)", 256);
  run_rows<14, 2, 1>("rows in place (L2), prefetched ahead", 256);
  run_rows<14, 2, 0>("rows in place (L3/memory: 64 MB)", 256, 4096);
  run_rows<14, 2, 1>("rows in place (L3/memory), prefetched ahead", 256, 4096);
  run_rows<14, 2, 2>("rows in place (L3/memory), next tile prefetched", 256, 4096);
  return 0;
}
