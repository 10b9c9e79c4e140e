#include "proto/base/assert.hh"

#include <atomic>
#include <cstdio>
#include <cstdlib>

namespace ferry {

namespace {
std::atomic<std::uint64_t> g_bugs{0};
}

void assert_fail(const char* expr, const char* file, int line) noexcept {
    std::fprintf(stderr, "ferry: assertion failed: %s at %s:%d\n", expr, file, line);
    std::abort();
}

void bug_report(const char* expr, const char* msg, const char* file, int line) noexcept {
    std::uint64_t n = g_bugs.fetch_add(1, std::memory_order_relaxed);
    if (n < 16) std::fprintf(stderr, "ferry: BUG %s (%s) at %s:%d\n", msg, expr, file, line);
#ifdef FERRY_DEBUG
    std::abort();
#endif
}

std::uint64_t bug_count() noexcept { return g_bugs.load(std::memory_order_relaxed); }

}  // namespace ferry
