// The launcher that <op>_emu.cpp instantiates <op>_launch.h with: runs the kernel on the
// CPU under the emulator's scheduler instead of <<<grid, block, shared, stream>>>.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <vector>

#include <ATen/core/Tensor.h>
#include <ATen/record_function.h>
#include <c10/core/Allocator.h>
#include <c10/util/StringUtil.h>
#include <c10/util/ThreadLocalDebugInfo.h>

#include "common/with_launcher.h"
#include "emu/runtime.h"

namespace pyseg {

namespace emu {

// While an emulated op runs, every CPU allocation it makes (outputs, workspaces, contiguous
// copies) is registered as global memory its kernels may touch, through c10's per-thread
// memory-reporting hook (the one torch.profiler's profile_memory uses). A reporter that was
// installed before (the profiler's) still gets every report.
class AllocationTracker final : public c10::MemoryReportingInfoBase {
 public:
  // `previous` outlives the op (its guard is further up the stack).
  explicit AllocationTracker(c10::DebugInfoBase* previous) : previous_(previous) {}
  ~AllocationTracker() override {
    for (const void* p : live_) unregister_buffer(p);
  }
  void reportMemoryUsage(void* ptr, int64_t alloc_size, size_t total_allocated,
                         size_t total_reserved, c10::Device device) override {
    if (device.is_cpu() && ptr != nullptr) {
      if (alloc_size > 0) {
        register_buffer(ptr, static_cast<size_t>(alloc_size),
                        "tensor #" + std::to_string(++count_) + " allocated by the op");
        live_.push_back(ptr);
      } else {
        unregister_buffer(ptr);
        std::erase(live_, ptr);
      }
    }
    if (auto* p = dynamic_cast<c10::MemoryReportingInfoBase*>(previous_);
        p && p->memoryProfilingEnabled())
      p->reportMemoryUsage(ptr, alloc_size, total_allocated, total_reserved, device);
  }
  bool memoryProfilingEnabled() const override { return true; }

 private:
  c10::DebugInfoBase* previous_;
  std::vector<const void*> live_;
  int count_ = 0;
};

// Whether launches choose the int64 index kernels even where int32 fits (tests).
inline bool& force_int64_flag() {
  static bool force = false;
  return force;
}

// The compute capability the emulated device reports (major * 10 + minor), for launch code
// that picks kernels by architecture.
inline int& compute_capability_flag() {
  static int cc = 80;
  return cc;
}

// Whether launchers report a CUDA graph capture in progress (tests of the capture paths).
inline bool& pretend_capture_flag() {
  static bool capture = false;
  return capture;
}

// What the launch code of the emulated ops did on the host with device memory. On a GPU a
// host read of a device value (`.item()`, i.e. aten::_local_scalar_dense) waits for the
// stream, and a host-to-device transfer (aten::to / aten::_to_copy) of a pageable tensor
// does too; both break CUDA graph capture. A read counts as "mid-op" when the op launches a
// kernel after it (the stream stalls between kernels); a read after the last launch is the
// op's final check. Counted through a thread-local RecordFunction callback while an op runs.
struct HostSyncCounts {
  int64_t ops = 0;             // emulated ops run
  int64_t host_reads = 0;      // aten::_local_scalar_dense calls inside them
  int64_t host_reads_mid_op = 0;  // ... followed by a kernel launch of the same op
  int64_t transfers = 0;       // aten::to / aten::_to_copy calls inside them
};

inline HostSyncCounts& host_sync_counts() {
  static HostSyncCounts counts;
  return counts;
}

// Reads of the running op not yet followed by a launch; -1 outside an op.
inline thread_local int64_t pending_host_reads = -1;

class HostSyncWatch {
 public:
  HostSyncWatch() {
    if (pending_host_reads >= 0) return;  // nested op: the outer watch counts
    outer_ = true;
    pending_host_reads = 0;
    ++host_sync_counts().ops;
    handle_ = at::addThreadLocalCallback(
        at::RecordFunctionCallback(&on_op).scopes({at::RecordScope::FUNCTION}));
  }
  ~HostSyncWatch() {
    if (!outer_) return;
    at::removeCallback(handle_);
    pending_host_reads = -1;
  }
  HostSyncWatch(const HostSyncWatch&) = delete;
  HostSyncWatch& operator=(const HostSyncWatch&) = delete;

