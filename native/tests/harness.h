// A minimal test harness (the same binary is cross-built for aarch64 and run under qemu, so it
// depends on nothing but the standard library). TEST(name) registers a test; CHECK* record
// failures with file and line and keep going.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace lbtest {

struct test_case {
  const char *name;
  std::function<void()> fn;
};

std::vector<test_case> &registry();
void record_failure(const char *file, int line, const std::string &what);
int failures();

struct registrar {
  registrar(const char *name, std::function<void()> fn) { registry().push_back({name, std::move(fn)}); }
};

// Deterministic random numbers for a test.
struct rng {
  std::mt19937_64 gen;
  explicit rng(uint64_t seed) : gen(seed) {}
  float normal() { return std::normal_distribution<float>(0.0f, 1.0f)(gen); }
  float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(gen); }
  int below(int n) { return (int)(gen() % (uint64_t)n); }
};

}  // namespace lbtest

#define LB_CONCAT2(a, b) a##b
#define LB_CONCAT(a, b) LB_CONCAT2(a, b)
#define TEST(name)                                                                 \
  static void LB_CONCAT(test_, name)();                                             \
  static lbtest::registrar LB_CONCAT(reg_, name)(#name, LB_CONCAT(test_, name));    \
  static void LB_CONCAT(test_, name)()

#define CHECK(cond)                                                                          \
  do {                                                                                       \
    if (!(cond)) lbtest::record_failure(__FILE__, __LINE__, "CHECK(" #cond ") failed");      \
  } while (0)

#define CHECK_MSG(cond, msg)                                                                 \
  do {                                                                                       \
    if (!(cond)) lbtest::record_failure(__FILE__, __LINE__, std::string(msg));               \
  } while (0)
