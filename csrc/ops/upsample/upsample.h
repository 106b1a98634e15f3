// Host-side checks, shapes and per-axis sampling tables for upsample2d (nearest, bilinear,
// bicubic) and bed_of_nails, shared by the CPU kernels, the CUDA launcher and the emulator.
//
// Every 2-D resampling here is separable: out[oh, ow] = sum_a sum_b wh[a] * ww[b] *
// in[ih[a], iw[b]], where (ih[a], wh[a]) are the taps of output row oh and (iw[b], ww[b]) the
// taps of output column ow. A `Table` holds those taps for one axis in CSR form (offsets into
// flat index/weight arrays), so one kernel serves all modes and both directions:
//   * forward: the taps of each output index, computed exactly as ATen does
//     (area_pixel_compute_scale / area_pixel_compute_source_index in the op-math type,
//     nearest_idx in float), in ATen's tap order, duplicates (clamped bicubic taps) kept;
//   * backward: the transposed table -- for each input index the outputs that read it, a
//     contiguous range per axis because source coordinates are monotone in the output
//     index, with the weights of duplicate taps summed. The backward is then a gather (each
//     input element sums the outputs that read it): deterministic, no atomics.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string_view>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>
#include <c10/util/safe_numerics.h>

#include "ops/upsample/upsample_taps.h"