  // Called by EmuLauncher before each launch: earlier reads stalled the stream mid-op.
  static void on_launch() {
    if (pending_host_reads <= 0) return;
    host_sync_counts().host_reads_mid_op += pending_host_reads;
    pending_host_reads = 0;
  }

 private:
  static std::unique_ptr<at::ObserverContext> on_op(const at::RecordFunction& fn) {
    const std::string_view name = fn.name();
    if (name == "aten::_local_scalar_dense") {
      ++host_sync_counts().host_reads;
      ++pending_host_reads;
    } else if (name == "aten::to" || name == "aten::_to_copy") {
      ++host_sync_counts().transfers;
    }
    return nullptr;
  }
  bool outer_ = false;
  at::CallbackHandle handle_ = 0;
};

}  // namespace emu

struct EmuLauncher {
  // Registers the op's tensor arguments (the bytes each one spans) and, for the duration of
  // the op, every allocation it makes (with_launcher.h).
  struct OpGuard {
    emu::HostSyncWatch host_sync;
    c10::DebugInfoGuard tracking{
        c10::DebugInfoKind::PROFILER_STATE,
        std::make_shared<emu::AllocationTracker>(
            c10::ThreadLocalDebugInfo::get(c10::DebugInfoKind::PROFILER_STATE))};
    std::vector<const void*> registered;
    int index = 0;

    template <class... Args>
    explicit OpGuard(const Args&... args) {
      (use(args), ...);
    }
    ~OpGuard() {
      for (const void* p : registered) emu::unregister_buffer(p);
    }
    void use(const at::Tensor& t) {
      ++index;
      if (!t.defined() || t.numel() == 0 || !t.device().is_cpu()) return;
      int64_t last = 0;  // offset of the last element, in elements
      for (int64_t d = 0; d < t.dim(); ++d) last += (t.size(d) - 1) * std::abs(t.stride(d));
      const void* begin = t.const_data_ptr();
      emu::register_buffer(begin, static_cast<size_t>(last + 1) * t.element_size(),
                           "argument " + std::to_string(index) + " (" +
                               std::string(c10::toString(t.scalar_type())) + " " +
                               c10::str(t.sizes()) + ")");
      registered.push_back(begin);
    }
    void use(const std::optional<at::Tensor>& t) {
      if (t.has_value()) use(*t);
      else ++index;
    }
    template <class T>
    void use(const T&) {
      ++index;
    }
  };

  int64_t max_blocks() const { return emu::max_blocks(); }
  // _emu.set_pretend_capture(True) takes the CUDA-graph-capture paths (no host reads).
  bool capturing() const { return emu::pretend_capture_flag(); }
  // _emu.set_force_int64(True) runs the int64 index kernels at test sizes.
  bool force_int64() const { return emu::force_int64_flag(); }
  // _emu.set_compute_capability(cc); 80 unless a test says otherwise.
  int compute_capability() const { return emu::compute_capability_flag(); }

  template <class... KernelArgs, class... Args>
  void operator()(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t shared_bytes,
                  Args&&... args) const {
    if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
    emu::HostSyncWatch::on_launch();
    struct Call {
      void (*kernel)(KernelArgs...);
      std::tuple<std::decay_t<KernelArgs>...> args;
    };
    Call call{kernel, std::tuple<std::decay_t<KernelArgs>...>(static_cast<KernelArgs>(args)...)};
    emu::launch(
        grid, block, shared_bytes,
        [](void* p) {
          auto* c = static_cast<Call*>(p);
          std::apply(c->kernel, c->args);  // each thread gets its own copy of the arguments
        },
        &call, sizeof(call), reinterpret_cast<const void*>(kernel));
  }
};

}  // namespace pyseg
