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
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string_view>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/safe_numerics.h>

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

enum class Mode { Nearest, Bilinear, Bicubic };

inline Mode parse_mode(std::string_view mode) {
  if (mode == "nearest") return Mode::Nearest;
  if (mode == "bilinear") return Mode::Bilinear;
  if (mode == "bicubic") return Mode::Bicubic;
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

// ATen's guard_index_and_lambda (floorf as in ATen, then clamped).
template <typename T>
void guard_index_and_lambda(T real, int64_t in, int64_t& index, T& lambda) {
  index = std::min(static_cast<int64_t>(floorf(real)), in - 1);
  lambda = std::min(std::max(real - static_cast<T>(index), static_cast<T>(0)), static_cast<T>(1));
}

// ATen's nearest_idx: always in float, with exact shortcuts for scale 1 and 2.
inline int64_t nearest_idx(int64_t o, int64_t in, int64_t out, std::optional<double> scale) {
  if (out == in) return o;
  if (out == 2 * in) return o >> 1;
  const float s = compute_scales_value<float>(scale, in, out);
  return std::min(static_cast<int64_t>(floorf(o * s)), in - 1);
}

template <typename T>
void cubic_coefficients(T coeffs[4], T t) {
  // Keys' cubic convolution with A = -0.75, written as ATen writes it.
  const T A = -0.75;
  auto conv1 = [A](T x) { return ((A + 2) * x - (A + 3)) * x * x + 1; };
  auto conv2 = [A](T x) { return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; };
  const T x1 = t;
  coeffs[0] = conv2(x1 + T(1.0));
  coeffs[1] = conv1(x1);
  const T x2 = T(1.0) - t;
  coeffs[2] = conv1(x2);
  coeffs[3] = conv2(x2 + T(1.0));
}

// Taps of every output index of one axis (forward direction).
template <typename T>
Table<T> forward_table(Mode mode, int64_t in, int64_t out, bool align_corners,
                       std::optional<double> scale) {
  Table<T> t;
  const int taps = mode == Mode::Nearest ? 1 : mode == Mode::Bilinear ? 2 : 4;
  t.offsets.resize(out + 1);
  t.index.resize(out * taps);
  t.weight.resize(out * taps);
  for (int64_t o = 0; o <= out; ++o) t.offsets[o] = o * taps;
  if (mode == Mode::Nearest) {
    for (int64_t o = 0; o < out; ++o) {
      t.index[o] = nearest_idx(o, in, out, scale);
      t.weight[o] = T(1);
    }
    return t;
  }
  const T ratio = area_pixel_compute_scale<T>(in, out, align_corners, scale);
  for (int64_t o = 0; o < out; ++o) {
    int64_t* idx = &t.index[o * taps];
    T* w = &t.weight[o * taps];
    if (mode == Mode::Bilinear) {
      if (out == in) {  // ATen copies when the axis keeps its size, whatever the scale
        idx[0] = idx[1] = o;
        w[0] = T(1);
        w[1] = T(0);
        continue;
      }
      const T real = area_pixel_compute_source_index<T>(ratio, o, align_corners, false);
      int64_t i0;
      T l1;
      guard_index_and_lambda(real, in, i0, l1);
      idx[0] = i0;
      idx[1] = i0 + (i0 < in - 1 ? 1 : 0);
      w[0] = T(1) - l1;
      w[1] = l1;
    } else {
      const T real = area_pixel_compute_source_index<T>(ratio, o, align_corners, true);
      int64_t i0;
      T lambda;
      guard_index_and_lambda(real, in, i0, lambda);
      T coeffs[4];
      cubic_coefficients(coeffs, lambda);
      for (int k = 0; k < 4; ++k) {
        // Neighbours outside the input read the border (ATen's upsample_get_value_bounded).
        idx[k] = std::max<int64_t>(std::min<int64_t>(i0 + k - 1, in - 1), 0);
        w[k] = coeffs[k];
      }
    }
  }
  return t;
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
Tables<T> upsample_tables(Mode mode, const Shape& s, bool align_corners,
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