namespace pyseg::upsample {

// The number of elements of an output shape whose sizes come from user arguments; a
// ValueError naming `cause` when a size or the product does not fit in int64 (the Python
// fake kernels raise the same, see pyseg.ops._library.checked_shape).
inline int64_t checked_numel(const char* op, std::initializer_list<int64_t> sizes,
                             const char* cause) {
  int64_t numel = 1;
  for (int64_t s : sizes) {
    TORCH_CHECK_VALUE(!c10::mul_overflows(numel, s, &numel), op,
                      ": the output shape does not fit in int64 (", cause, " too large)");
  }
  return numel;
}

// upsample2d's modes (the N-d op takes torch's mode names, see parse_nd_mode).
inline TapMode parse_mode(std::string_view mode) {
  if (mode == "nearest") return TapMode::Nearest;
  if (mode == "bilinear") return TapMode::Linear;
  if (mode == "bicubic") return TapMode::Cubic;
  TORCH_CHECK(false, "upsample2d: mode must be one of 'nearest', 'bilinear', 'bicubic', got '",
              mode, "'");
}

struct Shape {
  int64_t batch = 0, channels = 0, in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  bool channels_last = false;
};

inline at::MemoryFormat memory_format(const Shape& s) {
  return s.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

inline void check_sizes(const Shape& s) {
  // Same condition and words as ATen's upsample_2d_shape_check.
  TORCH_CHECK(s.in_h > 0 && s.in_w > 0 && s.out_h > 0 && s.out_w > 0,
              "Input and output sizes should be greater than 0, but got input (H: ", s.in_h,
              ", W: ", s.in_w, ") output (H: ", s.out_h, ", W: ", s.out_w, ")");
}

inline Shape check_forward(const at::Tensor& input, at::IntArrayRef output_size) {
  TORCH_CHECK(output_size.size() == 2,
              "upsample2d: output_size must have 2 elements (height, width), but got ",
              output_size.size());
  TORCH_CHECK(input.dim() == 4, "upsample2d: input must be a 4-D (N, C, H, W) tensor, but got ",
              input.dim(), " dimensions");
  TORCH_CHECK(at::isFloatingType(input.scalar_type()),
              "upsample2d: input must be a floating point tensor, but got ", input.scalar_type());
  TORCH_CHECK(input.numel() != 0 || (input.size(1) != 0 && input.size(2) != 0 && input.size(3) != 0),
              "Non-empty 4D data tensor expected but got a tensor with sizes ", input.sizes());
  Shape s{input.size(0), input.size(1), input.size(2), input.size(3), output_size[0],
          output_size[1], input.suggest_memory_format() == at::MemoryFormat::ChannelsLast};
  check_sizes(s);
  checked_numel("upsample2d", {s.batch, s.channels, s.out_h, s.out_w}, "output_size");
  return s;
}

inline Shape check_backward(const at::Tensor& grad_output, at::IntArrayRef input_size) {
  TORCH_CHECK(input_size.size() == 4,
              "upsample2d_backward: input_size must have 4 elements (N, C, H, W), but got ",
              input_size.size());
  TORCH_CHECK(grad_output.dim() == 4,
              "upsample2d_backward: grad_output must be a 4-D tensor, but got ", grad_output.dim(),
              " dimensions");
  TORCH_CHECK(at::isFloatingType(grad_output.scalar_type()),
              "upsample2d_backward: grad_output must be a floating point tensor, but got ",
              grad_output.scalar_type());
  TORCH_CHECK(grad_output.size(0) == input_size[0] && grad_output.size(1) == input_size[1],
              "upsample2d_backward: grad_output ", grad_output.sizes(),
              " does not match input_size ", input_size, " in the batch and channel dimensions");
  Shape s{input_size[0],        input_size[1],        input_size[2], input_size[3],
          grad_output.size(2), grad_output.size(3),
          grad_output.suggest_memory_format() == at::MemoryFormat::ChannelsLast};
  check_sizes(s);
  return s;
}

// ---- per-axis tables -------------------------------------------------------------------

template <typename T>
struct Table {
  std::vector<int64_t> offsets;  // size n + 1: taps of entry j are [offsets[j], offsets[j+1])
  std::vector<int64_t> index;
  std::vector<T> weight;
  int64_t size() const { return static_cast<int64_t>(offsets.size()) - 1; }
  int64_t max_taps() const {
    int64_t m = 0;
    for (int64_t j = 0; j < size(); ++j) m = std::max(m, offsets[j + 1] - offsets[j]);
    return m;
  }
};

// ATen's compute_scales_value / area_pixel_compute_scale / area_pixel_compute_source_index
// (aten/src/ATen/native/UpSample.h), in the same type and operation order so that float32
// tables match torch's bit for bit.
template <typename T>
T compute_scales_value(std::optional<double> scale, int64_t in, int64_t out) {
  return (scale.has_value() && *scale > 0.) ? static_cast<T>(1.0 / *scale)
                                            : (static_cast<T>(in) / out);
}

template <typename T>
T area_pixel_compute_scale(int64_t in, int64_t out, bool align_corners,
                           std::optional<double> scale) {
  if (align_corners) return out > 1 ? static_cast<T>(in - 1) / (out - 1) : static_cast<T>(0);
  return compute_scales_value<T>(scale, in, out);
}

template <typename T>
T area_pixel_compute_source_index(T scale, int64_t dst, bool align_corners, bool cubic) {
  if (align_corners) return scale * dst;
  const T src = scale * (dst + static_cast<T>(0.5)) - static_cast<T>(0.5);
  // Linear modes clamp a negative coordinate to 0; cubic keeps it (its weights depend on it).
  return (!cubic && src < static_cast<T>(0)) ? T(0) : src;
}

// The rule of one axis (upsample_taps.h): scales and the number of taps per output index.
template <typename T>
TapRule<T> make_rule(TapMode mode, int64_t in, int64_t out, bool align_corners,
                     std::optional<double> scale) {
  TapRule<T> r{mode, in, out, align_corners,
               area_pixel_compute_scale<T>(in, out, align_corners, scale),
               compute_scales_value<float>(scale, in, out), T(0), 1};
  switch (mode) {
    case TapMode::Nearest:
    case TapMode::NearestFloor:
    case TapMode::NearestExact: r.taps = 1; break;
    case TapMode::Linear: r.taps = 2; break;
    case TapMode::Cubic: r.taps = 4; break;
    case TapMode::Area:
      for (int64_t o = 0; o < out; ++o) {
        const int64_t len = ((o + 1) * in + out - 1) / out - (o * in) / out;
        r.taps = std::max<int>(r.taps, static_cast<int>(len));
      }
      break;
    case TapMode::LinearAA:
    case TapMode::CubicAA: {
      if (in == out) {  // ATen's antialiased kernels skip an axis that keeps its size
        r.mode = TapMode::Nearest;
        break;
      }
      // _compute_index_ranges_weights: support and max_interp_size, in the op-math type.
      const int interp_size = mode == TapMode::LinearAA ? 2 : 4;
      r.support = r.ratio >= T(1) ? static_cast<T>((interp_size * 0.5) * r.ratio)
                                  : static_cast<T>(interp_size * 0.5);
      r.taps = static_cast<int>(std::ceil(r.support)) * 2 + 1;
      break;
    }
  }
  return r;
}

// Taps of every output index of one axis (forward direction).
template <typename T>
Table<T> forward_table(const TapRule<T>& r) {
  Table<T> t;
  const int64_t taps = r.taps;
  t.offsets.resize(r.out + 1);
  t.index.resize(r.out * taps);
  t.weight.resize(r.out * taps);
  for (int64_t o = 0; o <= r.out; ++o) t.offsets[o] = o * taps;
  for (int64_t o = 0; o < r.out; ++o) output_taps(r, o, &t.index[o * taps], &t.weight[o * taps]);
  return t;
}

template <typename T>
Table<T> forward_table(TapMode mode, int64_t in, int64_t out, bool align_corners,
                       std::optional<double> scale) {
  return forward_table(make_rule<T>(mode, in, out, align_corners, scale));
}

// For each of the `in` source indices, the outputs that read it with their summed weights.
// Outputs reading a given index form a contiguous range because tap indices are monotone in
// the output index; the range is stored densely (a zero weight where a tap was clamped away).
template <typename T>
Table<T> transpose(const Table<T>& f, int64_t in) {
  const int64_t out = f.size();
  std::vector<int64_t> lo(in, out), hi(in, -1);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t k = f.offsets[o]; k < f.offsets[o + 1]; ++k) {
      const int64_t i = f.index[k];
      lo[i] = std::min(lo[i], o);
      hi[i] = std::max(hi[i], o);
    }
  Table<T> t;
  t.offsets.resize(in + 1);
  t.offsets[0] = 0;
  for (int64_t i = 0; i < in; ++i) t.offsets[i + 1] = t.offsets[i] + std::max<int64_t>(0, hi[i] - lo[i] + 1);
  t.index.resize(t.offsets[in]);
  t.weight.assign(t.offsets[in], T(0));
  for (int64_t i = 0; i < in; ++i)
    for (int64_t k = t.offsets[i]; k < t.offsets[i + 1]; ++k) t.index[k] = lo[i] + (k - t.offsets[i]);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t k = f.offsets[o]; k < f.offsets[o + 1]; ++k) {
      const int64_t i = f.index[k];
      t.weight[t.offsets[i] + (o - lo[i])] += f.weight[k];
    }
  return t;
}

