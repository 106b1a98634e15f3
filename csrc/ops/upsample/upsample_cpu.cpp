// upsample2d (nearest, bilinear, bicubic) and bed_of_nails CPU kernels.
//
// Everything is one separable resampling driven by per-axis tap tables (upsample.h):
// forward uses the taps of each output index, backward the transposed tables, so the
// backward is a gather (deterministic, no atomics) with the same code and parallelism.
//
// Work is split over (image or plane, destination row) pairs. For each destination row the
// source rows it reads are blended first (a contiguous, vectorizable pass over whole rows,
// accumulated in the op-math type), then every destination pixel gathers its horizontal
// taps from that blended row. For NCHW a "row" is one plane's row (C = 1 below); for
// channels_last it is a whole NHWC row, and the horizontal pass runs over C contiguous
// channels per tap, so both layouts share the code and channels_last vectorizes over C.
// For bicubic scale 2 this costs about 2 + 4 multiply-adds per output instead of 16.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "ops/upsample/upsample.h"

namespace pyseg::upsample {
namespace {

struct Geometry {
  int64_t groups;  // N * C for NCHW, N for channels_last
  int64_t C;       // 1 for NCHW, channels for channels_last
  int64_t src_h, src_w, dst_h, dst_w;
};

// dst[g, oh, ow, c] = sum_a th.weight[a] * sum_b tw.weight[b] * src[g, th.index[a], tw.index[b], c]
template <typename scalar_t, typename T>
void resample(const scalar_t* src, scalar_t* dst, const Geometry& g, const Table<T>& th,
              const Table<T>& tw) {
  const int64_t C = g.C;
  const int64_t src_row = g.src_w * C, dst_row = g.dst_w * C;
  const int64_t rows = g.groups * g.dst_h;
  // Aim for tasks of ~16k source+destination elements so small planes still parallelize.
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, src_row + dst_row));
  const int64_t* h_off = th.offsets.data();
  const int64_t* h_idx = th.index.data();
  const T* h_w = th.weight.data();
  const int64_t* w_off = tw.offsets.data();
  const int64_t* w_idx = tw.index.data();
  const T* w_w = tw.weight.data();
  // Fixed tap count along w (forward tables) lets the horizontal loop unroll.
  const int64_t fixed_w = [&] {
    const int64_t k = g.dst_w > 0 ? w_off[1] - w_off[0] : 0;
    for (int64_t j = 0; j < g.dst_w; ++j)
      if (w_off[j + 1] - w_off[j] != k) return int64_t{-1};
    return k;
  }();

  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    std::vector<T> buffer(src_row);
    T* tmp = buffer.data();
    for (int64_t r = begin; r < end; ++r) {
      const int64_t grp = r / g.dst_h, oh = r % g.dst_h;
      scalar_t* out = dst + r * dst_row;
      const int64_t a0 = h_off[oh], a1 = h_off[oh + 1];
      if (a0 == a1) {
        std::fill(out, out + dst_row, scalar_t(0));
        continue;
      }
      const scalar_t* base = src + grp * g.src_h * src_row;
      // Vertical pass: blend the source rows of this destination row.
      const T* line;
      if constexpr (std::is_same_v<scalar_t, T>) {
        if (a1 - a0 == 1 && h_w[a0] == T(1)) {
          line = base + h_idx[a0] * src_row;  // a plain copy of one row: read it in place
          goto horizontal;
        }
      }
      {
        const scalar_t* s0 = base + h_idx[a0] * src_row;
        const T w0 = h_w[a0];
        if (a1 - a0 == 2) {
          const scalar_t* s1 = base + h_idx[a0 + 1] * src_row;
          const T w1 = h_w[a0 + 1];
          for (int64_t j = 0; j < src_row; ++j)
            tmp[j] = w0 * static_cast<T>(s0[j]) + w1 * static_cast<T>(s1[j]);
        } else {
          for (int64_t j = 0; j < src_row; ++j) tmp[j] = w0 * static_cast<T>(s0[j]);
          for (int64_t a = a0 + 1; a < a1; ++a) {
            const scalar_t* s = base + h_idx[a] * src_row;
            const T w = h_w[a];
            for (int64_t j = 0; j < src_row; ++j) tmp[j] += w * static_cast<T>(s[j]);
          }
        }
        line = tmp;
      }
    horizontal:
      if (C == 1) {
        if (fixed_w == 2) {
          for (int64_t ow = 0; ow < g.dst_w; ++ow) {
            const int64_t b = 2 * ow;
            out[ow] = static_cast<scalar_t>(w_w[b] * line[w_idx[b]] + w_w[b + 1] * line[w_idx[b + 1]]);
          }
        } else if (fixed_w == 4) {
          for (int64_t ow = 0; ow < g.dst_w; ++ow) {
            const int64_t b = 4 * ow;
            out[ow] = static_cast<scalar_t>(
                w_w[b] * line[w_idx[b]] + w_w[b + 1] * line[w_idx[b + 1]] +
                w_w[b + 2] * line[w_idx[b + 2]] + w_w[b + 3] * line[w_idx[b + 3]]);
          }
        } else {
          for (int64_t ow = 0; ow < g.dst_w; ++ow) {
            T acc = 0;
            for (int64_t b = w_off[ow]; b < w_off[ow + 1]; ++b) acc += w_w[b] * line[w_idx[b]];
            out[ow] = static_cast<scalar_t>(acc);
          }
        }
      } else {
        // channels_last: each tap is a contiguous run of C channels.
        for (int64_t ow = 0; ow < g.dst_w; ++ow) {
          scalar_t* o = out + ow * C;
          const int64_t b0 = w_off[ow], b1 = w_off[ow + 1];
          if (b0 == b1) {
            std::fill(o, o + C, scalar_t(0));
            continue;
          }
          if (b1 - b0 == 2) {
            const T* l0 = line + w_idx[b0] * C;
            const T* l1 = line + w_idx[b0 + 1] * C;
            const T v0 = w_w[b0], v1 = w_w[b0 + 1];
            for (int64_t c = 0; c < C; ++c) o[c] = static_cast<scalar_t>(v0 * l0[c] + v1 * l1[c]);
          } else if (b1 - b0 == 4) {
            const T* l0 = line + w_idx[b0] * C;
            const T* l1 = line + w_idx[b0 + 1] * C;
            const T* l2 = line + w_idx[b0 + 2] * C;
            const T* l3 = line + w_idx[b0 + 3] * C;
            const T v0 = w_w[b0], v1 = w_w[b0 + 1], v2 = w_w[b0 + 2], v3 = w_w[b0 + 3];
            for (int64_t c = 0; c < C; ++c)
              o[c] = static_cast<scalar_t>(v0 * l0[c] + v1 * l1[c] + v2 * l2[c] + v3 * l3[c]);
          } else if constexpr (std::is_same_v<scalar_t, T>) {
            // Accumulate in the output row itself (same type, no rounding in between).
            const T* l = line + w_idx[b0] * C;
            const T v = w_w[b0];
            for (int64_t c = 0; c < C; ++c) o[c] = v * l[c];
            for (int64_t b = b0 + 1; b < b1; ++b) {
              const T* lb = line + w_idx[b] * C;
              const T vb = w_w[b];
              for (int64_t c = 0; c < C; ++c) o[c] += vb * lb[c];
            }
          } else {
            for (int64_t c = 0; c < C; ++c) {
              T s = 0;
              for (int64_t b = b0; b < b1; ++b) s += w_w[b] * line[w_idx[b] * C + c];
              o[c] = static_cast<scalar_t>(s);
            }
          }
        }
      }
    }
  });
}

