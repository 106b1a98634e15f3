// upsample2d / bed_of_nails's CUDA kernels under the CPU emulator (torch.ops.pyseg_emu): upsample_launch.h
// with the emulator's launcher (its twin, upsample_cuda.cu, registers the real one).
#include <torch/library.h>

#include "emu/emu_launcher.h"
#include "ops/upsample/upsample_launch.h"

namespace pyseg::upsample {

TORCH_LIBRARY_IMPL(pyseg_emu, CPU, m) {
  m.impl("upsample", with_launcher<EmuLauncher, &nd_forward<EmuLauncher>>);
  m.impl("upsample_backward", with_launcher<EmuLauncher, &nd_backward<EmuLauncher>>);
  m.impl("upsample2d", with_launcher<EmuLauncher, &forward<EmuLauncher>>);
  m.impl("upsample2d_backward", with_launcher<EmuLauncher, &backward<EmuLauncher>>);
  m.impl("bed_of_nails", with_launcher<EmuLauncher, &nails_forward<EmuLauncher>>);
  m.impl("bed_of_nails_backward", with_launcher<EmuLauncher, &nails_backward<EmuLauncher>>);
}

}  // namespace pyseg::upsample