// bed_of_nails along one axis: output o takes input o / s when o % s == 0, nothing otherwise.
template <typename T>
Table<T> nails_table(int64_t in, int64_t s) {
  Table<T> t;
  const int64_t out = in * s;
  t.offsets.resize(out + 1);
  t.offsets[0] = 0;
  for (int64_t o = 0; o < out; ++o) t.offsets[o + 1] = t.offsets[o] + (o % s == 0 ? 1 : 0);
  t.index.resize(in);
  t.weight.assign(in, T(1));
  for (int64_t i = 0; i < in; ++i) t.index[i] = i;
  return t;
}

// bed_of_nails backward along one axis: input i receives output i * s.
template <typename T>
Table<T> nails_backward_table(int64_t in, int64_t s) {
  Table<T> t;
  t.offsets.resize(in + 1);
  for (int64_t i = 0; i <= in; ++i) t.offsets[i] = i;
  t.index.resize(in);
  t.weight.assign(in, T(1));
  for (int64_t i = 0; i < in; ++i) t.index[i] = i * s;
  return t;
}

template <typename T>
struct Tables {
  Table<T> h, w;
};

// Tables for `dst[., oh, ow] = sum taps src[., ih, iw]` in the requested direction.
template <typename T>
Tables<T> upsample_tables(TapMode mode, const Shape& s, bool align_corners,
                          std::optional<double> scale_h, std::optional<double> scale_w,
                          bool backward) {
  Tables<T> t{forward_table<T>(mode, s.in_h, s.out_h, align_corners, scale_h),
              forward_table<T>(mode, s.in_w, s.out_w, align_corners, scale_w)};
  if (backward) {
    t.h = transpose(t.h, s.in_h);
    t.w = transpose(t.w, s.in_w);
  }
  return t;
}

