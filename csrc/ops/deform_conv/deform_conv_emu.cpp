// deform_conv2d's CUDA kernels under the CPU emulator (torch.ops.pyseg_emu): deform_conv_launch.h
// with the emulator's launcher (its twin, deform_conv_cuda.cu, registers the real one).
#include <torch/library.h>

#include "emu/emu_launcher.h"
#include "ops/deform_conv/deform_conv_launch.h"

namespace pyseg::deform_conv {

TORCH_LIBRARY_IMPL(pyseg_emu, CPU, m) {
  m.impl("deform_conv2d", with_launcher<EmuLauncher, &forward_op<EmuLauncher>>);
  m.impl("_deform_conv2d_backward", with_launcher<EmuLauncher, &backward_op<EmuLauncher>>);
}

}  // namespace pyseg::deform_conv
