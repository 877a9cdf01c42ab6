// The C++ side of nm_conform: operator new that cannot be satisfied must throw
// std::bad_alloc (or return nullptr for the nothrow forms), never abort or crash.
#include <cstddef>
#include <cstdint>
#include <new>

#include "nm_conform.h"

namespace {

struct huge_size {
  std::size_t n;
  const char *name;
};

const huge_size kHuge[] = {
    {SIZE_MAX / 2, "SIZE_MAX/2"},
    {static_cast<std::size_t>(PTRDIFF_MAX) + 1, "PTRDIFF_MAX+1"},
    {SIZE_MAX - 4096, "SIZE_MAX-4096"},
};

// Results go to a volatile sink, so no new-expression can be elided.
void *volatile g_sink;

template <typename F>
void expect_bad_alloc(F f, const char *what, const char *size) {
  nm_phase("%s(%s), expecting std::bad_alloc", what, size);
  try {
    g_sink = f();
  } catch (const std::bad_alloc &) {
    return;
  } catch (...) {
    nm_fail("%s(%s) threw something other than std::bad_alloc", what, size);
  }
  nm_fail("%s(%s) returned %p instead of throwing std::bad_alloc", what, size, g_sink);
}

}  // namespace

extern "C" int nm_check_cxx_new_bad_alloc(void) {
  std::set_new_handler(nullptr);
  for (const huge_size &h : kHuge) {
    volatile std::size_t n = h.n;
    expect_bad_alloc([&] { return ::operator new(n); }, "operator new", h.name);
    expect_bad_alloc([&] { return ::operator new[](n); }, "operator new[]", h.name);
    expect_bad_alloc([&] { return static_cast<void *>(new char[n]); }, "new char[]", h.name);
  }
  // still usable afterwards
  char *p = new char[1000];
  p[999] = 1;
  g_sink = p;
  delete[] p;
  return 0;
}

extern "C" int nm_check_cxx_aligned_new_bad_alloc(void) {
  std::set_new_handler(nullptr);
  for (const huge_size &h : kHuge) {
    volatile std::size_t n = h.n;
    expect_bad_alloc([&] { return ::operator new(n, std::align_val_t(64)); },
                     "operator new(align_val_t(64))", h.name);
    expect_bad_alloc([&] { return ::operator new[](n, std::align_val_t(64)); },
                     "operator new[](align_val_t(64))", h.name);
    expect_bad_alloc([&] { return ::operator new(n, std::align_val_t(4096)); },
                     "operator new(align_val_t(4096))", h.name);
  }
  struct alignas(64) line {
    char c[64];
  };
  volatile std::size_t count = SIZE_MAX / 2 / 64;
  expect_bad_alloc([&] { return static_cast<void *>(new line[count]); }, "new line[]",
                   "SIZE_MAX/128 lines of 64 B, alignas(64)");
  return 0;
}

extern "C" int nm_check_cxx_nothrow_new(void) {
  std::set_new_handler(nullptr);
  for (const huge_size &h : kHuge) {
    volatile std::size_t n = h.n;
    void *p = nullptr;
    nm_phase("std::nothrow operator new(%s) and its aligned and array forms", h.name);
    try {
      p = ::operator new(n, std::nothrow);
      if (p) nm_fail("operator new(%s, std::nothrow) returned %p instead of nullptr", h.name, p);
      p = ::operator new[](n, std::nothrow);
      if (p) nm_fail("operator new[](%s, std::nothrow) returned %p instead of nullptr", h.name, p);
      p = ::operator new(n, std::align_val_t(64), std::nothrow);
      if (p)
        nm_fail("operator new(%s, align_val_t(64), std::nothrow) returned %p instead of nullptr",
                h.name, p);
      p = new (std::nothrow) char[n];
      if (p) nm_fail("new (std::nothrow) char[%s] returned %p instead of nullptr", h.name, p);
    } catch (...) {
      nm_fail("a std::nothrow operator new(%s) threw an exception", h.name);
    }
  }
  return 0;
}
