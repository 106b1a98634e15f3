// The emulator's memcheck, racecheck and memory counters (see sanitizer.h for how accesses
// reach this file and csrc/emu/README.md for what is checked and what it costs).
//
// Every access a kernel makes arrives at on_access() with its address, size, kind and the
// return address of the hook (a pc inside the kernel). It is classified:
//   the thread's own fiber stack, CUDA's coordinates, the module's constant data -> ignored
//   the launch's parameter block                -> loads only
//   static __shared__ variables, dynamic shared -> shared: bounds, alignment, races, banks
//   a buffer registered for the op              -> global: bounds, alignment, races, sectors
//   anything else                               -> a memcheck error
// An error aborts the launch (the fiber is abandoned, never unwound) and is raised by the
// launcher as std::runtime_error: a RuntimeError in Python.
#include "emu/sanitizer.h"

#include <cxxabi.h>
#include <dlfcn.h>
#include <elf.h>
#include <link.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <sstream>
#include <unordered_map>

namespace pyseg::emu {
namespace detail {

thread_local Current g_current;

namespace {

enum class Kind : uint8_t { kLoad, kStore, kAtomic };
const char* kind_name(Kind k) {
  return k == Kind::kLoad ? "load" : k == Kind::kStore ? "store" : "atomic";
}

Checks g_checks;

// ---- This module's symbols: static shared variables, functions (for kernel names) -------

// A static __shared__ variable: offset and size in the module's TLS block.
struct SharedSymbol {
  size_t offset, bytes;
  std::string name;
};

struct FunctionSymbol {
  uintptr_t begin, end;
  std::string mangled;
};

struct ModuleSymbols {
  bool loaded = false;
  std::string path;
  uintptr_t base = 0;                       // load address
  uintptr_t image_begin = 0, image_end = 0;  // mapped segments (constant data lives there)
  size_t thread_idx_offset = 0;              // of `threadIdx` in the TLS block
  std::vector<SharedSymbol> shared;          // sorted by offset
  std::vector<FunctionSymbol> functions;     // sorted by address
};

std::string demangle(const std::string& mangled) {
  int status = 0;
  std::unique_ptr<char, decltype(&std::free)> out(
      abi::__cxa_demangle(mangled.c_str(), nullptr, nullptr, &status), &std::free);
  return status == 0 && out ? std::string(out.get()) : mangled;
}

int find_module(dl_phdr_info* info, size_t, void* data) {
  auto* m = static_cast<ModuleSymbols*>(data);
  if (info->dlpi_addr != m->base) return 0;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const auto& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD) continue;
    const uintptr_t lo = info->dlpi_addr + ph.p_vaddr, hi = lo + ph.p_memsz;
    m->image_begin = m->image_begin ? std::min(m->image_begin, lo) : lo;
    m->image_end = std::max(m->image_end, hi);
  }
  return 1;
}

// Reads the module's ELF symbol table (.symtab, else .dynsym). Static __shared__ variables
// are block-scope thread_locals of kernels: TLS symbols named _ZZ... inside namespace pyseg.
const ModuleSymbols& module_symbols() {
  static ModuleSymbols m;
  if (m.loaded) return m;
  m.loaded = true;
  Dl_info info{};
  if (!dladdr(reinterpret_cast<void*>(&module_symbols), &info) || !info.dli_fname) return m;
  m.path = info.dli_fname;
  m.base = reinterpret_cast<uintptr_t>(info.dli_fbase);
  dl_iterate_phdr(find_module, &m);
  std::ifstream file(m.path, std::ios::binary);
  const std::string elf((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  if (elf.size() < sizeof(Elf64_Ehdr) || std::memcmp(elf.data(), ELFMAG, SELFMAG) != 0) return m;
  const auto* eh = reinterpret_cast<const Elf64_Ehdr*>(elf.data());
  if (eh->e_shoff == 0 || eh->e_shoff + size_t{eh->e_shnum} * sizeof(Elf64_Shdr) > elf.size()) return m;
  const auto* sh = reinterpret_cast<const Elf64_Shdr*>(elf.data() + eh->e_shoff);
  const Elf64_Shdr* symtab = nullptr;
  for (int pass = 0; pass < 2 && !symtab; ++pass)
    for (int i = 0; i < eh->e_shnum; ++i)
      if (sh[i].sh_type == (pass == 0 ? SHT_SYMTAB : SHT_DYNSYM)) symtab = &sh[i];
  if (!symtab || symtab->sh_link >= eh->e_shnum) return m;
  const Elf64_Shdr& strtab = sh[symtab->sh_link];
  if (symtab->sh_offset + symtab->sh_size > elf.size() || strtab.sh_offset + strtab.sh_size > elf.size())
    return m;
  const auto* syms = reinterpret_cast<const Elf64_Sym*>(elf.data() + symtab->sh_offset);
  const size_t count = symtab->sh_size / sizeof(Elf64_Sym);
  for (size_t i = 0; i < count; ++i) {
    const Elf64_Sym& s = syms[i];
    if (s.st_name >= strtab.sh_size) continue;
    const std::string name(elf.data() + strtab.sh_offset + s.st_name);
    const int type = ELF64_ST_TYPE(s.st_info);
    if (type == STT_TLS && name == "threadIdx") m.thread_idx_offset = s.st_value;
    if (type == STT_TLS && s.st_size > 0 && name.rfind("_ZZ", 0) == 0) {
      const std::string pretty = demangle(name);
      if (pretty.find("pyseg::") != std::string::npos && pretty.find("pyseg::emu::") == std::string::npos)
        m.shared.push_back({s.st_value, s.st_size, pretty});
    }
    if (type == STT_FUNC && s.st_size > 0 && s.st_shndx != SHN_UNDEF)
      m.functions.push_back({m.base + s.st_value, m.base + s.st_value + s.st_size, name});
  }
  std::sort(m.shared.begin(), m.shared.end(),
            [](const SharedSymbol& a, const SharedSymbol& b) { return a.offset < b.offset; });
  m.shared.erase(std::unique(m.shared.begin(), m.shared.end(),
                             [](const SharedSymbol& a, const SharedSymbol& b) { return a.offset == b.offset; }),
                 m.shared.end());
  std::sort(m.functions.begin(), m.functions.end(),
            [](const FunctionSymbol& a, const FunctionSymbol& b) { return a.begin < b.begin; });
  return m;
}

const FunctionSymbol* function_at(uintptr_t pc) {
  const auto& f = module_symbols().functions;
  auto it = std::upper_bound(f.begin(), f.end(), pc,
                             [](uintptr_t p, const FunctionSymbol& s) { return p < s.begin; });
  if (it == f.begin()) return nullptr;
  --it;
  return pc < it->end ? &*it : nullptr;
}

std::string kernel_name(const void* kernel) {
  if (const FunctionSymbol* f = function_at(reinterpret_cast<uintptr_t>(kernel)))
    return demangle(f->mangled);
  Dl_info info{};
  if (dladdr(kernel, &info) && info.dli_sname) return demangle(info.dli_sname);
  return "?";
}

// file:line of a pc: the innermost inlined frame outside the shim headers and the standard
// library, from addr2line (run only when a report is written). Paths are cut to csrc/...
std::string source_line(const void* pc) {
  if (!pc) return "?";
  Dl_info info{};
  if (!dladdr(pc, &info) || !info.dli_fname) return "?";
  const uintptr_t offset = reinterpret_cast<uintptr_t>(pc) - reinterpret_cast<uintptr_t>(info.dli_fbase) - 1;
  std::ostringstream cmd;
  cmd << "addr2line -i -e '" << info.dli_fname << "' 0x" << std::hex << offset << " 2>/dev/null";
  std::string first, chosen;
  if (FILE* p = popen(cmd.str().c_str(), "r")) {
    char line[4096];
    while (fgets(line, sizeof line, p)) {
      std::string l(line);
      while (!l.empty() && (l.back() == '\n' || l.back() == '\r')) l.pop_back();
      if (const size_t d = l.find(" (discriminator"); d != std::string::npos) l.resize(d);
      if (first.empty()) first = l;
      const bool shim = l.find("cuda_shim.h") != std::string::npos ||
                        l.find("wmma_shim.h") != std::string::npos ||
                        l.find("cuda_compat.h") != std::string::npos || l.rfind("/usr/", 0) == 0;
      if (chosen.empty() && !shim) chosen = l;
    }
    pclose(p);
  }
  std::string out = chosen.empty() ? first : chosen;
  if (out.empty() || out.rfind("??", 0) == 0) {
    std::ostringstream s;
    s << info.dli_fname << "+0x" << std::hex << offset;
    return s.str();
  }
  if (const size_t c = out.rfind("/csrc/"); c != std::string::npos) out = out.substr(c + 1);
  return out;
}

// ---- Shadow memory for racecheck ---------------------------------------------------------

// What happened to one 2-byte granule within the current epoch (a barrier interval for
// shared memory, a launch for global memory). `who` is a thread (shared) or a block (global)
// plus one; zero means nobody.
struct Cell {
  uint64_t epoch = 0;
  int32_t writer = 0, reader = 0, reader2 = 0;
  uint16_t writer_thread = 0, reader_thread = 0, reader2_thread = 0;
  bool atomic = false;  // the last write was atomic
  const void* writer_pc = nullptr;
  const void* reader_pc = nullptr;
  const void* reader2_pc = nullptr;
};
constexpr size_t kGranule = 2;
constexpr size_t kMaxShadowedBytes = size_t{64} << 20;  // larger buffers skip the global racecheck

struct Conflict {
  const char* what = nullptr;  // null: no race
  int32_t other = 0;
  uint16_t other_thread = 0;
  const void* other_pc = nullptr;
  bool other_wrote = false;
};

// Updates `c` with an access by `who` and returns the race it makes, if any.
Conflict record(Cell& c, uint64_t epoch, int32_t who, uint16_t thread, Kind kind, const void* pc) {
  if (c.epoch != epoch) c = Cell{epoch};
  Conflict r;
  auto other_wrote = [&](const char* what) {
    r = Conflict{what, c.writer, c.writer_thread, c.writer_pc, true};
  };
  auto other_read = [&](const char* what) {
    if (c.reader && c.reader != who) r = Conflict{what, c.reader, c.reader_thread, c.reader_pc, false};
    else if (c.reader2 && c.reader2 != who) r = Conflict{what, c.reader2, c.reader2_thread, c.reader2_pc, false};
  };
  const bool foreign_write = c.writer && c.writer != who;
  if (kind == Kind::kLoad) {
    if (foreign_write) other_wrote(c.atomic ? "read of a word another updated atomically" : "read after write");
    if (!c.reader) c.reader = who, c.reader_thread = thread, c.reader_pc = pc;
    else if (c.reader != who && !c.reader2) c.reader2 = who, c.reader2_thread = thread, c.reader2_pc = pc;
  } else if (kind == Kind::kStore) {
    if (foreign_write) other_wrote("write after write");
    else other_read("write after read");
    c.writer = who, c.writer_thread = thread, c.writer_pc = pc, c.atomic = false;
  } else {
    if (foreign_write && !c.atomic) other_wrote("atomic after a plain write");
    else other_read("atomic after a plain read");
    if (!c.writer || c.atomic) c.writer = who, c.writer_thread = thread, c.writer_pc = pc, c.atomic = true;
  }
  return r;
}

// ---- Per-launch state --------------------------------------------------------------------

struct Buffer {
  uintptr_t begin = 0, end = 0;
  std::string name;
  bool in_launch = false;  // the launch's parameters point into it
  std::vector<Cell> shadow;
};

// One memory request of one thread, for the counters.
struct Access {
  uint32_t warp, occurrence;
  const void* pc;
  uintptr_t address;
  uint8_t bytes;
  bool shared;
  Kind kind;
};

struct SlotState {
  std::vector<unsigned char> static_save;  // interleaved order: this block's static shared memory
  std::vector<Cell> dynamic_shadow;
  std::vector<Access> accesses;
  std::vector<std::unordered_map<const void*, uint32_t>> occurrences;  // per thread: pc -> count
};

struct LaunchState {
  bool active = false;
  const void* kernel = nullptr;
  std::string kernel_name;  // filled when needed
  dim3 grid, block;
  size_t shared_bytes = 0;
  uintptr_t params_begin = 0, params_end = 0;
  uint64_t epoch = 0;
  char* tls_base = nullptr;
  uintptr_t static_begin = 0, static_end = 0;  // span of the static shared variables
  std::vector<Cell> static_shadow;
  std::vector<SlotState> slots;
  LaunchCounters counters;
};

thread_local std::map<uintptr_t, Buffer> g_buffers;  // by begin
thread_local Buffer* g_last_buffer = nullptr;
thread_local LaunchState g_launch;
uint64_t g_launch_epoch = 0;
std::vector<LaunchCounters> g_counters;

const std::string& launch_kernel_name() {
  if (g_launch.kernel_name.empty()) g_launch.kernel_name = kernel_name(g_launch.kernel);
  return g_launch.kernel_name;
}

std::string coords(uint3 v) {
  return "(" + std::to_string(v.x) + ", " + std::to_string(v.y) + ", " + std::to_string(v.z) + ")";
}

std::string hex(uintptr_t v) {
  std::ostringstream s;
  s << "0x" << std::hex << v;
  return s.str();
}

std::string who_am_i() {
  return "kernel " + launch_kernel_name() + ", block " + coords(g_current.bid) + ", thread " +
         coords(g_current.tid);
}

[[noreturn]] void memcheck_error(const void* address, size_t bytes, Kind kind, const void* pc,
                                 const std::string& problem) {
  abort_fiber("memcheck: " + who_am_i() + ": " + std::to_string(bytes) + "-byte " + kind_name(kind) +
              " at " + hex(reinterpret_cast<uintptr_t>(address)) + " " + problem + ", at " +
              source_line(pc));
}

// Where an address outside every buffer is, relative to the nearest buffer.
std::string nearest_buffer(uintptr_t a) {
  const Buffer* best = nullptr;
  uintptr_t distance = ~uintptr_t{0};
  for (const auto& [begin, b] : g_buffers) {
    const uintptr_t d = a < b.begin ? b.begin - a : a >= b.end ? a - b.end : 0;
    if (d < distance) distance = d, best = &b;
  }
  if (!best || distance > (uintptr_t{1} << 20)) return "is outside every buffer of the op";
  const uintptr_t size = best->end - best->begin;
  if (a >= best->end)
    return "is " + std::to_string(a - best->end) + " bytes past the end of buffer '" + best->name +
           "' (" + std::to_string(size) + " bytes at " + hex(best->begin) + ")";
  return "is " + std::to_string(best->begin - a) + " bytes before buffer '" + best->name + "' (" +
         std::to_string(size) + " bytes at " + hex(best->begin) + ")";
}

Buffer* find_buffer(uintptr_t a) {
  if (g_last_buffer && a >= g_last_buffer->begin && a < g_last_buffer->end) return g_last_buffer;
  auto it = g_buffers.upper_bound(a);
  if (it == g_buffers.begin()) return nullptr;
  --it;
  if (a >= it->second.end) return nullptr;
  return g_last_buffer = &it->second;
}

[[noreturn]] void race_error(const char* space, const std::string& where_it_is, const Conflict& c,
                             Kind kind, const void* pc, bool between_blocks) {
  std::string other;
  if (between_blocks)
    other = "block " + coords(unflatten(c.other - 1, g_launch.grid)) + ", thread " +
            coords(unflatten(c.other_thread, g_launch.block));
  else
    other = "thread " + coords(unflatten(c.other - 1, g_launch.block));
  abort_fiber(std::string("racecheck: ") + space + " " + c.what + " on " + where_it_is + ": " +
              who_am_i() + " makes a " + kind_name(kind) + " at " + source_line(pc) + "; " + other +
              (c.other_wrote ? " wrote it" : " read it") + " at " + source_line(c.other_pc) +
              (between_blocks ? " in the same launch (blocks have no order)"
                              : " in the same barrier interval"));
}

void count(bool shared, Kind kind, uintptr_t a, size_t bytes, const void* pc) {
  SlotState& slot = g_launch.slots[g_current.slot];
  uint32_t& n = slot.occurrences[g_current.thread][pc];
  slot.accesses.push_back(Access{static_cast<uint32_t>(g_current.thread / 32), n++, pc, a,
                                 static_cast<uint8_t>(bytes), shared, kind});
}

void check_alignment(const void* address, size_t bytes, Kind kind, const void* pc, const char* space) {
  const size_t align = std::min<size_t>(bytes, 16);
  if ((align & (align - 1)) == 0 && reinterpret_cast<uintptr_t>(address) % align != 0)
    memcheck_error(address, bytes, kind, pc, std::string("is misaligned for its size (") + space + " memory)");
}

// Where a shared access is, for a report: `offset` bytes into the static __shared__ variable
// `symbol`, or into dynamic shared memory when `symbol` is null.
std::string shared_location(const SharedSymbol* symbol, size_t offset) {
  return symbol ? symbol->name + " byte " + std::to_string(offset)
                : "dynamic shared memory offset " + std::to_string(offset);
}

void on_shared(const void* address, size_t bytes, Kind kind, const void* pc, std::vector<Cell>& shadow,
               uintptr_t shadow_begin, const SharedSymbol* symbol, size_t offset) {
  if (g_checks.memcheck) check_alignment(address, bytes, kind, pc, "shared");
  const uintptr_t a = reinterpret_cast<uintptr_t>(address);
  if (g_checks.racecheck) {
    const uintptr_t last = std::min<uintptr_t>((a + bytes - 1 - shadow_begin) / kGranule, shadow.size() - 1);
    for (uintptr_t g = (a - shadow_begin) / kGranule; g <= last; ++g) {
      const Conflict c = record(shadow[g], g_current.interval, g_current.thread + 1,
                                static_cast<uint16_t>(g_current.thread), kind, pc);
      if (c.what) race_error("shared-memory", shared_location(symbol, offset), c, kind, pc, false);
    }
  }
  if (g_checks.counters) count(true, kind, a, bytes, pc);
}

void on_access(const void* address, size_t bytes, Kind kind, const void* pc) {
  const char* p = static_cast<const char*>(address);
  const uintptr_t a = reinterpret_cast<uintptr_t>(address);
  Current& cur = g_current;
  if (p >= cur.stack_lo && p < cur.stack_hi) return;  // the thread's own stack
  if (!g_launch.active) return;
  if (kind == Kind::kAtomic) ++g_launch.counters.atomics;
  if (a >= g_launch.params_begin && a < g_launch.params_end) {
    if (kind != Kind::kLoad && g_checks.memcheck)
      memcheck_error(address, bytes, kind, pc, "writes the launch's kernel parameters");
    return;
  }
  const void* coordinates[] = {&threadIdx, &blockIdx, &blockDim, &gridDim};
  for (const void* c : coordinates)
    if (p >= static_cast<const char*>(c) && p < static_cast<const char*>(c) + sizeof(uint3)) return;

  // Shared memory: dynamic, then static.
  const uintptr_t dyn = reinterpret_cast<uintptr_t>(cur.dynamic_shared);
  if (dyn && a >= dyn && a < dyn + kDynamicSharedCapacity) {
    if (g_checks.memcheck && a + bytes > dyn + g_launch.shared_bytes)
      memcheck_error(address, bytes, kind, pc,
                     "is outside the block's " + std::to_string(g_launch.shared_bytes) +
                         " bytes of dynamic shared memory (offset " + std::to_string(a - dyn) + ")");
    on_shared(address, bytes, kind, pc, g_launch.slots[cur.slot].dynamic_shadow, dyn, nullptr, a - dyn);
    return;
  }
  if (a >= g_launch.static_begin && a < g_launch.static_end) {
    const auto& symbols = module_symbols().shared;
    const size_t offset = static_cast<size_t>(p - g_launch.tls_base);
    auto it = std::upper_bound(symbols.begin(), symbols.end(), offset,
                               [](size_t o, const SharedSymbol& s) { return o < s.offset; });
    if (it != symbols.begin()) --it;
    const bool inside = offset >= it->offset && offset + bytes <= it->offset + it->bytes;
    if (!inside) {
      if (g_checks.memcheck)
        memcheck_error(address, bytes, kind, pc, "is outside every static __shared__ variable (nearest: " +
                                                     it->name + ", " + std::to_string(it->bytes) + " bytes)");
      return;
    }
    on_shared(address, bytes, kind, pc, g_launch.static_shadow, g_launch.static_begin, &*it,
              offset - it->offset);
    return;
  }

  // Global memory.
  Buffer* b = find_buffer(a);
  if (!b) {
    const ModuleSymbols& m = module_symbols();
    if (a >= m.image_begin && a < m.image_end && kind == Kind::kLoad) return;  // constant data
    if (g_checks.memcheck) memcheck_error(address, bytes, kind, pc, nearest_buffer(a));
    return;
  }
  if (g_checks.memcheck) {
    if (a + bytes > b->end)
      memcheck_error(address, bytes, kind, pc,
                     "runs " + std::to_string(a + bytes - b->end) + " bytes past the end of buffer '" +
                         b->name + "' (" + std::to_string(b->end - b->begin) + " bytes)");
    if (!b->in_launch)
      memcheck_error(address, bytes, kind, pc,
                     "is in buffer '" + b->name + "', which is not among the launch's arguments");
    check_alignment(address, bytes, kind, pc, "global");
  }
  if (g_checks.racecheck && b->end - b->begin <= kMaxShadowedBytes) {
    if (b->shadow.empty()) b->shadow.resize((b->end - b->begin + kGranule - 1) / kGranule);
    const uintptr_t last = std::min<uintptr_t>(a + bytes, b->end) - 1;
    for (uintptr_t g = (a - b->begin) / kGranule; g <= (last - b->begin) / kGranule; ++g) {
      const Conflict c = record(b->shadow[g], g_launch.epoch, static_cast<int32_t>(cur.block + 1),
                                static_cast<uint16_t>(cur.thread), kind, pc);
      if (c.what)
        race_error("global-memory", "byte " + std::to_string(a - b->begin) + " of buffer '" + b->name + "'",
                   c, kind, pc, true);
    }
  }
  if (g_checks.counters) count(false, kind, a, bytes, pc);
}

// Adds one block's requests to the launch's counters: accesses of the lanes of one warp
// that are the n-th execution of the same instruction (pc) form one request.
void aggregate(SlotState& slot) {
  auto& v = slot.accesses;
  std::sort(v.begin(), v.end(), [](const Access& x, const Access& y) {
    return std::tie(x.shared, x.kind, x.warp, x.pc, x.occurrence) <
           std::tie(y.shared, y.kind, y.warp, y.pc, y.occurrence);
  });
  LaunchCounters& c = g_launch.counters;
  std::vector<uintptr_t> units;
  for (size_t i = 0; i < v.size();) {
    size_t j = i;
    while (j < v.size() && v[j].shared == v[i].shared && v[j].kind == v[i].kind && v[j].warp == v[i].warp &&
           v[j].pc == v[i].pc && v[j].occurrence == v[i].occurrence)
      ++j;
    // Distinct bytes, as distinct (address) of every byte touched.
    units.clear();
    for (size_t k = i; k < j; ++k)
      for (size_t b = 0; b < v[k].bytes; ++b) units.push_back(v[k].address + b);
    std::sort(units.begin(), units.end());
    units.erase(std::unique(units.begin(), units.end()), units.end());
    const int64_t distinct_bytes = static_cast<int64_t>(units.size());
    if (!v[i].shared) {
      int64_t sectors = 0;
      uintptr_t last = ~uintptr_t{0};
      for (uintptr_t u : units)
        if (u / 32 != last) ++sectors, last = u / 32;
      const int64_t ideal = (distinct_bytes + 31) / 32;
      if (v[i].kind == Kind::kLoad) {
        ++c.global_load_requests, c.global_load_sectors += sectors, c.global_load_ideal_sectors += ideal;
      } else {  // stores and atomics write
        ++c.global_store_requests, c.global_store_sectors += sectors, c.global_store_ideal_sectors += ideal;
      }
    } else {
      // Wavefronts: distinct 4-byte words in the busiest of the 32 banks (a word read by
      // several lanes is broadcast), and at least one per 128 bytes.
      int64_t per_bank[32] = {};
      uintptr_t last = ~uintptr_t{0};
      for (uintptr_t u : units)
        if (u / 4 != last) ++per_bank[(u / 4) % 32], last = u / 4;
      const int64_t ideal = (distinct_bytes + 127) / 128;
      const int64_t wavefronts = std::max(*std::max_element(per_bank, per_bank + 32), ideal);
      ++c.shared_requests, c.shared_wavefronts += wavefronts, c.shared_ideal_wavefronts += ideal;
    }
    i = j;
  }
  v.clear();
}

}  // namespace

// ---- Called by the scheduler -------------------------------------------------------------

void begin_launch(const void* kernel, dim3 grid, dim3 block, size_t shared_bytes, const void* params,
                  size_t param_bytes, int resident_slots) {
  LaunchState& L = g_launch;
  L = LaunchState{};
  L.active = instrumented();
  L.kernel = kernel;
  L.grid = grid;
  L.block = block;
  L.shared_bytes = shared_bytes;
  L.params_begin = reinterpret_cast<uintptr_t>(params);
  L.params_end = L.params_begin + param_bytes;
  L.epoch = ++g_launch_epoch;
  const ModuleSymbols& m = module_symbols();
  L.tls_base = reinterpret_cast<char*>(&threadIdx) - m.thread_idx_offset;
  if (!m.shared.empty()) {
    L.static_begin = reinterpret_cast<uintptr_t>(L.tls_base + m.shared.front().offset);
    L.static_end = reinterpret_cast<uintptr_t>(L.tls_base + m.shared.back().offset + m.shared.back().bytes);
    if (g_checks.racecheck) L.static_shadow.resize((L.static_end - L.static_begin) / kGranule + 1);
  }
  const int threads = static_cast<int>(int64_t{block.x} * block.y * block.z);
  L.slots.resize(resident_slots);
  for (SlotState& s : L.slots) {
    if (g_checks.racecheck) s.dynamic_shadow.resize(shared_bytes / kGranule + 1);
    if (g_checks.counters) s.occurrences.resize(threads);
  }
  // The launch's buffers: those its parameters point into (any 8-byte word of the
  // parameter block that is an address inside, or one past, a registered buffer).
  for (auto& [begin, b] : g_buffers) {
    b.in_launch = false;
    b.shadow.clear();
  }
  g_last_buffer = nullptr;
  for (size_t off = 0; off + sizeof(uintptr_t) <= param_bytes; off += sizeof(uintptr_t)) {
    uintptr_t word;
    std::memcpy(&word, static_cast<const char*>(params) + off, sizeof word);
    auto it = g_buffers.upper_bound(word);
    if (it == g_buffers.begin()) continue;
    --it;
    if (word <= it->second.end) it->second.in_launch = true;
  }
  L.counters.grid = grid;
  L.counters.block = block;
}

void end_launch(bool completed) {
  LaunchState& L = g_launch;
  if (completed && L.active && g_checks.counters) {
    L.counters.kernel = launch_kernel_name();
    g_counters.push_back(L.counters);
  }
  for (auto& [begin, b] : g_buffers) b.shadow = std::vector<Cell>();
  L = LaunchState{};
  g_current = Current{};
}

void begin_block(int slot) {
  LaunchState& L = g_launch;
  if (!L.active) return;
  for (const SharedSymbol& s : module_symbols().shared) std::memset(L.tls_base + s.offset, 0xFF, s.bytes);
}

void end_block(int slot) {
  if (g_launch.active && g_checks.counters) aggregate(g_launch.slots[slot]);
}

void switch_static_shared(int from, int to) {
  LaunchState& L = g_launch;
  if (L.static_begin == L.static_end) return;
  const size_t span = L.static_end - L.static_begin;
  auto* live = reinterpret_cast<unsigned char*>(L.static_begin);
  std::vector<unsigned char>& save = L.slots[from].static_save;
  save.assign(live, live + span);
  std::vector<unsigned char>& restore = L.slots[to].static_save;
  if (restore.size() == span) std::memcpy(live, restore.data(), span);
}

void note_barrier() {
  if (g_launch.active) ++g_launch.counters.barriers;
}

void note_warp_collective(bool divergent) {
  if (!g_launch.active) return;
  ++g_launch.counters.warp_collectives;
  if (divergent) ++g_launch.counters.divergent_collectives;
}

void clear_launch_counters() { g_counters.clear(); }

}  // namespace detail

// ---- Public API (runtime.h, cuda_shim.h) -------------------------------------------------

void set_checks(const Checks& checks) { detail::g_checks = checks; }
Checks checks() { return detail::g_checks; }

bool instrumented() {
#if defined(PYSEG_EMU_CHECKS)
  return true;
#else
  return false;
#endif
}

void register_buffer(const void* begin, size_t bytes, std::string name) {
  if (!begin || bytes == 0) return;
  const auto b = reinterpret_cast<uintptr_t>(begin);
  auto& buffers = detail::g_buffers;
  auto it = buffers.find(b);
  if (it != buffers.end()) {
    // Two tensors on one storage (a view and its base): keep the larger extent.
    if (b + bytes > it->second.end) it->second.end = b + bytes;
    return;
  }
  detail::g_last_buffer = nullptr;
  buffers.emplace(b, detail::Buffer{b, b + bytes, std::move(name), false, {}});
}

void unregister_buffer(const void* begin) {
  detail::g_last_buffer = nullptr;
  detail::g_buffers.erase(reinterpret_cast<uintptr_t>(begin));
}

std::vector<LaunchCounters> launch_counters() { return detail::g_counters; }

PYSEG_EMU_NOT_INSTRUMENTED void atomic_begin(const void* address, size_t bytes) {
  detail::Current& cur = detail::g_current;
  if (!cur.in_kernel) return;
  cur.in_kernel = false;
  detail::on_access(address, bytes, detail::Kind::kAtomic, __builtin_return_address(0));
  cur.in_atomic = true;  // the plain load and store that follow are the atomic itself
}

PYSEG_EMU_NOT_INSTRUMENTED void atomic_end() {
  detail::Current& cur = detail::g_current;
  if (!cur.in_atomic) return;
  cur.in_atomic = false;
  cur.in_kernel = true;
}

}  // namespace pyseg::emu