// ---- the N-d op: 3-D (N, C, W), 4-D (N, C, H, W) and 5-D (N, C, D, H, W) ----------------
//
// Internally every input is (N, C, D, H, W) with the missing leading spatial axes of extent 1
// (an identity axis). Channels-last layouts (channels_last, channels_last_3d) are handled as
// groups = N with C contiguous channels per pixel, the others as groups = N * C.

// torch's mode names; the linear family (linear, bilinear, trilinear) shares one rule.
// `rank`: spatial dimensions of the input (nearest's index rule differs between them).
inline TapMode parse_nd_mode(std::string_view mode, bool antialias, int64_t rank) {
  const bool linear = mode == "linear" || mode == "bilinear" || mode == "trilinear";
  if (antialias) {
    if (linear) return TapMode::LinearAA;
    if (mode == "bicubic") return TapMode::CubicAA;
    TORCH_CHECK(false, "upsample: antialias=True needs mode 'bilinear' or 'bicubic', got '", mode,
                "'");
  }
  if (mode == "nearest") return rank == 2 ? TapMode::Nearest : TapMode::NearestFloor;
  if (mode == "nearest-exact") return TapMode::NearestExact;
  if (linear) return TapMode::Linear;
  if (mode == "bicubic") return TapMode::Cubic;
  if (mode == "area") return TapMode::Area;
  TORCH_CHECK(false, "upsample: mode must be one of 'nearest', 'nearest-exact', 'linear', "
              "'bilinear', 'bicubic', 'trilinear', 'area', got '", mode, "'");
}

struct NdShape {
  int64_t batch = 0, channels = 0;
  int64_t rank = 0;                 // spatial dimensions of the tensor (1, 2 or 3)
  int64_t in[3] = {1, 1, 1};        // D, H, W of the upsample's input
  int64_t out[3] = {1, 1, 1};       // D, H, W of the upsample's output
  at::MemoryFormat format = at::MemoryFormat::Contiguous;
  bool channels_last() const { return format != at::MemoryFormat::Contiguous; }
};

inline at::MemoryFormat nd_memory_format(const at::Tensor& t) {
  const at::MemoryFormat f = t.suggest_memory_format();
  if (t.dim() == 4 && f == at::MemoryFormat::ChannelsLast) return f;
  if (t.dim() == 5 && f == at::MemoryFormat::ChannelsLast3d) return f;
  return at::MemoryFormat::Contiguous;
}

