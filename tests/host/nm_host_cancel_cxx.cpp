// Thread cancellation in a C++ host under the preload (issue 16): the forced unwind runs the
// destructors of the cancelled thread's frames and passes through catch (...) that rethrows,
// stderr (and std::cerr) still work afterwards, and ordinary exceptions are still caught.
// Prints "done" on success.
#include <pthread.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

static pthread_barrier_t started;
static int destroyed;
static int rethrown;

struct Guard {
  ~Guard() { destroyed++; }
};

static void *writer(void *) {
  Guard g;
  auto owned = std::make_unique<std::vector<std::string>>(100, std::string(64, 'x'));
  try {
    pthread_barrier_wait(&started);
    for (;;) std::fputs("writer: a line to stderr\n", stderr);
  } catch (...) {
    rethrown++;   // abi::__forced_unwind: must be rethrown
    throw;
  }
  return nullptr;
}

int main() {
  for (int round = 0; round < 20; round++) {
    pthread_t t;
    pthread_barrier_init(&started, nullptr, 2);
    if (pthread_create(&t, nullptr, writer, nullptr) != 0) return 2;
    pthread_barrier_wait(&started);
    pthread_cancel(t);
    void *result;
    pthread_join(t, &result);
    if (result != PTHREAD_CANCELED) {
      std::printf("round %d: the thread was not cancelled\n", round);
      return 1;
    }
    std::cerr << "main: round " << round << " cancelled, std::cerr still works\n";
    std::fprintf(stderr, "main: stderr too\n");
    try {
      throw std::runtime_error(std::string(200, 'e'));
    } catch (const std::runtime_error &e) {
      if (e.what()[0] != 'e') return 1;
    }
    pthread_barrier_destroy(&started);
  }
  std::printf("destroyed=%d rethrown=%d\ndone\n", destroyed, rethrown);
  return destroyed == 20 && rethrown == 20 ? 0 : 1;
}
