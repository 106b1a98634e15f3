// pyseg._emu: the operator library `pyseg_emu` -- every op of `pyseg` with its CUDA launcher
// and kernels run by the CPU emulator (kernels registered in csrc/ops/<op>/<op>_emu.cpp) --
// plus emulator controls, the sanitizer's switches and counters, and self-test kernels
// (csrc/emu/selftest_kernels.cuh, csrc/emu/planted_bugs.cuh) for tests/emu.
#include <torch/extension.h>

#include "emu/emu_launcher.h"
#include "emu/runtime.h"
#include "emu/planted_bugs.cuh"
#include "emu/selftest_kernels.cuh"
#include "schemas.h"

namespace {

using pyseg::EmuLauncher;
namespace st = pyseg::emu_selftest;

// Runs one of the self-test kernels on a CPU tensor; `block` is the block size.
std::vector<at::Tensor> selftest(const std::string& name, const at::Tensor& x_, int64_t block,
                                 int64_t grid) {
  TORCH_CHECK(x_.device().is_cpu(), "selftest: x must be a CPU tensor");
  EmuLauncher::OpGuard guard(x_);  // x and everything allocated here are the kernels' memory
  at::Tensor x = x_.contiguous();
  const int64_t n = x.numel();
  EmuLauncher launch;
  const dim3 b(static_cast<unsigned>(block)), g(static_cast<unsigned>(grid));
  if (name == "block_sum" || name == "warp_sum") {
    at::Tensor partial = at::zeros({grid}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "selftest", [&] {
      auto k = name == "block_sum" ? st::block_sum<scalar_t> : st::warp_sum<scalar_t>;
      launch(k, g, b, 0, x.const_data_ptr<scalar_t>(), partial.data_ptr<scalar_t>(), n);
    });
    return {partial};
  }
  if (name == "atomic_sum") {
    at::Tensor out = at::zeros({1}, x.options());
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "selftest", [&] {
      launch(st::atomic_sum<scalar_t>, g, b, 0, x.const_data_ptr<scalar_t>(),
             out.data_ptr<scalar_t>(), n);
    });
    return {out};
  }
  if (name == "atomic_scatter" || name == "atomic_scatter_shifted") {
    // shifted: out starts one element into its buffer, so its first element is the high half
    // of a 32-bit word whose low half lies outside out.
    const bool shifted = name == "atomic_scatter_shifted";
    at::Tensor buffer = at::zeros({n + (shifted ? 1 : 0)}, x.options());
    at::Tensor out = buffer.narrow(0, shifted ? 1 : 0, n);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "selftest", [&] {
      launch(st::atomic_scatter<scalar_t>, g, b, 0, x.const_data_ptr<scalar_t>(),
             out.data_ptr<scalar_t>(), n);
    });
    return {out, buffer};
  }
  if (name == "sum_then_read" || name == "read_between_launches") {
    // Two block_sum launches and one host read of the first result (.item()): after both
    // launches (an end-of-op check) or between them (a stall the host-sync counter reports).
    at::Tensor partial = at::zeros({grid}, x.options()), again = at::zeros({grid}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "selftest", [&] {
      const scalar_t* xp = x.const_data_ptr<scalar_t>();
      launch(st::block_sum<scalar_t>, g, b, 0, xp, partial.data_ptr<scalar_t>(), n);
      if (name == "read_between_launches") (void)partial[0].item<scalar_t>();
      launch(st::block_sum<scalar_t>, g, b, 0, xp, again.data_ptr<scalar_t>(), n);
      if (name == "sum_then_read") (void)partial[0].item<scalar_t>();
    });
    return {partial, again};
  }
  if (name == "block_reverse") {
    at::Tensor y = at::empty_like(x);
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "selftest", [&] {
      launch(st::block_reverse<scalar_t>, dim3((n + block - 1) / block), b, block * sizeof(scalar_t),
             x.const_data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), n);
    });
    return {y};
  }
  if (name == "warp_collectives") {
    TORCH_CHECK(x.scalar_type() == at::kInt && n % block == 0 && block % 32 == 0,
                "warp_collectives: int32 input whose size is a multiple of a block of full warps");
    at::Tensor scan = at::empty_like(x), xs = at::empty_like(x), bc = at::empty_like(x);
    at::Tensor ballot = at::empty_like(x);
    launch(st::warp_collectives, dim3(n / block), b, 0, x.const_data_ptr<int>(),
           scan.data_ptr<int>(), xs.data_ptr<int>(), bc.data_ptr<int>(),
           reinterpret_cast<unsigned*>(ballot.data_ptr<int>()));
    return {scan, xs, bc, ballot};
  }
  if (name == "divergent_barrier") {
    at::Tensor y = at::zeros({block}, x.options().dtype(at::kInt));
    launch(st::divergent_barrier, dim3(1), b, 0, y.data_ptr<int>());
    return {y};
  }
  if (name == "coordinates") {
    // grid x grid blocks of block x block threads.
    const int64_t side = grid * block;
    at::Tensor out = at::full({side, side}, -1, x.options().dtype(at::kInt));
    launch(st::coordinates, dim3(grid, grid), dim3(block, block), 0, out.data_ptr<int>(),
           static_cast<int>(side));
    return {out};
  }
  if (name == "wmma_mma" || name == "wmma_divergent" || name == "wmma_lane_pointers") {
    // x: (3, 16, 16) = a, b^T, c (c as float); one warp per block. d = a b + c^T + grid
    // (each of `grid` blocks writes its own d).
    TORCH_CHECK(x.dim() == 3 && x.size(0) == 3 && x.size(1) == 16 && x.size(2) == 16 &&
                    block == 32,
                "wmma_mma: x of shape (3, 16, 16), one warp per block");
    at::Tensor c = x[2].to(at::kFloat).contiguous();
    at::Tensor d = at::zeros({grid, 16, 16}, x.options().dtype(at::kFloat));
    const int mode = name == "wmma_mma" ? 0 : name == "wmma_divergent" ? 1 : 2;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "selftest", [&] {
      if constexpr (!std::is_same_v<scalar_t, double>) {
        for (int64_t blk = 0; blk < grid; ++blk)
          launch(st::wmma_mma<scalar_t>, dim3(1), b, 0, x[0].const_data_ptr<scalar_t>(),
                 x[1].const_data_ptr<scalar_t>(), c.const_data_ptr<float>(),
                 d[blk].data_ptr<float>(), static_cast<float>(blk), mode);
      } else {
        TORCH_CHECK(false, "wmma_mma: half, bfloat16 or float32 (tf32)");
      }
    });
    return {d};
  }
  if (name == "float_to_tf32") {
    TORCH_CHECK(x.scalar_type() == at::kFloat, "float_to_tf32: float32 input");
    at::Tensor y = at::empty_like(x);
    launch(st::float_to_tf32, g, b, 0, x.const_data_ptr<float>(), y.data_ptr<float>(), n);
    return {y};
  }
  // Planted bugs (float32 input).
  const bool planted = name == "read_past_end" || name == "misaligned_load" ||
                       name == "shared_past_end" || name == "missing_barrier" ||
                       name == "blocks_write_one_output" || name == "block_reads_neighbour" ||
                       name == "strided_load" || name == "shared_column_read" ||
                       name == "shared_column_read_padded" || name == "wmma_missing_barrier";
  TORCH_CHECK(!planted || x.scalar_type() == at::kFloat, "selftest: ", name, " takes float32");
  const float* xp = planted ? x.const_data_ptr<float>() : nullptr;
  if (name == "read_past_end" || name == "misaligned_load" || name == "missing_barrier") {
    at::Tensor y = at::zeros_like(x);
    auto k = name == "read_past_end"     ? st::read_past_end
             : name == "misaligned_load" ? st::misaligned_load
                                         : st::missing_barrier;
    launch(k, dim3((n + block - 1) / block), b, 0, xp, y.data_ptr<float>(), n);
    return {y};
  }
  if (name == "wmma_missing_barrier") {
    TORCH_CHECK(block % 32 == 0, "wmma_missing_barrier: whole warps");
    at::Tensor y = at::zeros({block / 32 * 256}, x.options());
    launch(st::wmma_missing_barrier, dim3(1), b, 0, xp, y.data_ptr<float>(), n);
    return {y};
  }
  if (name == "shared_past_end") {
    at::Tensor y = at::zeros_like(x);
    launch(st::shared_past_end, dim3(1), b, block * sizeof(float), xp, y.data_ptr<float>(), n);
    return {y};
  }
  if (name == "blocks_write_one_output" || name == "block_reads_neighbour") {
    at::Tensor y = at::zeros({grid}, x.options());
    if (name == "blocks_write_one_output") launch(st::blocks_write_one_output, g, b, 0, y.data_ptr<float>());
    else launch(st::block_reads_neighbour, g, b, 0, y.data_ptr<float>(), grid);
    return {y};
  }
  if (name == "strided_load") {
    // x holds n elements; read every grid-th (grid = stride here).
    const int64_t m = n / grid;
    at::Tensor y = at::zeros({m}, x.options());
    launch(st::strided_load, dim3((m + block - 1) / block), b, 0, xp, y.data_ptr<float>(), m, grid);
    return {y};
  }
  if (name == "shared_column_read" || name == "shared_column_read_padded") {
    TORCH_CHECK(n == 32 * 32 && block == 32, "shared_column_read: 1024 elements, one warp");
    at::Tensor y = at::zeros({32}, x.options());
    launch(st::shared_column_read, dim3(1), b, 0, xp, y.data_ptr<float>(),
           name == "shared_column_read" ? 0 : 1);
    return {y};
  }
  TORCH_CHECK(false, "selftest: unknown kernel '", name, "'");
}