// ATen's size checks (upsample_{1,2,3}d_shape_check, adaptive_avg_pool's), with its words.
inline void check_nd_sizes(const NdShape& s, TapMode mode, at::IntArrayRef full_input_sizes) {
  const int64_t k = 3 - s.rank;  // first real axis
  if (mode == TapMode::Area) {
    for (int64_t a = k; a < 3; ++a) {
      TORCH_CHECK(s.out[a] >= 0, "adaptive_avg_pool: output_size must be non-negative, got ",
                  s.out[a]);
      if (s.in[a] == 0) {
        // adaptive_avg_pool1d runs as a 2-D pool on (N, C, 1, W).
        std::vector<int64_t> sizes(full_input_sizes.begin(), full_input_sizes.end());
        int64_t dim = 2 + a - k;
        if (s.rank == 1) {
          sizes.insert(sizes.begin() + 2, 1);
          ++dim;
        }
        TORCH_CHECK(false, "adaptive_avg_pool", s.rank == 3 ? 3 : 2,
                    "d(): Expected input to have non-zero size for non-batch dimensions, but "
                    "input has sizes ", at::IntArrayRef(sizes), " with dimension ", dim,
                    " being empty");
      }
    }
    return;
  }
  bool positive = true;
  for (int64_t a = k; a < 3; ++a) positive = positive && s.in[a] > 0 && s.out[a] > 0;
  if (s.rank == 1) {
    TORCH_CHECK(positive, "Input and output sizes should be greater than 0, but got input (W: ",
                s.in[2], ") and output (W: ", s.out[2], ")");
  } else if (s.rank == 2) {
    TORCH_CHECK(positive, "Input and output sizes should be greater than 0, but got input (H: ",
                s.in[1], ", W: ", s.in[2], ") output (H: ", s.out[1], ", W: ", s.out[2], ")");
  } else {
    TORCH_CHECK(positive, "Input and output sizes should be greater than 0, but got input (D: ",
                s.in[0], ", H: ", s.in[1], ", W: ", s.in[2], ") output (D: ", s.out[0],
                ", H: ", s.out[1], ", W: ", s.out[2], ")");
  }
}

inline NdShape check_nd_forward(const at::Tensor& input, at::IntArrayRef output_size,
                                TapMode mode) {
  TORCH_CHECK(input.dim() >= 3 && input.dim() <= 5,
              "upsample: input must be a 3-D, 4-D or 5-D (N, C, ...) tensor, but got ",
              input.dim(), " dimensions");
  TORCH_CHECK(static_cast<int64_t>(output_size.size()) == input.dim() - 2,
              "upsample: output_size must have ", input.dim() - 2, " elements for a ",
              input.dim(), "-D input, but got ", output_size.size());
  TORCH_CHECK(at::isFloatingType(input.scalar_type()),
              "upsample: input must be a floating point tensor, but got ", input.scalar_type());
  TORCH_CHECK((mode != TapMode::LinearAA && mode != TapMode::CubicAA) || input.dim() == 4,
              "upsample: antialias=True needs a 4-D input, but got ", input.dim(), " dimensions");
  NdShape s;
  s.batch = input.size(0);
  s.channels = input.size(1);
  s.rank = input.dim() - 2;
  for (int64_t a = 0; a < s.rank; ++a) {
    s.in[3 - s.rank + a] = input.size(2 + a);
    s.out[3 - s.rank + a] = output_size[a];
  }
  s.format = nd_memory_format(input);
  if (mode != TapMode::Area) {
    bool non_batch_empty = false;
    for (int64_t d = 1; d < input.dim(); ++d) non_batch_empty = non_batch_empty || input.size(d) == 0;
    TORCH_CHECK(input.numel() != 0 || !non_batch_empty, "Non-empty ", input.dim(),
                "D data tensor expected but got a tensor with sizes ", input.sizes());
  }
  check_nd_sizes(s, mode, input.sizes());
  std::vector<int64_t> sizes{s.batch, s.channels};
  for (int64_t a = 3 - s.rank; a < 3; ++a) sizes.push_back(s.out[a]);
  int64_t numel = 1;
  for (int64_t v : sizes)
    TORCH_CHECK_VALUE(!c10::mul_overflows(numel, v, &numel),
                      "upsample: the output shape does not fit in int64 (output_size too large)");
  return s;
}

