// ISA detection and the dispatch state: which ISA paths this CPU and build can run (CPUID via libgcc, AMX with
// Linux's permission for the tile state), the CPUs this process may use, the thread pool and parallel() (isa.h),
// the caches CPUID describes, and the Node-API functions info(), setIsa() and setThreads().
#include <node_api.h>
#if defined(__linux__)
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif
#include <string.h>

#include <mutex>
#include <vector>

#include "isa.h"
#include "kernels.h"
#include "napi_util.h"
#include "threadpool.h"

namespace bd {

const IsaKernels* g_isa = nullptr;
ThreadPool* g_pool = nullptr;

namespace {

// ---------------------------------------------------------------------------------------------------------
// ISA detection and state

bool cpu_has_avx2() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

bool cpu_has_avx512vnni() {
#if defined(__x86_64__) && defined(__GNUC__)
  // libgcc's __builtin_cpu_supports also checks that the OS saves the zmm state (XCR0).
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512vnni") && cpu_has_avx2();
#else
  return false;
#endif
}

// AMX-TILE + AMX-INT8 (CPUID.7.0:EDX bits 24, 25), and Linux's permission to use the tile data state
// (arch_prctl ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA; process-wide, asked once).
bool cpu_has_amx() {
#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
  static const bool ok = [] {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    if ((d & (1u << 24)) == 0 || (d & (1u << 25)) == 0) return false;
    constexpr int kArchReqXcompPerm = 0x1023;
    constexpr int kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return ok;
#else
  return false;
#endif
}

// AVX512_BF16 (CPUID.(7,1):EAX bit 5) on top of the AVX-512 VNNI ISA (Zen 4, Cooper Lake, Sapphire Rapids).
bool cpu_has_avx512bf16() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool ok = [] {
    unsigned a, b, c, d;
    if (!cpu_has_avx512vnni() || !__get_cpuid_count(7, 1, &a, &b, &c, &d)) return false;
    return (a & (1u << 5)) != 0;
  }();
  return ok;
#else
  return false;
#endif
}

// The "amx" ISA: the AVX-512 VNNI table with the AMX ternary product.
const IsaKernels* amx_isa() {
  static const IsaKernels table = [] {
    IsaKernels t = *kAvx512VnniKernels;
    t.name = "amx";
    t.ternary = kAmxKernels->ternary;
    return t;
  }();
  return &table;
}

// Usable ISAs, lowest first.
std::vector<const IsaKernels*> available_isas() {
  std::vector<const IsaKernels*> out{kScalarKernels};
  if (kAvx2Kernels != nullptr && cpu_has_avx2()) out.push_back(kAvx2Kernels);
  if (kAvx512VnniKernels != nullptr && cpu_has_avx512vnni()) {
    out.push_back(kAvx512VnniKernels);
    if (kAmxKernels != nullptr && cpu_has_amx()) out.push_back(amx_isa());
  }
  return out;
}

// CPUs this process may run on (a container's cpuset or taskset, not the whole host).
int cpu_count() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

std::mutex g_run_mutex;

// The data/unified caches CPUID describes (deterministic cache parameters: leaf 4 on Intel, 0x8000001D on AMD
// with TopologyExtensions), as {level, type, bytes, sharedBy}. A VM's sysfs often has no L3 entry while CPUID
// passes the host's through; the benchmarks size their cold-weight rotation from this.
struct CacheLevel {
  int level;
  int type;  // 1 data, 3 unified
  int64_t bytes;
  int shared_by;
  const char* leaf;  // "deterministic", or AMD's older leaf "0x80000005" / "0x80000006" (whose L3 is the whole package's on some parts)
};

std::vector<CacheLevel> cpuid_caches() {
  std::vector<CacheLevel> out;
#if defined(__x86_64__) && defined(__GNUC__)
  unsigned a, b, c, d;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return out;
  const bool amd = b == 0x68747541u || b == 0x6f677948u;  // "Auth"enticAMD, "Hygo"nGenuine
  unsigned leaf = 4;
  if (amd) {
    // Leaf 0x80000006 EDX[31:18]: L3 size in 512 KiB units. Under a VM it can describe the host package (tens of
    // CCXs) where 0x8000001D describes one CCX; both are reported and a benchmark takes the larger.
    if (__get_cpuid(0x80000006u, &a, &b, &c, &d) && (d >> 18) != 0) out.push_back({3, 3, static_cast<int64_t>(d >> 18) * 512 * 1024, 0, "0x80000006"});
    if (!__get_cpuid(0x80000001u, &a, &b, &c, &d) || (c & (1u << 22)) == 0) {
      // No TopologyExtensions (seen on a Zen 5 VM): the legacy leaves still give L1D (0x80000005 ECX[31:24], KiB)
      // and L2 (0x80000006 ECX[31:16], KiB), per core.
      if (__get_cpuid(0x80000006u, &a, &b, &c, &d) && (c >> 16) != 0) out.push_back({2, 3, static_cast<int64_t>(c >> 16) * 1024, 1, "0x80000006"});
      if (__get_cpuid(0x80000005u, &a, &b, &c, &d) && (c >> 24) != 0) out.push_back({1, 1, static_cast<int64_t>(c >> 24) * 1024, 1, "0x80000005"});
      return out;
    }
    leaf = 0x8000001Du;
  } else if (a < 4) {
    return out;
  }
  for (unsigned i = 0; i < 16; i++) {
    __cpuid_count(leaf, i, a, b, c, d);
    const int type = static_cast<int>(a & 31);
    if (type == 0) break;
    if (type == 2) continue;  // instruction cache
    const int64_t ways = ((b >> 22) & 1023) + 1, parts = ((b >> 12) & 1023) + 1, line = (b & 4095) + 1, sets = static_cast<int64_t>(c) + 1;
    out.push_back({static_cast<int>((a >> 5) & 7), type, ways * parts * line * sets, static_cast<int>(((a >> 14) & 4095) + 1), "deterministic"});
  }
#endif
  return out;
}

// info() -> {isa, available: string[], threads, cpus}
napi_value Info(napi_env env, napi_callback_info) {
  napi_value obj, arr;
  napi_create_object(env, &obj);
  napi_set_named_property(env, obj, "isa", make_string(env, g_isa->name));
  auto isas = available_isas();
  napi_create_array_with_length(env, isas.size(), &arr);
  for (size_t i = 0; i < isas.size(); i++) napi_set_element(env, arr, static_cast<uint32_t>(i), make_string(env, isas[i]->name));
  napi_set_named_property(env, obj, "available", arr);
  napi_set_named_property(env, obj, "threads", make_number(env, g_pool->size()));
  napi_set_named_property(env, obj, "cpus", make_number(env, cpu_count()));
  napi_value bf;
  napi_get_boolean(env, bf16_gemm() != nullptr, &bf);
  napi_set_named_property(env, obj, "bf16", bf);
  const auto caches = cpuid_caches();
  napi_value carr;
  napi_create_array_with_length(env, caches.size(), &carr);
  for (size_t i = 0; i < caches.size(); i++) {
    napi_value o;
    napi_create_object(env, &o);
    napi_set_named_property(env, o, "level", make_number(env, caches[i].level));
    napi_set_named_property(env, o, "type", make_string(env, caches[i].type == 1 ? "data" : "unified"));
    napi_set_named_property(env, o, "bytes", make_number(env, static_cast<double>(caches[i].bytes)));
    napi_set_named_property(env, o, "sharedBy", make_number(env, caches[i].shared_by));
    napi_set_named_property(env, o, "leaf", make_string(env, caches[i].leaf));
    napi_set_element(env, carr, static_cast<uint32_t>(i), o);
  }
  napi_set_named_property(env, obj, "caches", carr);
  return obj;
}

// setIsa(name) -> boolean (false: not available on this CPU or build)
napi_value SetIsa(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return nullptr;
  char name[32];
  size_t len;
  if (napi_get_value_string_utf8(env, argv[0], name, sizeof(name), &len) != napi_ok) {
    napi_throw_type_error(env, "E_ARGUMENT", "setIsa: expected a string");
    return nullptr;
  }
  bool found = false;
  for (const IsaKernels* k : available_isas()) {
    if (strcmp(k->name, name) == 0) {
      g_isa = k;
      found = true;
    }
  }
  napi_value out;
  napi_get_boolean(env, found, &out);
  return out;
}

// setThreads(n) -> n
napi_value SetThreads(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int64_t n;
  if (!get_args(env, info, 1, argv) || !get_i64(env, argv[0], 1, 256, &n, "threads")) return nullptr;
  std::lock_guard<std::mutex> lock(g_run_mutex);
  g_pool->resize(static_cast<int>(n));
  return make_number(env, static_cast<double>(n));
}

}  // namespace

const Bf16Kernels* bf16_gemm() {
  const bool avx512 = g_isa == kAvx512VnniKernels || strcmp(g_isa->name, "amx") == 0;
  return avx512 && cpu_has_avx512bf16() ? kBf16Avx512 : nullptr;
}

void init_dispatch() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_isa = available_isas().back();
    g_pool = new ThreadPool(cpu_count());
  });
}

void parallel(int64_t nchunks, ThreadPool::Fn fn, void* ctx) {
  std::unique_lock<std::mutex> lock(g_run_mutex, std::try_to_lock);
  if (!lock.owns_lock()) {
    for (int64_t c = 0; c < nchunks; c++) fn(ctx, c, nchunks);
    return;
  }
  g_pool->run(nchunks, fn, ctx);
}

void register_isa(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"info", nullptr, Info, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"setIsa", nullptr, SetIsa, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"setThreads", nullptr, SetThreads, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
}

}  // namespace bd