py::dict counters_dict(const pyseg::emu::LaunchCounters& c) {
  py::dict d;
  d["kernel"] = c.kernel;
  d["grid"] = py::make_tuple(c.grid.x, c.grid.y, c.grid.z);
  d["block"] = py::make_tuple(c.block.x, c.block.y, c.block.z);
  d["global_load_requests"] = c.global_load_requests;
  d["global_load_sectors"] = c.global_load_sectors;
  d["global_load_ideal_sectors"] = c.global_load_ideal_sectors;
  d["global_store_requests"] = c.global_store_requests;
  d["global_store_sectors"] = c.global_store_sectors;
  d["global_store_ideal_sectors"] = c.global_store_ideal_sectors;
  d["shared_requests"] = c.shared_requests;
  d["shared_wavefronts"] = c.shared_wavefronts;
  d["shared_ideal_wavefronts"] = c.shared_ideal_wavefronts;
  d["atomics"] = c.atomics;
  d["barriers"] = c.barriers;
  d["warp_collectives"] = c.warp_collectives;
  d["divergent_collectives"] = c.divergent_collectives;
  return d;
}

}  // namespace

TORCH_LIBRARY(pyseg_emu, m) { pyseg::define_schemas(m); }

PYBIND11_MODULE(_emu, m) {
  namespace emu = pyseg::emu;
  m.doc() = "pyseg's CUDA kernels run on the CPU by the emulator (torch.ops.pyseg_emu)";
  m.def("set_thread_order", [](const std::string& order, uint64_t seed) {
    if (order == "forward") emu::set_thread_order(emu::ThreadOrder::kForward, seed);
    else if (order == "reverse") emu::set_thread_order(emu::ThreadOrder::kReverse, seed);
    else if (order == "random") emu::set_thread_order(emu::ThreadOrder::kRandom, seed);
    else if (order == "interleaved") emu::set_thread_order(emu::ThreadOrder::kInterleaved, seed);
    else throw std::invalid_argument("thread order must be 'forward', 'reverse', 'random' or 'interleaved', got '" + order + "'");
  }, py::arg("order"), py::arg("seed") = 0,
     "Order in which threads are resumed: 'forward', 'reverse', 'random' (threads of a block), "
     "or 'interleaved' (several blocks resident at once, switched at barriers, random orders).");
  m.def("thread_order", [] {
    switch (emu::thread_order()) {
      case emu::ThreadOrder::kReverse: return std::string("reverse");
      case emu::ThreadOrder::kRandom: return std::string("random");
      case emu::ThreadOrder::kInterleaved: return std::string("interleaved");
      default: return std::string("forward");
    }
  });
  m.def("set_max_blocks", &emu::set_max_blocks, py::arg("blocks"),
        "Cap on 1-D grid sizes (small, so grid-stride loops run in tests).");
  m.def("max_blocks", &emu::max_blocks);
  m.def("stats", [] {
    auto s = emu::stats();
    py::dict d;
    d["launches"] = s.launches;
    d["blocks"] = s.blocks;
    d["threads"] = s.threads;
    d["barriers"] = s.barriers;
    d["warp_collectives"] = s.warp_collectives;
    return d;
  }, "Counters since the last reset_stats().");
  m.def("reset_stats", &emu::reset_stats, "Clears stats() and launch_counters().");
  m.def("instrumented", &emu::instrumented,
        "Whether the kernels were compiled with the access hooks (PYSEG_EMU_CHECKS=1).");
  m.def("set_checks", [](bool memcheck, bool racecheck, bool counters) {
    emu::set_checks(emu::Checks{memcheck, racecheck, counters});
  }, py::arg("memcheck") = true, py::arg("racecheck") = true, py::arg("counters") = false,
     "What the instrumented build checks on every access (see csrc/emu/README.md).");
  m.def("checks", [] {
    const auto c = emu::checks();
    py::dict d;
    d["memcheck"] = c.memcheck;
    d["racecheck"] = c.racecheck;
    d["counters"] = c.counters;
    return d;
  });
  m.def("launch_counters", [] {
    py::list out;
    for (const auto& c : emu::launch_counters()) out.append(counters_dict(c));
    return out;
  }, "Memory counters of every launch since reset_stats() that ran with counters on.");
  m.def("set_force_int64", [](bool force) { emu::force_int64_flag() = force; },
        py::arg("force"),
        "Makes ops launch their int64 index kernels even where the int32 ones fit.");
  m.def("force_int64", [] { return emu::force_int64_flag(); });
  m.def("set_pretend_capture", [](bool capture) { emu::pretend_capture_flag() = capture; },
        py::arg("capture"),
        "Makes launch code behave as under CUDA graph capture (max_unpool2d then checks its "
        "indices with a device-side trap instead of a host read).");
  m.def("set_compute_capability", [](int cc) {
    TORCH_CHECK(cc >= 50 && cc < 200, "set_compute_capability: cc must be like 80 for sm_80, got ", cc);
    emu::compute_capability_flag() = cc;
  }, py::arg("cc"),
        "The compute capability the emulated device reports to launch code (default 80): "
        "the GEMM copies float tiles with cp.async from 80 on and through registers below.");
  m.def("compute_capability", [] { return emu::compute_capability_flag(); });
  m.def("host_sync_counts", [](bool reset) {
    auto& c = emu::host_sync_counts();
    py::dict d;
    d["ops"] = c.ops;
    d["host_reads"] = c.host_reads;
    d["host_reads_mid_op"] = c.host_reads_mid_op;
    d["transfers"] = c.transfers;
    if (reset) c = emu::HostSyncCounts{};
    return d;
  }, py::arg("reset") = false,
     "What emulated ops did on the host with device memory since the last reset: host reads "
     "(.item()), those followed by a launch of the same op (mid-op), device transfers (.to()).");
  m.def("selftest", &selftest, py::arg("name"), py::arg("x"), py::arg("block"), py::arg("grid") = 1,
        "Runs one of the emulator's self-test kernels (see csrc/emu/selftest_kernels.cuh).");
}
