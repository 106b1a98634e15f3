// conv_transpose2d under the CPU emulator: torch.ops.pyseg_emu.conv_transpose2d.

#include <torch/library.h>

#include "emu/emu_launcher.h"
#include "ops/conv_transpose/conv_transpose_launch.h"

namespace pyseg::conv_transpose {
namespace {

at::Tensor conv_transpose2d_emu(const at::Tensor& input, const at::Tensor& weight,
                                 const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                 at::IntArrayRef padding, at::IntArrayRef output_padding,
                                 int64_t groups, at::IntArrayRef dilation) {

  return forward(EmuLauncher{}, input, weight, bias, stride, padding, output_padding, groups,
                 dilation);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv_transpose2d_backward_emu(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef output_padding,
    int64_t groups, at::IntArrayRef dilation, std::array<bool, 3> output_mask) {

  return backward(EmuLauncher{}, grad_output, input, weight, stride, padding, output_padding,
                  groups, dilation, output_mask);
}

}  // namespace

TORCH_LIBRARY_IMPL(pyseg_emu, CPU, m) {
  m.impl("conv_transpose2d", &conv_transpose2d_emu);
  m.impl("conv_transpose2d_backward", &conv_transpose2d_backward_emu);
}

}  // namespace pyseg::conv_transpose
