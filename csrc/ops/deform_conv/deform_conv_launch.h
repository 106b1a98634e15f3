// deform_conv2d host code for the CUDA kernels, written once against a Launcher (real CUDA in
// deform_conv_cuda.cu, the CPU emulator in deform_conv_emu.cpp).
//
// Images are processed in chunks whose column matrix stays below kMaxColumnElements: the
// im2col kernel fills it, at::mm multiplies it by each weight group's slice (on the current
// stream; float16/bfloat16 GEMMs accumulate in float32), and the backward pass forms the
// column gradient the same way before the col2im and coordinate-gradient kernels.
#pragma once

#include <ATen/Context.h>
#include <ATen/Dispatch.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include <algorithm>
#include <tuple>

#include "common/launch_utils.h"
#include "ops/deform_conv/deform_conv.h"
#include "ops/deform_conv/deform_conv_kernels.cuh"

namespace pyseg::deform_conv {

constexpr int64_t kMaxColumnElements = int64_t{1} << 26;

inline int64_t images_per_chunk(const Shape& s) {
  const int64_t per_image = std::max<int64_t>(1, s.channels * s.taps() * s.out_plane());
  return std::max<int64_t>(1, std::min<int64_t>(s.batch, kMaxColumnElements / per_image));
}

inline KernelGeometry kernel_geometry(const Shape& s, const Params& p, int64_t chunk) {
  return KernelGeometry{s.channels, s.in_h,     s.in_w,     s.out_h,    s.out_w,
                        s.kernel_h, s.kernel_w, p.stride_h, p.stride_w, p.pad_h,
                        p.pad_w,    p.dil_h,    p.dil_w,    p.offset_groups, chunk,
                        p.use_mask};
}

template <class Launcher>
at::Tensor forward(const Launcher& launch, const at::Tensor& input_, const at::Tensor& weight_,
                   const at::Tensor& offset_, const at::Tensor& mask_, const at::Tensor& bias_,
                   const Params& p) {
  const Shape s = check(input_, weight_, offset_, mask_, bias_, p);
  at::AutoDispatchBelowADInplaceOrView below_autograd;  // at::mm on the arguments' views
  const at::Tensor input = input_.contiguous(), weight = weight_.contiguous();
  const at::Tensor offset = offset_.contiguous(), mask = mask_.contiguous();
  at::Tensor out = at::zeros({s.batch, s.out_channels, s.out_h, s.out_w}, input.options());
  if (out.numel() > 0 && s.channels > 0) {
    const int64_t K = s.taps(), P = s.out_plane(), CK = s.channels * K;
    const int64_t G = s.groups, Og = s.out_channels_per_group(), CgK = s.channels_per_group() * K;
    const at::Tensor w2 = weight.view({s.out_channels, CgK});
    const int64_t chunk = images_per_chunk(s);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "deform_conv2d", [&] {
      for (int64_t b0 = 0; b0 < s.batch; b0 += chunk) {
        const int64_t nb = std::min(chunk, s.batch - b0);
        const KernelGeometry g = kernel_geometry(s, p, nb);
        at::Tensor cols = at::empty({CK, nb * P}, input.options());
        launch(im2col_kernel<scalar_t>, grid_for(launch, s.channels * nb * P),
               dim3(kThreadsPerBlock), 0,
               input.const_data_ptr<scalar_t>() + b0 * s.channels * s.in_plane(),
               offset.const_data_ptr<scalar_t>() + b0 * offset.size(1) * P,
               p.use_mask ? mask.const_data_ptr<scalar_t>() + b0 * mask.size(1) * P
                          : mask.const_data_ptr<scalar_t>(),
               cols.data_ptr<scalar_t>(), g);
        for (int64_t wg = 0; wg < G; ++wg) {
          at::Tensor res = at::mm(w2.narrow(0, wg * Og, Og), cols.narrow(0, wg * CgK, CgK));
          out.narrow(0, b0, nb).narrow(1, wg * Og, Og)
              .copy_(res.view({Og, nb, s.out_h, s.out_w}).transpose(0, 1));
        }
      }
    });
  }
  if (out.numel() > 0) out.add_(bias_.view({1, -1, 1, 1}));
  return out;
}