// ---- The hooks GCC's -fsanitize=thread calls ---------------------------------------------

namespace {

__attribute__((no_sanitize_thread)) inline void hook(const void* address, size_t bytes,
                                            pyseg::emu::detail::Kind kind, const void* pc) {
  auto& cur = pyseg::emu::detail::g_current;
  if (!cur.in_kernel) return;
  cur.in_kernel = false;  // what on_access runs is not kernel code
  pyseg::emu::detail::on_access(address, bytes, kind, pc);
  cur.in_kernel = true;
}

}  // namespace

#define PYSEG_EMU_HOOK_(name, n, kind)                                       \
  extern "C" PYSEG_EMU_NOT_INSTRUMENTED void __tsan_##name##n(void* p) {     \
    hook(p, n, pyseg::emu::detail::Kind::kind, __builtin_return_address(0)); \
  }
#define PYSEG_EMU_HOOKS_(n)                                                             \
  PYSEG_EMU_HOOK_(read, n, kLoad) PYSEG_EMU_HOOK_(write, n, kStore)                     \
  PYSEG_EMU_HOOK_(unaligned_read, n, kLoad) PYSEG_EMU_HOOK_(unaligned_write, n, kStore) \
  PYSEG_EMU_HOOK_(volatile_read, n, kLoad) PYSEG_EMU_HOOK_(volatile_write, n, kStore)
