// upsample2d / bed_of_nails on CUDA: upsample_launch.h with the real launcher (its twin, upsample_emu.cpp,
// registers the same launch code with the emulator's).
#include <torch/library.h>

#include "common/cuda_launcher.cuh"
#include "ops/upsample/upsample_launch.h"

namespace pyseg::upsample {

TORCH_LIBRARY_IMPL(pyseg, CUDA, m) {
  m.impl("upsample", with_launcher<CudaLauncher, &nd_forward<CudaLauncher>>);
  m.impl("upsample_backward", with_launcher<CudaLauncher, &nd_backward<CudaLauncher>>);
  m.impl("upsample2d", with_launcher<CudaLauncher, &forward<CudaLauncher>>);
  m.impl("upsample2d_backward", with_launcher<CudaLauncher, &backward<CudaLauncher>>);
  m.impl("bed_of_nails", with_launcher<CudaLauncher, &nails_forward<CudaLauncher>>);
  m.impl("bed_of_nails_backward", with_launcher<CudaLauncher, &nails_backward<CudaLauncher>>);
}

}  // namespace pyseg::upsample
