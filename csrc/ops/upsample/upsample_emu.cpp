// upsample2d / bed_of_nails CUDA kernels under the CPU emulator (torch.ops.pyseg_emu).
#include <torch/library.h>

#include "emu/emu_launcher.h"
#include "ops/upsample/upsample_launch.h"

namespace pyseg::upsample {
namespace {

at::Tensor upsample2d_emu(const at::Tensor& input, at::IntArrayRef output_size,
                           c10::string_view mode, bool align_corners,
                           std::optional<double> scale_h, std::optional<double> scale_w) {
  return forward(EmuLauncher{}, input, output_size, mode, align_corners, scale_h, scale_w);
}

at::Tensor upsample2d_backward_emu(const at::Tensor& grad_output, at::IntArrayRef input_size,
                                    c10::string_view mode, bool align_corners,
                                    std::optional<double> scale_h, std::optional<double> scale_w) {
  return backward(EmuLauncher{}, grad_output, input_size, mode, align_corners, scale_h, scale_w);
}

at::Tensor bed_of_nails_emu(const at::Tensor& input, at::IntArrayRef scale_factor) {
  return nails_forward(EmuLauncher{}, input, scale_factor);
}

at::Tensor bed_of_nails_backward_emu(const at::Tensor& grad_output, at::IntArrayRef scale_factor) {
  return nails_backward(EmuLauncher{}, grad_output, scale_factor);
}

}  // namespace

TORCH_LIBRARY_IMPL(pyseg_emu, CPU, m) {
  m.impl("upsample2d", &upsample2d_emu);
  m.impl("upsample2d_backward", &upsample2d_backward_emu);
  m.impl("bed_of_nails", &bed_of_nails_emu);
  m.impl("bed_of_nails_backward", &bed_of_nails_backward_emu);
}

}  // namespace pyseg::upsample