PYSEG_EMU_HOOKS_(1)
PYSEG_EMU_HOOKS_(2)
PYSEG_EMU_HOOKS_(4)
PYSEG_EMU_HOOKS_(8)
PYSEG_EMU_HOOKS_(16)
#undef PYSEG_EMU_HOOKS_
#undef PYSEG_EMU_HOOK_

extern "C" PYSEG_EMU_NOT_INSTRUMENTED void __tsan_read_range(void* p, unsigned long n) {
  hook(p, n, pyseg::emu::detail::Kind::kLoad, __builtin_return_address(0));
}
extern "C" PYSEG_EMU_NOT_INSTRUMENTED void __tsan_write_range(void* p, unsigned long n) {
  hook(p, n, pyseg::emu::detail::Kind::kStore, __builtin_return_address(0));
}
// Called from a constructor of every instrumented translation unit; nothing to set up.
extern "C" PYSEG_EMU_NOT_INSTRUMENTED void __tsan_init() {}
extern "C" PYSEG_EMU_NOT_INSTRUMENTED void __tsan_func_entry(void*) {}
extern "C" PYSEG_EMU_NOT_INSTRUMENTED void __tsan_func_exit() {}
extern "C" PYSEG_EMU_NOT_INSTRUMENTED void __tsan_vptr_read(void**) {}
extern "C" PYSEG_EMU_NOT_INSTRUMENTED void __tsan_vptr_update(void**, void*) {}

