// CPU feature detection. x86: cpuid leaves 1 and 7 plus xgetbv, so a feature counts only when the
// OS saves its registers. ARM: getauxval hwcaps. Physical cores from Linux sysfs topology,
// limited to the CPUs this process may run on.
#include "cpu.h"

#include <fstream>
#include <set>
#include <thread>
#include <utility>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif
#if defined(__linux__)
#include <sched.h>
#endif

namespace lb {

#if defined(__x86_64__) || defined(_M_X64)
static void detect_x86(cpu_features &f) {
  f.arch = "x64";
  unsigned a, b, c, d;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return;
  const unsigned vendor[3] = {b, d, c};  // the string's order
  f.vendor.assign(reinterpret_cast<const char *>(vendor), sizeof vendor);
  if (!__get_cpuid(1, &a, &b, &c, &d)) return;
  // Family 0xf continues in the extended field (Intel SDM and AMD APM: "display family").
  f.family = (a >> 8) & 0xf;
  if (f.family == 0xf) f.family += (a >> 20) & 0xff;
  const bool osxsave = c & (1u << 27), avx = c & (1u << 28);
  f.fma = c & (1u << 12);
  f.f16c = c & (1u << 29);
  if (!osxsave || !avx) return;
  unsigned xlo, xhi;
  __asm__("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
  const bool ymm_saved = (xlo & 0x6) == 0x6;
  const bool zmm_saved = (xlo & 0xe6) == 0xe6;  // also opmask and upper zmm state
  if (!ymm_saved) return;
  __cpuid_count(7, 0, a, b, c, d);
  f.avx2 = b & (1u << 5);
  f.bmi2 = b & (1u << 8);
  f.gfni = c & (1u << 8);
  if (zmm_saved) {
    f.avx512f = b & (1u << 16);
    f.avx512dq = b & (1u << 17);
    f.avx512bw = b & (1u << 30);
    f.avx512vl = b & (1u << 31);
    f.avx512vbmi = c & (1u << 1);
    f.avx512vnni = c & (1u << 11);
  }
}
#endif

#if defined(__aarch64__)
static void detect_arm(cpu_features &f) {
  f.arch = "arm64";
  f.neon = true;  // Advanced SIMD is mandatory on AArch64
#if defined(__linux__)
  const unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
  f.dotprod = hw & (1ul << 20);  // HWCAP_ASIMDDP
  f.i8mm = hw2 & (1ul << 13);    // HWCAP2_I8MM
#elif defined(__APPLE__)
  f.dotprod = true;  // every Apple silicon core has it
#endif
}
#endif

static int read_int(const std::string &path) {
  std::ifstream in(path);
  int v = -1;
  in >> v;
  return in ? v : -1;
}

static void count_cores(cpu_features &f) {
  f.logical_cores = (int)std::thread::hardware_concurrency();
  if (f.logical_cores < 1) f.logical_cores = 1;
  f.physical_cores = f.logical_cores;
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return;
  std::set<std::pair<int, int>> cores;  // (package, core) of every CPU we may use
  int allowed = 0;
  for (int i = 0; i < CPU_SETSIZE; i++) {
    if (!CPU_ISSET(i, &set)) continue;
    allowed++;
    const std::string topo = "/sys/devices/system/cpu/cpu" + std::to_string(i) + "/topology/";
    cores.insert({read_int(topo + "physical_package_id"), read_int(topo + "core_id")});
  }
  if (allowed > 0) f.logical_cores = allowed;
  const bool topology_known = !cores.empty() && cores.begin()->second >= 0;
  f.physical_cores = topology_known ? (int)cores.size() : f.logical_cores;
#endif
}

const cpu_features &cpu() {
  static const cpu_features features = [] {
    cpu_features f;
    f.arch = "other";
#if defined(__x86_64__) || defined(_M_X64)
    detect_x86(f);
#elif defined(__aarch64__)
    detect_arm(f);
#endif
    count_cores(f);
    return f;
  }();
  return features;
}

}  // namespace lb
