// Per-channel sums of an (N, C, spatial...) tensor, the bias gradient of the CPU transposed
// convolutions (2-D and 3-D).
//
// Summed in double: a bias followed by batch norm has a true gradient of zero, and a float
// sum of its many cancelling terms would leave a rounding residue far above torch's. The
// order of the sums is fixed by the shape alone (never by the thread count), and the
// additions are independent lanes that vectorize: a single running sum per channel waits
// on each addition's latency (it took 10-15x torch's time on U-Net's bias gradients).
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace pyseg::cpu {

// out[c] = sum over n and the `plane` positions of g; g is N x C x plane (NCHW) or
// N x plane x C (channels_last).
template <typename T>
void channel_sums(const T* g, int64_t N, int64_t C, int64_t plane, bool channels_last, T* out) {
  if (channels_last) {
    // Pixel-major: fixed chunks of pixels, each summed into its own row of C partial sums
    // (pixel by pixel, the channels as vector lanes), then the rows added in order.
    constexpr int64_t kChunk = 2048;
    const int64_t pixels = N * plane, chunks = std::max<int64_t>(1, (pixels + kChunk - 1) / kChunk);
    std::vector<double> part(chunks * C, 0.0);
    at::parallel_for(0, chunks, 1, [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k) {
        double* acc = part.data() + k * C;
        const int64_t end = std::min(pixels, (k + 1) * kChunk);
        for (int64_t i = k * kChunk; i < end; ++i) {
          const T* s = g + i * C;
          for (int64_t c = 0; c < C; ++c) acc[c] += static_cast<double>(s[c]);
        }
      }
    });
    for (int64_t c = 0; c < C; ++c) {
      double total = part[c];
      for (int64_t k = 1; k < chunks; ++k) total += part[k * C + c];
      out[c] = static_cast<T>(total);
    }
    return;
  }
  // NCHW: eight interleaved partial sums per channel (position i goes to lane i % 8 of its
  // image's plane), combined in order at the end.
  constexpr int64_t kLanes = 8;
  at::parallel_for(0, C, 1, [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) {
      double lane[kLanes] = {};
      for (int64_t n = 0; n < N; ++n) {
        const T* s = g + (n * C + c) * plane;
        int64_t i = 0;
        for (; i + kLanes <= plane; i += kLanes)
          for (int64_t l = 0; l < kLanes; ++l) lane[l] += static_cast<double>(s[i + l]);
        for (; i < plane; ++i) lane[i % kLanes] += static_cast<double>(s[i]);
      }
      double total = 0;
      for (int64_t l = 0; l < kLanes; ++l) total += lane[l];
      out[c] = static_cast<T>(total);
    }
  });
}

}  // namespace pyseg::cpu