// std::atomic operations of instrumented code (torch's reference counts in host code) become
// __tsan_atomicN_* calls: do them, with sequential consistency. Kernels use CUDA atomics
// (cuda_shim.h), never std::atomic, so these are never kernel accesses.
#define PYSEG_EMU_FETCH_(bits, T, op)                                                                 \
  extern "C" PYSEG_EMU_NOT_INSTRUMENTED T __tsan_atomic##bits##_fetch_##op(volatile T* a, T v, int) { \
    return __atomic_fetch_##op(a, v, __ATOMIC_SEQ_CST);                                               \
  }
#define PYSEG_EMU_ATOMICS_(bits, T)                                                                   \
  extern "C" PYSEG_EMU_NOT_INSTRUMENTED T __tsan_atomic##bits##_load(const volatile T* a, int) {      \
    return __atomic_load_n(a, __ATOMIC_SEQ_CST);                                                      \
  }                                                                                                   \
  extern "C" PYSEG_EMU_NOT_INSTRUMENTED void __tsan_atomic##bits##_store(volatile T* a, T v, int) {   \
    __atomic_store_n(a, v, __ATOMIC_SEQ_CST);                                                         \
  }                                                                                                   \
  extern "C" PYSEG_EMU_NOT_INSTRUMENTED T __tsan_atomic##bits##_exchange(volatile T* a, T v, int) {   \
    return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST);                                               \
  }                                                                                                   \
  PYSEG_EMU_FETCH_(bits, T, add) PYSEG_EMU_FETCH_(bits, T, sub) PYSEG_EMU_FETCH_(bits, T, and)        \
  PYSEG_EMU_FETCH_(bits, T, or) PYSEG_EMU_FETCH_(bits, T, xor) PYSEG_EMU_FETCH_(bits, T, nand)        \
  extern "C" PYSEG_EMU_NOT_INSTRUMENTED int __tsan_atomic##bits##_compare_exchange_strong(            \
      volatile T* a, T* expected, T v, int, int) {                                                    \
    return __atomic_compare_exchange_n(a, expected, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);    \
  }                                                                                                   \
  extern "C" PYSEG_EMU_NOT_INSTRUMENTED int __tsan_atomic##bits##_compare_exchange_weak(              \
      volatile T* a, T* expected, T v, int, int) {                                                    \
    return __atomic_compare_exchange_n(a, expected, v, true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);     \
  }                                                                                                   \
  extern "C" PYSEG_EMU_NOT_INSTRUMENTED T __tsan_atomic##bits##_compare_exchange_val(                 \
      volatile T* a, T expected, T v, int, int) {                                                     \
    __atomic_compare_exchange_n(a, &expected, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);          \
    return expected;                                                                                  \
  }
PYSEG_EMU_ATOMICS_(8, char)
PYSEG_EMU_ATOMICS_(16, short)
PYSEG_EMU_ATOMICS_(32, int)
PYSEG_EMU_ATOMICS_(64, long)
#undef PYSEG_EMU_ATOMICS_
#undef PYSEG_EMU_FETCH_
extern "C" PYSEG_EMU_NOT_INSTRUMENTED void __tsan_atomic_thread_fence(int) {
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
}
extern "C" PYSEG_EMU_NOT_INSTRUMENTED void __tsan_atomic_signal_fence(int) {
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
}
