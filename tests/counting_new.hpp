// A replaced global operator new that counts allocations, for the tests that
// prove a path allocates nothing. Include it in exactly one file of a test
// executable of its own (name the suite ...AllocTest: .ci/run skips those
// under ASan, whose runtime owns operator new).
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace flowbus::testing {
inline std::atomic<uint64_t> g_allocations{0};
}

// GCC sees malloc'd memory reach operator delete through inlining and warns;
// both are replaced here as a pair, so the pairing is right.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

void* operator new(size_t n) {
  flowbus::testing::g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