inline NdShape check_nd_backward(const at::Tensor& grad_output, at::IntArrayRef input_size,
                                 TapMode mode) {
  TORCH_CHECK(grad_output.dim() >= 3 && grad_output.dim() <= 5,
              "upsample_backward: grad_output must be a 3-D, 4-D or 5-D tensor, but got ",
              grad_output.dim(), " dimensions");
  TORCH_CHECK(static_cast<int64_t>(input_size.size()) == grad_output.dim(),
              "upsample_backward: input_size must have ", grad_output.dim(),
              " elements, but got ", input_size.size());
  TORCH_CHECK(at::isFloatingType(grad_output.scalar_type()),
              "upsample_backward: grad_output must be a floating point tensor, but got ",
              grad_output.scalar_type());
  TORCH_CHECK(grad_output.size(0) == input_size[0] && grad_output.size(1) == input_size[1],
              "upsample_backward: grad_output ", grad_output.sizes(),
              " does not match input_size ", input_size, " in the batch and channel dimensions");
  NdShape s;
  s.batch = input_size[0];
  s.channels = input_size[1];
  s.rank = grad_output.dim() - 2;
  for (int64_t a = 0; a < s.rank; ++a) {
    s.in[3 - s.rank + a] = input_size[2 + a];
    s.out[3 - s.rank + a] = grad_output.size(2 + a);
    TORCH_CHECK(input_size[2 + a] >= 0, "upsample_backward: input_size must be non-negative, got ",
                input_size);
  }
  s.format = nd_memory_format(grad_output);
  check_nd_sizes(s, mode, input_size);
  return s;
}

// The three per-axis tables (D, H, W) of `dst = resample(src)`; missing axes are identities.
template <typename T>
std::array<Table<T>, 3> nd_tables(TapMode mode, const NdShape& s, bool align_corners,
                                  std::optional<at::ArrayRef<double>> scales, bool backward) {
  std::array<Table<T>, 3> t;
  const int64_t k = 3 - s.rank;
  for (int64_t a = 0; a < 3; ++a) {
    if (a < k) {
      t[a] = forward_table<T>(TapMode::Nearest, 1, 1, false, std::nullopt);
      continue;
    }
    std::optional<double> scale;
    if (scales.has_value()) scale = (*scales)[a - k];
    t[a] = forward_table<T>(mode, s.in[a], s.out[a], align_corners, scale);
    if (backward) t[a] = transpose(t[a], s.in[a]);
  }
  return t;
}

inline void check_nd_scales(const NdShape& s, std::optional<at::ArrayRef<double>> scales) {
  TORCH_CHECK(!scales.has_value() || static_cast<int64_t>(scales->size()) == s.rank,
              "upsample: scales must have ", s.rank, " elements (one per spatial dimension), "
              "but got ", scales.has_value() ? scales->size() : 0);
}

struct NailsShape {
  int64_t batch, channels, in_h, in_w, s_h, s_w;
  bool channels_last;
};

inline NailsShape check_nails(const at::Tensor& t, at::IntArrayRef scale_factor, bool backward) {
  const char* name = backward ? "bed_of_nails_backward" : "bed_of_nails";
  TORCH_CHECK(scale_factor.size() == 2, name,
              ": scale_factor must have 2 elements (height, width), but got ",
              scale_factor.size());
  TORCH_CHECK(scale_factor[0] >= 1 && scale_factor[1] >= 1, name,
              ": scale_factor must be positive integers, but got ", scale_factor);
  TORCH_CHECK(t.dim() == 4, name, ": expected a 4-D (N, C, H, W) tensor, but got ", t.dim(),
              " dimensions");
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), name,
              ": expected a floating point tensor, but got ", t.scalar_type());
  NailsShape s{t.size(0), t.size(1), t.size(2), t.size(3), scale_factor[0], scale_factor[1],
               t.suggest_memory_format() == at::MemoryFormat::ChannelsLast};
  if (backward) {
    TORCH_CHECK(s.in_h % s.s_h == 0 && s.in_w % s.s_w == 0, name, ": grad_output size ",
                t.sizes(), " is not a multiple of scale_factor ", scale_factor);
    s.in_h /= s.s_h;
    s.in_w /= s.s_w;
  } else {
    // The kernels compute in_h * s_h and in_w * s_w: they must not overflow.
    int64_t out_h = 0, out_w = 0;
    TORCH_CHECK_VALUE(!c10::mul_overflows(s.in_h, s.s_h, &out_h) &&
                          !c10::mul_overflows(s.in_w, s.s_w, &out_w),
                      name, ": the output shape does not fit in int64 (scale_factor too large)");
    checked_numel(name, {s.batch, s.channels, out_h, out_w}, "scale_factor");
  }
  return s;
}

}  // namespace pyseg::upsample
