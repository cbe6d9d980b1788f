// Runs every registered test, or those whose name contains argv[1]. Exit status 1 on failure.
#include <cstring>

#include "../kernels/kernels.h"
#include "harness.h"

namespace lbtest {

std::vector<test_case> &registry() {
  static std::vector<test_case> tests;
  return tests;
}

static int g_failures = 0;
static const char *g_current = "";

void record_failure(const char *file, int line, const std::string &what) {
  if (++g_failures <= 50) std::fprintf(stderr, "  FAIL %s (%s:%d): %s\n", g_current, file, line, what.c_str());
}

int failures() { return g_failures; }

}  // namespace lbtest

int main(int argc, char **argv) {
  const char *filter = argc > 1 ? argv[1] : "";
  std::printf("lowbit native tests; ISAs available:");
  for (int i = 0; i < lb::ISA_COUNT; i++)
    if (lb::isa_supported((lb::isa)i)) std::printf(" %s", lb::isa_name((lb::isa)i));
  std::printf("\n");
  int run = 0;
  for (const auto &t : lbtest::registry()) {
    if (!std::strstr(t.name, filter)) continue;
    lbtest::g_current = t.name;
    const int before = lbtest::failures();
    t.fn();
    run++;
    std::printf("%s %s\n", lbtest::failures() == before ? "ok  " : "FAIL", t.name);
  }
  std::printf("%d tests, %d failed checks\n", run, lbtest::failures());
  return lbtest::failures() ? 1 : 0;
}
