#pragma once
// Three assertion levels (STYLE 5). None of them may ever be used on peer input: peer input is
// validated and turned into an `error`.
//
//   FERRY_DASSERT(c)  debug builds only; documents a precondition.
//   FERRY_ASSERT(c)   all builds; a broken internal invariant, aborts with file:line.
//   FERRY_BUG(c, msg) all builds; logs once per site and counts in release (see bug_count()),
//                     aborts in debug. For "should not happen, but continuing is safe".
#include <cstdint>

namespace ferry {
[[noreturn]] void assert_fail(const char* expr, const char* file, int line) noexcept;
void bug_report(const char* expr, const char* msg, const char* file, int line) noexcept;
// Number of FERRY_BUG hits in this process (exported as a metric by the control plane).
std::uint64_t bug_count() noexcept;
}  // namespace ferry

#define FERRY_ASSERT(c) \
    ((c) ? (void)0 : ::ferry::assert_fail(#c, __FILE__, __LINE__))

#ifdef FERRY_DEBUG
#define FERRY_DASSERT(c) FERRY_ASSERT(c)
#else
#define FERRY_DASSERT(c) ((void)sizeof(!(c)))
#endif

#define FERRY_BUG(c, msg) \
    ((c) ? (void)::ferry::bug_report(#c, (msg), __FILE__, __LINE__) : (void)0)