template <class Launcher>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const Launcher& launch, const at::Tensor& grad_, const at::Tensor& input_,
    const at::Tensor& weight_, const at::Tensor& offset_, const at::Tensor& mask_,
    const at::Tensor& bias_, const Params& p) {
  const Shape s = check(input_, weight_, offset_, mask_, bias_, p);
  check_grad(grad_, s);
  TORCH_CHECK(grad_.scalar_type() == input_.scalar_type() && grad_.device() == input_.device(),
              "deform_conv2d_backward: grad must have input's dtype and device");
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const at::Tensor grad = grad_.contiguous(), input = input_.contiguous();
  const at::Tensor weight = weight_.contiguous(), offset = offset_.contiguous();
  const at::Tensor mask = mask_.contiguous();
  at::Tensor gi = at::zeros_like(input), gw = at::zeros_like(weight);
  at::Tensor go = at::zeros_like(offset), gm = at::zeros_like(mask);
  if (grad.numel() > 0 && s.channels > 0) {
    const int64_t K = s.taps(), P = s.out_plane(), CK = s.channels * K;
    const int64_t G = s.groups, Og = s.out_channels_per_group(), CgK = s.channels_per_group() * K;
    const at::Tensor w2 = weight.view({s.out_channels, CgK});
    at::Tensor gw2 = gw.view({s.out_channels, CgK});
    const int64_t chunk = images_per_chunk(s);
    // The atomic scatter's summation order varies from run to run; under
    // torch.use_deterministic_algorithms(True) each thread owns an (image, channel) plane.
    const bool deterministic = at::globalContext().deterministicAlgorithms();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "deform_conv2d_backward", [&] {
      for (int64_t b0 = 0; b0 < s.batch; b0 += chunk) {
        const int64_t nb = std::min(chunk, s.batch - b0);
        const KernelGeometry g = kernel_geometry(s, p, nb);
        const scalar_t* in = input.const_data_ptr<scalar_t>() + b0 * s.channels * s.in_plane();
        const scalar_t* off = offset.const_data_ptr<scalar_t>() + b0 * offset.size(1) * P;
        const scalar_t* mk = p.use_mask ? mask.const_data_ptr<scalar_t>() + b0 * mask.size(1) * P
                                        : mask.const_data_ptr<scalar_t>();
        at::Tensor cols = at::empty({CK, nb * P}, input.options());
        at::Tensor gcols = at::empty({CK, nb * P}, input.options());
        launch(im2col_kernel<scalar_t>, grid_for(launch, s.channels * nb * P),
               dim3(kThreadsPerBlock), 0, in, off, mk, cols.data_ptr<scalar_t>(), g);
        const at::Tensor gout = grad.narrow(0, b0, nb).view({nb, s.out_channels, P});
        for (int64_t wg = 0; wg < G; ++wg) {
          const at::Tensor g2 = gout.narrow(1, wg * Og, Og).transpose(0, 1).reshape({Og, nb * P});
          at::Tensor gc = gcols.narrow(0, wg * CgK, CgK);
          at::mm_out(gc, w2.narrow(0, wg * Og, Og).t(), g2);
          gw2.narrow(0, wg * Og, Og).addmm_(g2, cols.narrow(0, wg * CgK, CgK).t());
        }
        launch(coord_grad_kernel<scalar_t>,
               grid_for(launch, nb * s.offset_groups * K * P), dim3(kThreadsPerBlock), 0,
               gcols.const_data_ptr<scalar_t>(), in, off, mk,
               go.data_ptr<scalar_t>() + b0 * offset.size(1) * P,
               p.use_mask ? gm.data_ptr<scalar_t>() + b0 * mask.size(1) * P : gm.data_ptr<scalar_t>(),
               g);
        scalar_t* gin = gi.data_ptr<scalar_t>() + b0 * s.channels * s.in_plane();
        if (deterministic)
          launch(col2im_plane_kernel<scalar_t>, grid_for(launch, nb * s.channels),
                 dim3(kThreadsPerBlock), 0, gcols.const_data_ptr<scalar_t>(), off, mk, gin, g);
        else
          launch(col2im_atomic_kernel<scalar_t>, grid_for(launch, CK * nb * P),
                 dim3(kThreadsPerBlock), 0, gcols.const_data_ptr<scalar_t>(), off, mk, gin, g);
      }
    });
  }
  at::Tensor gb = grad.sum({0, 2, 3});
  return {gi, gw, go, gm, gb};
}

}  // namespace pyseg::deform_conv