// Runs `resample` from `src` (N, C, src_h, src_w) into a new (N, C, dst_h, dst_w) tensor in
// the layout given by `channels_last`, with tables built by `make_tables.template
// operator()<T>()`.
template <class MakeTables>
at::Tensor run(const at::Tensor& src_, int64_t N, int64_t C, int64_t src_h, int64_t src_w,
               int64_t dst_h, int64_t dst_w, bool channels_last, const MakeTables& make_tables,
               const char* name) {
  const auto format = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  at::Tensor src = src_.contiguous(format);
  at::Tensor dst = at::empty({N, C, dst_h, dst_w}, src.options().memory_format(format));
  if (dst.numel() == 0) return dst;
  const Geometry g{channels_last ? N : N * C, channels_last ? C : 1, src_h, src_w, dst_h, dst_w};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, src.scalar_type(), "upsample2d", [&] {
    using T = at::opmath_type<scalar_t>;
    const Tables<T> t = make_tables.template operator()<T>();
    resample<scalar_t, T>(src.const_data_ptr<scalar_t>(), dst.data_ptr<scalar_t>(), g, t.h, t.w);
  });
  return dst;
}

at::Tensor upsample2d_cpu(const at::Tensor& input, at::IntArrayRef output_size,
                          c10::string_view mode, bool align_corners,
                          std::optional<double> scale_h, std::optional<double> scale_w) {
  const Mode m = parse_mode(mode);
  const Shape s = check_forward(input, output_size);
  return run(input, s.batch, s.channels, s.in_h, s.in_w, s.out_h, s.out_w, s.channels_last,
             [&]<typename T>() { return upsample_tables<T>(m, s, align_corners, scale_h, scale_w, false); },
             "upsample2d");
}

at::Tensor upsample2d_backward_cpu(const at::Tensor& grad_output, at::IntArrayRef input_size,
                                   c10::string_view mode, bool align_corners,
                                   std::optional<double> scale_h, std::optional<double> scale_w) {
  const Mode m = parse_mode(mode);
  const Shape s = check_backward(grad_output, input_size);
  return run(grad_output, s.batch, s.channels, s.out_h, s.out_w, s.in_h, s.in_w, s.channels_last,
             [&]<typename T>() { return upsample_tables<T>(m, s, align_corners, scale_h, scale_w, true); },
             "upsample2d_backward");
}

at::Tensor bed_of_nails_cpu(const at::Tensor& input, at::IntArrayRef scale_factor) {
  const NailsShape s = check_nails(input, scale_factor, false);
  return run(input, s.batch, s.channels, s.in_h, s.in_w, s.in_h * s.s_h, s.in_w * s.s_w,
             s.channels_last,
             [&]<typename T>() {
               return Tables<T>{nails_table<T>(s.in_h, s.s_h), nails_table<T>(s.in_w, s.s_w)};
             },
             "bed_of_nails");
}

at::Tensor bed_of_nails_backward_cpu(const at::Tensor& grad_output, at::IntArrayRef scale_factor) {
  const NailsShape s = check_nails(grad_output, scale_factor, true);
  return run(grad_output, s.batch, s.channels, s.in_h * s.s_h, s.in_w * s.s_w, s.in_h, s.in_w,
             s.channels_last,
             [&]<typename T>() {
               return Tables<T>{nails_backward_table<T>(s.in_h, s.s_h),
                                nails_backward_table<T>(s.in_w, s.s_w)};
             },
             "bed_of_nails_backward");
}

}  // namespace

TORCH_LIBRARY_IMPL(pyseg, CPU, m) {
  m.impl("upsample2d", &upsample2d_cpu);
  m.impl("upsample2d_backward", &upsample2d_backward_cpu);
  m.impl("bed_of_nails", &bed_of_nails_cpu);
  m.impl("bed_of_nails_backward", &bed_of_nails_backward_cpu);
}

}  // namespace pyseg::upsample
