/* nm_conform: the glibc malloc contract, one named check per point.
 *
 *   nm_conform --list             the check names, one a line
 *   nm_conform --describe NAME    what glibc 2.36 does for that point, in one paragraph
 *   nm_conform NAME               run one check in this process: exit 0 and print
 *                                 "PASS NAME ..." on stdout, or exit 1 and print one line
 *                                 "FAIL NAME: what was wrong" (or "HANG NAME: ...") on stderr;
 *                                 a crash prints "CRASH NAME: SIGSEGV while: ..." and dies
 *                                 of the signal; exit 77 (meson's skip) when the system
 *                                 cannot run the check (no seccomp)
 *
 * The program knows nothing about nebula: scripts/compat.sh runs it under glibc (no
 * preload), jemalloc, mimalloc, tcmalloc and nebula. glibc 2.36 must pass every check; a
 * check glibc fails is a wrong check.
 *
 * Every allocation goes through a volatile function pointer, so the compiler can neither
 * fold a huge malloc to NULL, nor assume an alignment, nor delete a malloc/free pair.
 * Failures are reported with vsnprintf into a static buffer and write(2): no malloc on the
 * failure path, which may run under an address-space limit or in a thread that races a
 * deadlock. A watchdog (alarm + SIGALRM handler that only writes and _exits) turns a hang
 * into a HANG line; checks that progress in steps re-arm it after each step.
 *
 * Environment: NM_CONFORM_DL (the helper library of dlopen_deepbind; default: next to this
 * program), NM_CONFORM_WATCHDOG (seconds, overrides every check's own), NM_CONFORM_FORKS,
 * NM_CONFORM_SIGNAL_FORKS, NM_CONFORM_THREADS, NM_CONFORM_THREADS_SECONDS (scale the fork
 * and thread checks). */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nm_conform.h"

/* ------------------------------------------------------------------------------------ */
/* The allocator, through pointers the compiler cannot see through.                      */

static void *(*volatile v_malloc)(size_t) = malloc;
static void *(*volatile v_calloc)(size_t, size_t) = calloc;
static void *(*volatile v_realloc)(void *, size_t) = realloc;
static void *(*volatile v_reallocarray)(void *, size_t, size_t) = reallocarray;
static void *(*volatile v_memalign)(size_t, size_t) = memalign;
static void *(*volatile v_aligned_alloc)(size_t, size_t) = aligned_alloc;
static void *(*volatile v_valloc)(size_t) = valloc;
static void *(*volatile v_pvalloc)(size_t) = pvalloc;
static int (*volatile v_posix_memalign)(void **, size_t, size_t) = posix_memalign;
static void (*volatile v_free)(void *) = free;
static size_t (*volatile v_usable)(void *) = malloc_usable_size;

/* ------------------------------------------------------------------------------------ */
/* Reporting.                                                                            */

static const char *g_check = "?";
static volatile const char *g_phase = "start";
static volatile pid_t g_child;              /* a child to kill if we give up */
static volatile long g_progress = -1;        /* shown by the watchdog when >= 0 */
static volatile unsigned g_watchdog_seconds;
static volatile int g_watchdog_kicked;
static int g_failing;

static void write_all(int fd, const char *s, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, s, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;
    }
    s += w;
    n -= (size_t)w;
  }
}

static void write_str(int fd, const char *s) { write_all(fd, s, strlen(s)); }

void nm_fail(const char *fmt, ...) {
  if (__atomic_exchange_n(&g_failing, 1, __ATOMIC_ACQ_REL)) {
    for (;;) pause();   /* another thread is already reporting */
  }
  static char buf[1200];
  int n = snprintf(buf, sizeof buf, "FAIL %s: ", g_check);
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 2, fmt, ap);
  va_end(ap);
  if (m < 0) m = 0;
  size_t len = (size_t)n + (size_t)m;
  if (len > sizeof buf - 2) len = sizeof buf - 2;
  for (size_t i = 0; i < len; i++)
    if (buf[i] == '\n') buf[i] = ' ';
  buf[len++] = '\n';
  write_all(2, buf, len);
  if (g_child > 0) kill(g_child, SIGKILL);
  _exit(1);
}

static void set_phase(const char *p) { g_phase = p; }

/* A formatted phase, copied into a static buffer (the crash handler may print it). */
static char g_phasebuf[2][256];
static int g_phaseidx;

void nm_phase(const char *fmt, ...) {
  char *b = g_phasebuf[g_phaseidx ^= 1];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b, sizeof g_phasebuf[0], fmt, ap);
  va_end(ap);
  g_phase = b;
}

static void utoa(char *out, unsigned long v) {
  char tmp[24];
  int i = 0;
  do {
    tmp[i++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (i) *out++ = tmp[--i];
  *out = 0;
}

static void watchdog_handler(int sig) {
  (void)sig;
  if (__atomic_exchange_n(&g_failing, 1, __ATOMIC_ACQ_REL)) _exit(1);
  char num[24];
  utoa(num, g_watchdog_seconds);
  write_str(2, "HANG ");
  write_str(2, g_check);
  write_str(2, g_watchdog_kicked ? ": no progress for " : ": no result after ");
  write_str(2, num);
  write_str(2, " s (watchdog); stuck while: ");
  write_str(2, (const char *)g_phase);
  if (g_progress >= 0) {
    utoa(num, (unsigned long)g_progress);
    write_str(2, " (progress: ");
    write_str(2, num);
    write_str(2, ")");
  }
  write_str(2, "\n");
  if (g_child > 0) kill(g_child, SIGKILL);
  _exit(1);
}

/* A crash (a signal from the allocator or from a bad pointer) prints where the check was,
 * then the signal is re-raised with its default action, so the exit status shows it. */
static void crash_handler(int sig) {
  const char *name = sig == SIGSEGV ? "SIGSEGV" : sig == SIGBUS ? "SIGBUS" : sig == SIGABRT ? "SIGABRT"
                   : sig == SIGFPE ? "SIGFPE" : sig == SIGILL ? "SIGILL" : "signal";
  if (!__atomic_exchange_n(&g_failing, 1, __ATOMIC_ACQ_REL)) {
    write_str(2, "CRASH ");
    write_str(2, g_check);
    write_str(2, ": ");
    write_str(2, name);
    write_str(2, " while: ");
    write_str(2, (const char *)g_phase);
    write_str(2, "\n");
    if (g_child > 0) kill(g_child, SIGKILL);
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

static void crash_handlers_install(void) {
  static char altstack[64 * 1024];
  stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
  sigaltstack(&ss, NULL);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = crash_handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_ONSTACK | SA_RESETHAND;
  static const int sigs[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);
}

static void watchdog_start(unsigned seconds) {
  g_watchdog_seconds = seconds;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = watchdog_handler;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGALRM, &sa, NULL);
  alarm(seconds);
}

static int g_passed;

/* Re-arms the watchdog: a check that makes progress in steps calls it after each step,
 * so a hang is reported `seconds` after the last step. Async-signal-safe. */
static void watchdog_kick(unsigned seconds) {
  g_watchdog_seconds = seconds;
  g_watchdog_kicked = 1;
  alarm(seconds);
}

static void pass(const char *fmt, ...) {
  g_passed = 1;
  char buf[512];
  int n = snprintf(buf, sizeof buf, "PASS %s", g_check);
  if (fmt != NULL) {
    buf[n++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 2, fmt, ap);
    va_end(ap);
    if (m > 0) n += m;
    if (n > (int)sizeof buf - 2) n = (int)sizeof buf - 2;
  }
  buf[n++] = '\n';
  write_all(1, buf, (size_t)n);
}

static const char *errname(int e) {
  switch (e) {
  case 0: return "0 (not set)";
  case ENOMEM: return "ENOMEM";
  case EINVAL: return "EINVAL";
  case EAGAIN: return "EAGAIN";
  case EOVERFLOW: return "EOVERFLOW";
  case EFAULT: return "EFAULT";
  case EBADF: return "EBADF";
  case EPERM: return "EPERM";
  case 1234: return "1234 (the sentinel we set)";
  default: {
    static char buf[32];
    snprintf(buf, sizeof buf, "%d", e);
    return buf;
  }
  }
}

/* ------------------------------------------------------------------------------------ */
/* Small tools: random numbers, patterns, /proc readers (raw syscalls, no stdio).        */

static uint64_t rng_next(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

/* Log-uniform size in [lo, hi]. */
static size_t rng_size(uint64_t *s, size_t lo, size_t hi) {
  unsigned lo_bits = 63 - (unsigned)__builtin_clzll(lo | 1);
  unsigned hi_bits = 63 - (unsigned)__builtin_clzll(hi);
  unsigned b = lo_bits + (unsigned)(rng_next(s) % (hi_bits - lo_bits + 1));
  size_t base = (size_t)1 << b;
  size_t n = base + (size_t)(rng_next(s) % base);
  if (n < lo) n = lo;
  if (n > hi) n = hi;
  return n;
}

static inline unsigned char pat(unsigned seed, size_t i) {
  return (unsigned char)(i * 131u + (i >> 8) * 7u + (i >> 16) * 13u + seed * 29u + 1u);
}

static void fill(void *p, size_t n, unsigned seed) {
  unsigned char *c = p;
  for (size_t i = 0; i < n; i++) c[i] = pat(seed, i);
}

/* Index of the first byte that does not match, or SIZE_MAX. */
static size_t verify(const void *p, size_t n, unsigned seed) {
  const unsigned char *c = p;
  for (size_t i = 0; i < n; i++)
    if (c[i] != pat(seed, i)) return i;
  return SIZE_MAX;
}

static size_t first_nonzero(const void *p, size_t n) {
  const unsigned char *c = p;
  for (size_t i = 0; i < n; i++)
    if (c[i] != 0) return i;
  return SIZE_MAX;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_us(long us) {
  struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static char g_procbuf[1 << 16];

/* Reads a /proc file into g_procbuf with raw read(); returns its length (truncated). */
static size_t read_proc(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) nm_fail("cannot open %s (errno %d)", path, errno);
  size_t len = 0;
  for (;;) {
    ssize_t r = read(fd, g_procbuf + len, sizeof g_procbuf - 1 - len);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    len += (size_t)r;
    if (len == sizeof g_procbuf - 1) break;
  }
  close(fd);
  g_procbuf[len] = 0;
  return len;
}

static long count_lines(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) nm_fail("cannot open %s (errno %d)", path, errno);
  char buf[4096];
  long lines = 0;
  for (;;) {
    ssize_t r = read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    for (ssize_t i = 0; i < r; i++) lines += buf[i] == '\n';
  }
  close(fd);
  return lines;
}

/* A field of /proc/self/status in kB ("VmSize", "VmRSS"). */
static size_t status_kb(const char *key) {
  read_proc("/proc/self/status");
  size_t klen = strlen(key);
  for (char *l = g_procbuf; *l; ) {
    if (strncmp(l, key, klen) == 0 && l[klen] == ':') return (size_t)strtoull(l + klen + 1, NULL, 10);
    char *nl = strchr(l, '\n');
    if (!nl) break;
    l = nl + 1;
  }
  nm_fail("no %s in /proc/self/status", key);
}

static size_t rss_bytes(void) {
  read_proc("/proc/self/statm");
  unsigned long size = 0, res = 0;
  sscanf(g_procbuf, "%lu %lu", &size, &res);
  return (size_t)res * (size_t)sysconf(_SC_PAGESIZE);
}

static size_t page_size(void) { return (size_t)sysconf(_SC_PAGESIZE); }

/* ------------------------------------------------------------------------------------ */
/* Sizes no allocation can satisfy. On LP64 PTRDIFF_MAX+1 == SIZE_MAX/2+1; both are kept
 * because that is how the contract is stated.                                          */

struct hsize {
  size_t n;
  const char *name;
};

static const struct hsize HUGE_SIZES[] = {
    {(size_t)PTRDIFF_MAX + 1, "PTRDIFF_MAX+1"},
    {SIZE_MAX / 2 + 1, "SIZE_MAX/2+1"},
    {SIZE_MAX / 4 * 3, "SIZE_MAX/4*3"},
    {SIZE_MAX - 4096, "SIZE_MAX-4096"},
    {SIZE_MAX - 15, "SIZE_MAX-15"},
    {SIZE_MAX - 1, "SIZE_MAX-1"},
    {SIZE_MAX, "SIZE_MAX"},
};
#define N_HUGE (sizeof HUGE_SIZES / sizeof HUGE_SIZES[0])

/* p, errno after a call described by `call` that must fail with `want`. */
static void want_null(void *p, int err, int want, const char *call) {
  if (p != NULL) {
    nm_phase("malloc_usable_size of the block %s returned", call);
    size_t u = v_usable(p);
    nm_fail("%s returned a block %p (usable size %zu) instead of NULL with errno %s", call, p,
            u, errname(want));
  }
  if (err != want)
    nm_fail("%s returned NULL but errno is %s, expected %s", call, errname(err),
            errname(want));
}

#define CALL_NULL(want, callbuf, expr)                                                      \
  do {                                                                                     \
    nm_phase("%s", (callbuf));                                                             \
    errno = 0;                                                                             \
    void *r_ = (expr);                                                                     \
    int e_ = errno;                                                                        \
    want_null(r_, e_, (want), (callbuf));                                                  \
  } while (0)

/* ------------------------------------------------------------------------------------ */
/* errno ENOMEM at every size up to SIZE_MAX                                             */

static int check_enomem_malloc(void) {
  char call[128];
  for (size_t i = 0; i < N_HUGE; i++) {
    snprintf(call, sizeof call, "malloc(%s)", HUGE_SIZES[i].name);
    CALL_NULL(ENOMEM, call, v_malloc(HUGE_SIZES[i].n));
  }
  pass(NULL);
  return 0;
}

static int check_enomem_calloc(void) {
  char call[128];
  for (size_t i = 0; i < N_HUGE; i++) {
    snprintf(call, sizeof call, "calloc(1, %s)", HUGE_SIZES[i].name);
    CALL_NULL(ENOMEM, call, v_calloc(1, HUGE_SIZES[i].n));
    snprintf(call, sizeof call, "calloc(%s, 1)", HUGE_SIZES[i].name);
    CALL_NULL(ENOMEM, call, v_calloc(HUGE_SIZES[i].n, 1));
  }
  pass(NULL);
  return 0;
}

static const size_t LIVE_SIZES[] = {1, 100, 4096, 100000, 1 << 20};
#define N_LIVE (sizeof LIVE_SIZES / sizeof LIVE_SIZES[0])

static void *live_block(size_t n, unsigned seed) {
  void *p = v_malloc(n);
  if (p == NULL) nm_fail("malloc(%zu) failed (errno %s)", n, errname(errno));
  fill(p, n, seed);
  return p;
}

static void live_intact(void *p, size_t n, unsigned seed, const char *after) {
  size_t bad = verify(p, n, seed);
  if (bad != SIZE_MAX)
    nm_fail("after %s failed, the old block of %zu bytes changed at byte %zu", after, n, bad);
}

static int check_enomem_realloc(void) {
  char call[160];
  for (size_t k = 0; k < N_LIVE; k++) {
    size_t n = LIVE_SIZES[k];
    void *p = live_block(n, (unsigned)k);
    for (size_t i = 0; i < N_HUGE; i++) {
      snprintf(call, sizeof call, "realloc(block of %zu, %s)", n, HUGE_SIZES[i].name);
      CALL_NULL(ENOMEM, call, v_realloc(p, HUGE_SIZES[i].n));
      live_intact(p, n, (unsigned)k, call);
    }
    v_free(p);
  }
  pass(NULL);
  return 0;
}

static int check_enomem_reallocarray(void) {
  char call[160];
  for (size_t i = 0; i < N_HUGE; i++) {
    snprintf(call, sizeof call, "reallocarray(NULL, 1, %s)", HUGE_SIZES[i].name);
    CALL_NULL(ENOMEM, call, v_reallocarray(NULL, 1, HUGE_SIZES[i].n));
  }
  for (size_t k = 0; k < N_LIVE; k++) {
    size_t n = LIVE_SIZES[k];
    void *p = live_block(n, (unsigned)k);
    for (size_t i = 0; i < N_HUGE; i++) {
      snprintf(call, sizeof call, "reallocarray(block of %zu, 1, %s)", n, HUGE_SIZES[i].name);
      CALL_NULL(ENOMEM, call, v_reallocarray(p, 1, HUGE_SIZES[i].n));
      live_intact(p, n, (unsigned)k, call);
      snprintf(call, sizeof call, "reallocarray(block of %zu, %s, 1)", n, HUGE_SIZES[i].name);
      CALL_NULL(ENOMEM, call, v_reallocarray(p, HUGE_SIZES[i].n, 1));
      live_intact(p, n, (unsigned)k, call);
    }
    v_free(p);
  }
  pass(NULL);
  return 0;
}

static const size_t HUGE_ALIGNS[] = {16, 64, 4096};

static int check_enomem_memalign(void) {
  char call[160];
  for (size_t a = 0; a < 3; a++)
    for (size_t i = 0; i < N_HUGE; i++) {
      snprintf(call, sizeof call, "memalign(%zu, %s)", HUGE_ALIGNS[a], HUGE_SIZES[i].name);
      CALL_NULL(ENOMEM, call, v_memalign(HUGE_ALIGNS[a], HUGE_SIZES[i].n));
    }
  pass(NULL);
  return 0;
}

static int check_enomem_aligned_alloc(void) {
  char call[160];
  for (size_t a = 0; a < 3; a++)
    for (size_t i = 0; i < N_HUGE; i++) {
      snprintf(call, sizeof call, "aligned_alloc(%zu, %s)", HUGE_ALIGNS[a], HUGE_SIZES[i].name);
      CALL_NULL(ENOMEM, call, v_aligned_alloc(HUGE_ALIGNS[a], HUGE_SIZES[i].n));
    }
  pass(NULL);
  return 0;
}

static int check_enomem_valloc(void) {
  char call[160];
  for (size_t i = 0; i < N_HUGE; i++) {
    snprintf(call, sizeof call, "valloc(%s)", HUGE_SIZES[i].name);
    CALL_NULL(ENOMEM, call, v_valloc(HUGE_SIZES[i].n));
  }
  pass(NULL);
  return 0;
}

static int check_enomem_pvalloc(void) {
  char call[160];
  for (size_t i = 0; i < N_HUGE; i++) {
    snprintf(call, sizeof call, "pvalloc(%s)", HUGE_SIZES[i].name);
    CALL_NULL(ENOMEM, call, v_pvalloc(HUGE_SIZES[i].n));
  }
  pass(NULL);
  return 0;
}

static int check_enomem_posix_memalign(void) {
  static const size_t aligns[] = {sizeof(void *), 16, 64, 4096};
  for (size_t a = 0; a < 4; a++)
    for (size_t i = 0; i < N_HUGE; i++) {
      void *sentinel = (void *)&g_check;
      void *out = sentinel;
      int r = v_posix_memalign(&out, aligns[a], HUGE_SIZES[i].n);
      if (r == 0)
        nm_fail("posix_memalign(&p, %zu, %s) returned 0 (success) with p = %p", aligns[a],
                HUGE_SIZES[i].name, out);
      if (r != ENOMEM)
        nm_fail("posix_memalign(&p, %zu, %s) returned %s, expected ENOMEM", aligns[a],
                HUGE_SIZES[i].name, errname(r));
      errno = 0;
      v_posix_memalign(&out, aligns[a], HUGE_SIZES[i].n);
      if (errno != ENOMEM)
        nm_fail("posix_memalign(&p, %zu, %s) returned ENOMEM but errno is %s: glibc sets errno "
                "to ENOMEM too", aligns[a], HUGE_SIZES[i].name, errname(errno));
      if (out != sentinel && out != NULL)
        nm_fail("posix_memalign(&p, %zu, %s) failed but stored %p in p", aligns[a],
                HUGE_SIZES[i].name, out);
    }
  pass(NULL);
  return 0;
}

struct ovf {
  size_t a, b;
  const char *name;
};

static const struct ovf OVERFLOWS[] = {
    {SIZE_MAX / 2 + 1, 2, "SIZE_MAX/2+1, 2"},         /* wraps to 0 */
    {(size_t)1 << 32, (size_t)1 << 32, "2^32, 2^32"}, /* wraps to 0 */
    {(size_t)1 << 32, ((size_t)1 << 32) + 1, "2^32, 2^32+1"}, /* wraps to 2^32 */
    {SIZE_MAX / 3 + 1, 3, "SIZE_MAX/3+1, 3"},         /* wraps to 2 */
    {65537, (SIZE_MAX / 65537) + 2, "65537, SIZE_MAX/65537+2"},
    {SIZE_MAX, SIZE_MAX, "SIZE_MAX, SIZE_MAX"},       /* wraps to 1 */
    {SIZE_MAX, 2, "SIZE_MAX, 2"},
    {16, SIZE_MAX / 8, "16, SIZE_MAX/8"},
};
#define N_OVF (sizeof OVERFLOWS / sizeof OVERFLOWS[0])

static int check_calloc_overflow(void) {
  char call[160];
  for (size_t i = 0; i < N_OVF; i++) {
    snprintf(call, sizeof call, "calloc(%s)", OVERFLOWS[i].name);
    CALL_NULL(ENOMEM, call, v_calloc(OVERFLOWS[i].a, OVERFLOWS[i].b));
    snprintf(call, sizeof call, "calloc(%s) (operands swapped)", OVERFLOWS[i].name);
    CALL_NULL(ENOMEM, call, v_calloc(OVERFLOWS[i].b, OVERFLOWS[i].a));
  }
  pass(NULL);
  return 0;
}

static int check_reallocarray_overflow(void) {
  char call[160];
  for (size_t i = 0; i < N_OVF; i++) {
    snprintf(call, sizeof call, "reallocarray(NULL, %s)", OVERFLOWS[i].name);
    CALL_NULL(ENOMEM, call, v_reallocarray(NULL, OVERFLOWS[i].a, OVERFLOWS[i].b));
    for (size_t k = 0; k < N_LIVE; k++) {
      size_t n = LIVE_SIZES[k];
      void *p = live_block(n, (unsigned)k);
      snprintf(call, sizeof call, "reallocarray(block of %zu, %s)", n, OVERFLOWS[i].name);
      CALL_NULL(ENOMEM, call, v_reallocarray(p, OVERFLOWS[i].a, OVERFLOWS[i].b));
      live_intact(p, n, (unsigned)k, call);
      v_free(p);
    }
  }
  pass(NULL);
  return 0;
}

static void warm_up_every_entry_point(void) {
  void *p;
  v_free(v_malloc(10));
  v_free(v_malloc(100000));
  v_free(v_calloc(3, 10));
  v_free(v_realloc(v_malloc(10), 1000));
  v_free(v_reallocarray(NULL, 10, 10));
  v_free(v_memalign(64, 100));
  v_free(v_aligned_alloc(64, 128));
  v_free(v_valloc(100));
  if (v_posix_memalign(&p, 64, 100) == 0) v_free(p);
}

static int check_huge_fails_fast(void) {
  warm_up_every_entry_point();
  /* One failing request before counting: an allocator may set up its failure path once
   * (nebula's report loads its unwinder's tables); what must not map is each request. */
  errno = 0;
  if (v_malloc(HUGE_SIZES[0].n) != NULL) nm_fail("malloc(%s) returned a block", HUGE_SIZES[0].name);
  void *live = live_block(1000, 7);
  long maps_before = count_lines("/proc/self/maps");
  double t0 = now_s();
  for (int i = 0; i < 1000; i++) {
    size_t n = HUGE_SIZES[(size_t)i % N_HUGE].n;
    const char *name = HUGE_SIZES[(size_t)i % N_HUGE].name;
    void *p = NULL;
    const char *fn = "";
    switch ((i / (int)N_HUGE) % 9) {
    case 0: fn = "malloc"; p = v_malloc(n); break;
    case 1: fn = "calloc"; p = v_calloc(1, n); break;
    case 2: fn = "realloc"; p = v_realloc(live, n); break;
    case 3: fn = "reallocarray"; p = v_reallocarray(live, 1, n); break;
    case 4: fn = "memalign(64)"; p = v_memalign(64, n); break;
    case 5: fn = "aligned_alloc(64)"; p = v_aligned_alloc(64, n); break;
    case 6: fn = "valloc"; p = v_valloc(n); break;
    case 7: fn = "pvalloc"; p = v_pvalloc(n); break;
    case 8: {
      fn = "posix_memalign(64)";
      void *q = NULL;
      if (v_posix_memalign(&q, 64, n) == 0) p = q;
      break;
    }
    }
    if (p != NULL) nm_fail("request %d, %s(%s), returned a block %p", i, fn, name, p);
  }
  double dt = now_s() - t0;
  long maps_after = count_lines("/proc/self/maps");
  live_intact(live, 1000, 7, "1000 huge requests");
  v_free(live);
  if (maps_after != maps_before)
    nm_fail("1000 failing huge requests changed /proc/self/maps from %ld to %ld mappings",
            maps_before, maps_after);
  if (dt >= 1.0) nm_fail("1000 failing huge requests took %.2f s (limit 1 s)", dt);
  pass("(1000 requests in %.1f ms, %ld mappings before and after)", dt * 1e3, maps_after);
  return 0;
}

/* ------------------------------------------------------------------------------------ */
/* realloc                                                                               */

static int check_realloc_zero_frees(void) {
  static const size_t sizes[] = {1, 24, 100, 1000, 5000, 70000, 1 << 20, 8 << 20};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    void *p = live_block(sizes[k], 3);
    errno = 1234;
    void *q = v_realloc(p, 0);
    int e = errno;
    if (q != NULL)
      nm_fail("realloc(block of %zu, 0) returned %p (usable %zu), expected NULL (glibc frees "
              "the block and returns NULL)",
              sizes[k], q, v_usable(q));
    if (e != 1234)
      nm_fail("realloc(block of %zu, 0) returned NULL as expected but changed errno from 1234 "
              "to %s",
              sizes[k], errname(e));
  }
  /* The block must really be freed: 20000 rounds of 32 KiB would leak 640 MiB. */
  size_t rss0 = rss_bytes();
  for (int i = 0; i < 20000; i++) {
    void *p = v_malloc(32768);
    if (!p) nm_fail("malloc(32768) failed in round %d", i);
    memset(p, 0x5a, 32768);
    if (v_realloc(p, 0) != NULL) nm_fail("realloc(p, 0) returned non-NULL in round %d", i);
    if ((i & 1023) == 0 && rss_bytes() > rss0 + (64u << 20))
      nm_fail("RSS grew by %zu MiB after %d rounds of malloc(32 KiB) + realloc(p, 0): the "
              "blocks are not freed",
              (rss_bytes() - rss0) >> 20, i);
  }
  pass(NULL);
  return 0;
}

static int check_realloc_null_zero(void) {
  void *p = v_realloc(NULL, 0);
  if (p == NULL) nm_fail("realloc(NULL, 0) returned NULL (errno %s), expected a block", errname(errno));
  void *q = v_realloc(NULL, 0);
  if (q == NULL) nm_fail("second realloc(NULL, 0) returned NULL, expected a block");
  if (p == q) nm_fail("two live realloc(NULL, 0) blocks are the same pointer %p", p);
  size_t u = v_usable(p);
  memset(p, 0xcd, u);   /* whatever it says is usable, we may write */
  void *r = v_realloc(p, 100);
  if (r == NULL) nm_fail("realloc of a realloc(NULL, 0) block to 100 bytes failed");
  fill(r, 100, 9);
  v_free(r);
  v_free(q);
  pass("(usable size of the block: %zu)", u);
  return 0;
}

static int check_realloc_fail_intact(void) {
  static const size_t sizes[] = {1, 16, 100, 4096, 65536, 1 << 20, 8 << 20};
  char call[160];
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    size_t n = sizes[k];
    void *p = live_block(n, (unsigned)(k + 11));
    for (size_t i = 0; i < N_HUGE; i++) {
      snprintf(call, sizeof call, "realloc(block of %zu, %s)", n, HUGE_SIZES[i].name);
      errno = 0;
      void *q = v_realloc(p, HUGE_SIZES[i].n);
      if (q != NULL) nm_fail("%s returned %p instead of NULL", call, q);
      live_intact(p, n, (unsigned)(k + 11), call);
    }
    /* The old block is still a live block: it can be used, grown and freed. */
    void *g = v_realloc(p, n + 1000);
    if (g == NULL) nm_fail("growing the block of %zu after the failed realloc failed", n);
    size_t bad = verify(g, n, (unsigned)(k + 11));
    if (bad != SIZE_MAX) nm_fail("growing the block of %zu after failed reallocs lost byte %zu", n, bad);
    v_free(g);
  }
  pass(NULL);
  return 0;
}

static int check_realloc_content(void) {
  /* 1..64 one by one, then steps of ~1.3x with odd offsets up to 8 MiB, then back down. */
  size_t sizes[200];
  size_t ns = 0;
  for (size_t n = 1; n <= 64; n++) sizes[ns++] = n;
  for (size_t n = 64; n < (8u << 20) && ns < 190; n = n * 13 / 10 + 7) sizes[ns++] = n;
  sizes[ns++] = 8u << 20;
  uint64_t seed = 42;
  void *spacers[400];
  size_t nsp = 0;
  void *p = v_malloc(sizes[0]);
  if (!p) nm_fail("malloc(1) failed");
  fill(p, sizes[0], 1);
  size_t cur = sizes[0];
  unsigned gen = 1;
  for (int dir = 0; dir < 2; dir++) {
    for (size_t s = 1; s < ns; s++) {
      size_t next = dir == 0 ? sizes[s] : sizes[ns - 1 - s];
      /* neighbours, so that growing in place is not always possible */
      if (nsp < 400) spacers[nsp++] = v_malloc(rng_size(&seed, 1, 4096));
      void *q = v_realloc(p, next);
      if (q == NULL) nm_fail("realloc(block of %zu, %zu) failed (errno %s)", cur, next, errname(errno));
      size_t keep = cur < next ? cur : next;
      size_t bad = verify(q, keep, gen);
      if (bad != SIZE_MAX)
        nm_fail("realloc from %zu to %zu bytes (%s, %s) lost the content at byte %zu of %zu",
                cur, next, dir == 0 ? "growing" : "shrinking", q == p ? "in place" : "moved",
                bad, keep);
      gen++;
      fill(q, next, gen);
      p = q;
      cur = next;
    }
  }
  /* Random walk: grow and shrink by random amounts, with interleaved allocations. */
  for (int i = 0; i < 3000; i++) {
    size_t next = rng_size(&seed, 1, (i % 100 == 0) ? (8u << 20) : 70000);
    void *q = v_realloc(p, next);
    if (q == NULL) nm_fail("realloc(block of %zu, %zu) failed", cur, next);
    size_t keep = cur < next ? cur : next;
    size_t bad = verify(q, keep, gen);
    if (bad != SIZE_MAX)
      nm_fail("realloc from %zu to %zu bytes lost the content at byte %zu of %zu", cur, next,
              bad, keep);
    gen++;
    fill(q, next, gen);
    p = q;
    cur = next;
    if (i % 7 == 0 && nsp > 0) {
      v_free(spacers[--nsp]);
    }
    if (i % 5 == 0 && nsp < 400) spacers[nsp++] = v_malloc(rng_size(&seed, 1, 20000));
  }
  v_free(p);
  while (nsp) v_free(spacers[--nsp]);
  pass(NULL);
  return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Alignment                                                                             */

static void want_aligned(void *p, size_t align, const char *call) {
  if (p == NULL) nm_fail("%s returned NULL (errno %s)", call, errname(errno));
  if ((uintptr_t)p % align != 0) {
    uintptr_t a = (uintptr_t)p & -(uintptr_t)p;
    nm_fail("%s returned %p, aligned only to %zu bytes (expected %zu)", call, p, (size_t)a,
            align);
  }
}

static int check_align16(void) {
  enum { N = 1025 };
  static void *blocks[4][N];
  char call[96];
  for (size_t n = 0; n < N; n++) {
    nm_phase("malloc/calloc/realloc(NULL) of %zu bytes", n);
    snprintf(call, sizeof call, "malloc(%zu)", n);
    want_aligned(blocks[0][n] = v_malloc(n), 16, call);
    snprintf(call, sizeof call, "calloc(1, %zu)", n);
    want_aligned(blocks[1][n] = v_calloc(1, n), 16, call);
    snprintf(call, sizeof call, "realloc(NULL, %zu)", n);
    want_aligned(blocks[2][n] = v_realloc(NULL, n), 16, call);
    snprintf(call, sizeof call, "calloc(%zu, 1)", n);
    want_aligned(blocks[3][n] = v_calloc(n, 1), 16, call);
  }
  /* realloc of live blocks to every size */
  for (size_t n = 0; n < N; n++) {
    size_t to = (n * 7 + 1) % N;
    snprintf(call, sizeof call, "realloc(block of %zu, %zu)", n, to);
    void *q = v_realloc(blocks[2][n], to ? to : 1);
    want_aligned(q, 16, call);
    blocks[2][n] = q;
  }
  for (int f = 0; f < 4; f++)
    for (size_t n = 0; n < N; n++) v_free(blocks[f][n]);
  uint64_t s = 7;
  static void *rnd[600];
  for (int i = 0; i < 600; i++) {
    size_t n = rng_size(&s, 1, 1 << 20);
    snprintf(call, sizeof call, "malloc(%zu)", n);
    want_aligned(rnd[i] = v_malloc(n), 16, call);
  }
  for (int i = 0; i < 600; i++) v_free(rnd[i]);
  pass(NULL);
  return 0;
}

static int check_posix_memalign_einval(void) {
  static const size_t bad[] = {0, 1, 2, 3, 4, 6, 12, 24, 40, 48, 96, 100, 4097, 65535,
                               SIZE_MAX / 2 + 2, SIZE_MAX};
  static const size_t sizes[] = {0, 1, 100, 5000};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    for (size_t k = 0; k < 4; k++) {
      void *out = NULL;
      int r = v_posix_memalign(&out, bad[i], sizes[k]);
      if (r == 0)
        nm_fail("posix_memalign(&p, %zu, %zu) succeeded (p = %p), expected EINVAL: %zu is not "
                "a power-of-two multiple of sizeof(void *)",
                bad[i], sizes[k], out, bad[i]);
      if (r != EINVAL)
        nm_fail("posix_memalign(&p, %zu, %zu) returned %s, expected EINVAL", bad[i], sizes[k],
                errname(r));
    }
  /* and the valid ones work */
  for (size_t a = sizeof(void *); a <= 4096; a *= 2) {
    void *out = NULL;
    int r = v_posix_memalign(&out, a, 100);
    if (r != 0) nm_fail("posix_memalign(&p, %zu, 100) returned %s", a, errname(r));
    char call[64];
    snprintf(call, sizeof call, "posix_memalign(&p, %zu, 100)", a);
    want_aligned(out, a, call);
    v_free(out);
  }
  pass(NULL);
  return 0;
}

static int check_memalign_huge_alignment(void) {
  static const struct hsize aligns[] = {
      {SIZE_MAX / 2 + 2, "SIZE_MAX/2+2"},
      {SIZE_MAX / 2 + 4096, "SIZE_MAX/2+4096"},
      {SIZE_MAX - 4095, "SIZE_MAX-4095"},
      {SIZE_MAX, "SIZE_MAX"},
  };
  char call[128];
  for (size_t i = 0; i < 4; i++) {
    for (size_t n = 1; n <= 1000; n *= 10) {
      snprintf(call, sizeof call, "memalign(%s, %zu)", aligns[i].name, n);
      CALL_NULL(EINVAL, call, v_memalign(aligns[i].n, n));
      snprintf(call, sizeof call, "aligned_alloc(%s, %zu)", aligns[i].name, n);
      CALL_NULL(EINVAL, call, v_aligned_alloc(aligns[i].n, n));
    }
  }
  /* A power of two, so not invalid, but it cannot be satisfied: ENOMEM. */
  snprintf(call, sizeof call, "memalign(SIZE_MAX/2+1, 16)");
  CALL_NULL(ENOMEM, call, v_memalign(SIZE_MAX / 2 + 1, 16));
  pass(NULL);
  return 0;
}

static size_t glibc_memalign_alignment(size_t a) {
  if (a <= 16) return 16;   /* plain malloc */
  if ((a & (a - 1)) == 0) return a;
  size_t r = 32;
  while (r < a) r <<= 1;
  return r;
}

static int check_memalign_nonpow2(void) {
  static const size_t aligns[] = {3, 12, 24, 48, 100, 3000, 5000, 65537};
  static const size_t sizes[] = {1, 100, 5000, 200000};
  char call[96];
  for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++)
    for (size_t k = 0; k < 4; k++) {
      size_t want = glibc_memalign_alignment(aligns[i]);
      snprintf(call, sizeof call, "memalign(%zu, %zu)", aligns[i], sizes[k]);
      nm_phase("%s", call);
      errno = 0;
      void *p = v_memalign(aligns[i], sizes[k]);
      if (p == NULL)
        nm_fail("%s returned NULL (errno %s); glibc rounds the alignment up to %zu and "
                "succeeds",
                call, errname(errno), want);
      want_aligned(p, want, call);
      size_t u = v_usable(p);
      if (u < sizes[k]) nm_fail("%s: usable size %zu < %zu", call, u, sizes[k]);
      fill(p, u, 5);
      v_free(p);
    }
  pass(NULL);
  return 0;
}

enum { AF_MEMALIGN, AF_POSIX, AF_ALIGNED_ALLOC };

static void *aligned_call(int f, size_t a, size_t n, char *call, size_t cl) {
  void *p = NULL;
  switch (f) {
  case AF_MEMALIGN:
    snprintf(call, cl, "memalign(%zu, %zu)", a, n);
    nm_phase("%s", call);
    p = v_memalign(a, n);
    break;
  case AF_POSIX: {
    snprintf(call, cl, "posix_memalign(&p, %zu, %zu)", a, n);
    nm_phase("%s", call);
    int r = v_posix_memalign(&p, a, n);
    if (r != 0) nm_fail("%s returned %s", call, errname(r));
    break;
  }
  case AF_ALIGNED_ALLOC:
    snprintf(call, cl, "aligned_alloc(%zu, %zu)", a, n);
    nm_phase("%s", call);
    p = v_aligned_alloc(a, n);
    break;
  }
  return p;
}

static int check_aligned_range(int f) {
  static const size_t sizes[] = {1, 100, 4096, 65536, (1 << 20) + 1};
  char call[96];
  void *blocks[5];
  size_t usable[5];
  for (size_t a = 16; a <= (1u << 20); a *= 2) {
    for (size_t k = 0; k < 5; k++) {
      blocks[k] = aligned_call(f, a, sizes[k], call, sizeof call);
      want_aligned(blocks[k], a, call);
      nm_phase("malloc_usable_size of the block %s returned", call);
      usable[k] = v_usable(blocks[k]);
      if (usable[k] < sizes[k])
        nm_fail("%s: malloc_usable_size is %zu, less than the %zu requested", call, usable[k],
                sizes[k]);
      fill(blocks[k], usable[k], (unsigned)(a + k));
    }
    for (size_t k = 0; k < 5; k++) {
      size_t bad = verify(blocks[k], usable[k], (unsigned)(a + k));
      if (bad != SIZE_MAX)
        nm_fail("block of %zu bytes aligned to %zu (usable %zu): byte %zu was overwritten by a "
                "neighbour",
                sizes[k], a, usable[k], bad);
    }
    nm_phase("freeing blocks aligned to %zu", a);
    for (size_t k = 0; k < 5; k++) v_free(blocks[k]);
  }
  pass(NULL);
  return 0;
}

static int check_aligned_memalign(void) { return check_aligned_range(AF_MEMALIGN); }
static int check_aligned_posix_memalign(void) { return check_aligned_range(AF_POSIX); }
static int check_aligned_aligned_alloc(void) { return check_aligned_range(AF_ALIGNED_ALLOC); }

static int check_valloc_page(void) {
  static const size_t sizes[] = {0, 1, 100, 4095, 4096, 4097, 100000, (1 << 20) + 1};
  size_t pg = page_size();
  char call[64];
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    snprintf(call, sizeof call, "valloc(%zu)", sizes[k]);
    nm_phase("%s", call);
    void *p = v_valloc(sizes[k]);
    want_aligned(p, pg, call);
    nm_phase("malloc_usable_size of a block from %s", call);
    size_t u = v_usable(p);
    if (u < sizes[k]) nm_fail("%s: usable size %zu < %zu", call, u, sizes[k]);
    fill(p, u, 3);
    nm_phase("free of a block from %s", call);
    v_free(p);
  }
  pass(NULL);
  return 0;
}

static int check_pvalloc_round(void) {
  static const size_t sizes[] = {1, 100, 4095, 4096, 4097, 12289, 65537, (1 << 20) + 1};
  size_t pg = page_size();
  char call[64];
  void *blocks[8];
  size_t usable[8];
  for (size_t k = 0; k < 8; k++) {
    snprintf(call, sizeof call, "pvalloc(%zu)", sizes[k]);
    nm_phase("%s", call);
    void *p = v_pvalloc(sizes[k]);
    want_aligned(p, pg, call);
    size_t rounded = (sizes[k] + pg - 1) / pg * pg;
    nm_phase("malloc_usable_size of a block from %s", call);
    size_t u = v_usable(p);
    if (u < rounded)
      nm_fail("%s: usable size %zu, less than the %zu bytes of whole pages pvalloc promises",
              call, u, rounded);
    blocks[k] = p;
    usable[k] = u;
    fill(p, u, (unsigned)k);
  }
  for (size_t k = 0; k < 8; k++) {
    size_t bad = verify(blocks[k], usable[k], (unsigned)k);
    if (bad != SIZE_MAX)
      nm_fail("pvalloc(%zu) block: byte %zu of its %zu usable bytes was overwritten", sizes[k],
              bad, usable[k]);
    nm_phase("free of a block from pvalloc(%zu)", sizes[k]);
    v_free(blocks[k]);
  }
  pass(NULL);
  return 0;
}

static int check_pvalloc_overflow(void) {
  static const struct hsize sizes[] = {
      {SIZE_MAX, "SIZE_MAX"},           {SIZE_MAX - 1, "SIZE_MAX-1"},
      {SIZE_MAX - 100, "SIZE_MAX-100"}, {SIZE_MAX - 4094, "SIZE_MAX-4094"},
      {SIZE_MAX - 4095, "SIZE_MAX-4095"}, {SIZE_MAX - 4096, "SIZE_MAX-4096"},
      {SIZE_MAX - 8191, "SIZE_MAX-8191"}, {SIZE_MAX - 65535, "SIZE_MAX-65535"},
      {(size_t)PTRDIFF_MAX + 1, "PTRDIFF_MAX+1"},
  };
  char call[64];
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    snprintf(call, sizeof call, "pvalloc(%s)", sizes[k].name);
    CALL_NULL(ENOMEM, call, v_pvalloc(sizes[k].n));
  }
  pass(NULL);
  return 0;
}

/* ------------------------------------------------------------------------------------ */
/* free, usable size, calloc                                                             */

static void free_keeps_errno(void *p, const char *what) {
  errno = 1234;
  v_free(p);
  if (errno != 1234) nm_fail("free(%s) changed errno from 1234 to %s", what, errname(errno));
}

static void *remote_free_thread(void *arg) {
  void **blocks = arg;
  for (size_t i = 0; blocks[i] != NULL; i++) free_keeps_errno(blocks[i], "a block of another thread");
  return NULL;
}

static int check_free_errno(void) {
  free_keeps_errno(NULL, "NULL");
  for (size_t n = 1; n <= 4096; n += 37) free_keeps_errno(live_block(n, 1), "a small block");
  static const size_t big[] = {100000, 1 << 20, 16 << 20, 64 << 20};
  for (size_t k = 0; k < 4; k++) {
    void *p = live_block(big[k], 2);
    free_keeps_errno(p, "a large block (unmapped)");
  }
  /* Many blocks, three rounds of 128 MiB, so the allocator purges and unmaps. */
  enum { NB = 8192 };
  static void *blocks[NB];
  uint64_t s = 99;
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < NB; i++) {
      size_t n = rng_size(&s, 16, 65536);
      blocks[i] = v_malloc(n);
      if (!blocks[i]) nm_fail("malloc(%zu) failed", n);
      memset(blocks[i], 0x33, n);
    }
    for (int i = 0; i < NB; i++) free_keeps_errno(blocks[i], "one of 8192 blocks");
    errno = 1234;
    void *p = v_malloc(128u << 20);
    if (!p) nm_fail("malloc(128 MiB) failed");
    memset(p, 1, 128u << 20);
    free_keeps_errno(p, "a touched 128 MiB block");
  }
  /* Frees from a thread that does not own the blocks. */
  static void *remote[2049];
  for (int i = 0; i < 2048; i++) remote[i] = v_malloc(rng_size(&s, 16, 300000));
  remote[2048] = NULL;
  pthread_t t;
  if (pthread_create(&t, NULL, remote_free_thread, remote) != 0) nm_fail("pthread_create failed");
  pthread_join(t, NULL);
  pass(NULL);
  return 0;
}

/* The same frees while every madvise fails (as under a sandbox's seccomp profile): an
 * allocator that purges on free sees the failure, and must still leave errno alone. */
static int check_free_errno_madvise_fails(void) {
  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_madvise, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {.len = (unsigned short)(sizeof filter / sizeof filter[0]), .filter = filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
      prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
    /* not the allocator's fault: this system does not let us install a filter */
    char buf[160];
    int n = snprintf(buf, sizeof buf, "SKIP %s: cannot install a seccomp filter (errno %d)\n", g_check, errno);
    write_all(1, buf, (size_t)n);
    _exit(77);
  }
  errno = 0;
  if (syscall(SYS_madvise, NULL, 0, MADV_DONTNEED) != -1 || errno != EPERM) nm_fail("the seccomp filter does not make madvise fail");
  return check_free_errno();
}

static int check_usable_size_null(void) {
  errno = 1234;
  size_t u = v_usable(NULL);
  if (u != 0) nm_fail("malloc_usable_size(NULL) returned %zu, expected 0", u);
  pass(NULL);
  return 0;
}

static int check_usable_size_writable(void) {
  enum { BATCH = 64 };
  void *b[BATCH];
  size_t req[BATCH], us[BATCH];
  const char *how[BATCH];
  size_t sizes[3000];
  size_t ns = 0;
  for (size_t n = 0; n <= 2048; n++) sizes[ns++] = n;
  for (size_t n = 2049; n <= (32u << 20); n = n * 5 / 4 + 3) sizes[ns++] = n;
  sizes[ns++] = 32u << 20;
  size_t i = 0;
  unsigned round = 0;
  while (i < ns) {
    size_t nb = 0;
    for (; nb < BATCH && i < ns; nb++, i++) {
      size_t n = sizes[i];
      void *p = NULL;
      switch ((i + round) % 6) {
      case 0: how[nb] = "malloc"; p = v_malloc(n); break;
      case 1: how[nb] = "calloc"; p = v_calloc(1, n); break;
      case 2: how[nb] = "realloc"; p = v_realloc(v_malloc(n / 2 + 1), n); break;
      case 3: how[nb] = "memalign(64)"; p = v_memalign(64, n); break;
      case 4: how[nb] = "posix_memalign(32)"; if (v_posix_memalign(&p, 32, n) != 0) p = NULL; break;
      case 5: how[nb] = "aligned_alloc(16)"; p = v_aligned_alloc(16, n); break;
      }
      if (p == NULL) nm_fail("%s(%zu) failed (errno %s)", how[nb], n, errname(errno));
      size_t u = v_usable(p);
      if (u < n) nm_fail("%s(%zu): malloc_usable_size is %zu, less than the request", how[nb], n, u);
      b[nb] = p;
      req[nb] = n;
      us[nb] = u;
      fill(p, u, (unsigned)(i * 3 + 1));
    }
    for (size_t k = 0; k < nb; k++) {
      size_t idx = i - nb + k;
      size_t bad = verify(b[k], us[k], (unsigned)(idx * 3 + 1));
      if (bad != SIZE_MAX)
        nm_fail("%s(%zu) block (usable %zu): byte %zu was overwritten when neighbours wrote "
                "their usable bytes",
                how[k], req[k], us[k], bad);
    }
    for (size_t k = 0; k < nb; k++) v_free(b[k]);
    round++;
  }
  pass("(%zu sizes, 0 B to 32 MiB)", ns);
  return 0;
}

static const size_t CALLOC_SIZES[] = {1,     8,      24,     100,     512,     1000,
                                      4096,  5000,   16384,  65536,   100000,  262144,
                                      1 << 20, 3 << 20, 16 << 20};
#define N_CS (sizeof CALLOC_SIZES / sizeof CALLOC_SIZES[0])

struct dirty_free_arg {
  void **blocks;
  size_t n;
};

static void *dirty_free_thread(void *arg) {
  struct dirty_free_arg *a = arg;
  for (size_t i = 0; i < a->n; i++) v_free(a->blocks[i]);
  return NULL;
}

/* Every entry point, run out of address space (RLIMIT_AS), fails with NULL and errno ENOMEM
 * (posix_memalign: returns ENOMEM and sets errno too, as glibc does). */
enum { EX_MALLOC, EX_CALLOC, EX_REALLOC, EX_REALLOCARRAY, EX_MEMALIGN, EX_ALIGNED_ALLOC, EX_VALLOC,
       EX_PVALLOC, EX_POSIX_MEMALIGN, EX_COUNT };
static const char *const ex_names[EX_COUNT] = { "malloc", "calloc", "realloc", "reallocarray",
                                                "memalign(64)", "aligned_alloc(4096)", "valloc",
                                                "pvalloc", "posix_memalign(64)" };

/* One request of n bytes through entry e; NULL on failure with the errno seen. */
static void *ex_request(int e, size_t n, void *grow, int *err) {
  void *p = NULL;
  errno = 0;
  switch (e) {
  case EX_MALLOC: p = v_malloc(n); break;
  case EX_CALLOC: p = v_calloc(1, n); break;
  case EX_REALLOC: p = v_realloc(grow, n); break;
  case EX_REALLOCARRAY: p = v_reallocarray(grow, 2, n / 2); break;
  case EX_MEMALIGN: p = v_memalign(64, n); break;
  case EX_ALIGNED_ALLOC: p = v_aligned_alloc(4096, n); break;
  case EX_VALLOC: p = v_valloc(n); break;
  case EX_PVALLOC: p = v_pvalloc(n); break;
  default: {
    int r = v_posix_memalign(&p, 64, n);
    int seen = errno;
    if (r != 0 && r != ENOMEM)
      nm_fail("posix_memalign(&p, 64, %zu) under RLIMIT_AS returned %s, expected ENOMEM", n,
              errname(r));
    if (r != 0) p = NULL;
    errno = seen;
    break;
  }
  }
  *err = errno;
  return p;
}

static int check_errno_exhausted(void) {
  enum { EX_MAX = 1 << 19 };   /* 2^19 blocks of 256 bytes exceed the 48 MiB */
  static void *blocks[EX_MAX];
  size_t vm = status_kb("VmSize") * 1024;
  struct rlimit old, lim;
  getrlimit(RLIMIT_AS, &old);
  lim.rlim_cur = vm + (48u << 20);
  lim.rlim_max = old.rlim_max;
  if (setrlimit(RLIMIT_AS, &lim) != 0) nm_fail("setrlimit(RLIMIT_AS) failed (errno %d)", errno);
  static const size_t sizes[] = { (size_t)1 << 20, (size_t)64 << 10, 4000, 256 };
  for (int e = 0; e < EX_COUNT; e++) {
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
      char phase[96];
      snprintf(phase, sizeof phase, "%s(%zu) until the address space runs out", ex_names[e], sizes[k]);
      set_phase(phase);
      size_t n = 0;
      int err = 0;
      int failed = 0;
      while (n < EX_MAX) {
        void *p;
        if (e == EX_REALLOC || e == EX_REALLOCARRAY) {
          /* Grow one block at a time past what is left; the old block stays valid. */
          void *q = v_malloc(16);
          if (q == NULL) { err = errno; failed = 1; break; }
          p = ex_request(e, sizes[k] * 8, q, &err);
          if (p == NULL) {
            *(volatile char *)q = 1;
            v_free(q);
            failed = 1;
            break;
          }
        } else {
          p = ex_request(e, sizes[k], NULL, &err);
          if (p == NULL) { failed = 1; break; }
        }
        ((volatile char *)p)[0] = 1;
        blocks[n++] = p;
      }
      if (!failed)
        nm_fail("%s: %d requests of %zu bytes all succeeded under a limit of VmSize + 48 MiB: the "
                "check tested nothing", ex_names[e], EX_MAX, sizes[k]);
      if (err != ENOMEM)
        nm_fail("%s(%zu) failed under RLIMIT_AS after %zu blocks with errno %s, expected ENOMEM",
                ex_names[e], e == EX_REALLOC || e == EX_REALLOCARRAY ? sizes[k] * 8 : sizes[k], n,
                errname(err));
      for (size_t i = 0; i < n; i++) v_free(blocks[i]);
    }
  }
  setrlimit(RLIMIT_AS, &old);
  pass("(9 entry points x 4 sizes, each run out of a VmSize + 48 MiB limit: NULL and ENOMEM)");
  return 0;
}

static int check_calloc_zero_reuse(void) {
  enum { COPIES = 8 };
  static void *b[N_CS * COPIES];
  for (int round = 0; round < 24; round++) {
    size_t nb = 0;
    for (size_t k = 0; k < N_CS; k++) {
      int copies = CALLOC_SIZES[k] >= (1u << 20) ? 1 : COPIES;
      for (int c = 0; c < copies; c++) {
        void *p = v_malloc(CALLOC_SIZES[k]);
        if (!p) nm_fail("malloc(%zu) failed", CALLOC_SIZES[k]);
        memset(p, 0xab, v_usable(p));
        b[nb++] = p;
      }
    }
    if (round % 4 == 3) {
      /* the dirty blocks are freed by another thread */
      struct dirty_free_arg a = {b, nb};
      pthread_t t;
      if (pthread_create(&t, NULL, dirty_free_thread, &a) != 0) nm_fail("pthread_create failed");
      pthread_join(t, NULL);
    } else {
      for (size_t i = nb; i-- > 0;) v_free(b[i]);
    }
    nb = 0;
    for (size_t k = 0; k < N_CS; k++) {
      int copies = CALLOC_SIZES[k] >= (1u << 20) ? 1 : COPIES;
      for (int c = 0; c < copies; c++) {
        size_t n = CALLOC_SIZES[k];
        void *p = (round & 1) ? v_calloc(n, 1) : v_calloc(1, n);
        if (!p) nm_fail("calloc(%zu) failed", n);
        size_t bad = first_nonzero(p, n);
        if (bad != SIZE_MAX)
          nm_fail("calloc(1, %zu) in round %d returned memory with byte %zu = 0x%02x, not zero "
                  "(freed 0xAB memory reused without clearing)",
                  n, round, bad, ((unsigned char *)p)[bad]);
        memset(p, 0xab, n);
        b[nb++] = p;
      }
    }
    for (size_t i = 0; i < nb; i++) v_free(b[i]);
  }
  /* realloc-shrunk dirty blocks, then calloc */
  for (int round = 0; round < 200; round++) {
    void *p = v_malloc(20000);
    memset(p, 0xab, 20000);
    p = v_realloc(p, 100);
    v_free(p);
    void *q = v_calloc(1, 19000);
    size_t bad = first_nonzero(q, 19000);
    if (bad != SIZE_MAX) nm_fail("calloc(1, 19000) after a dirty realloc shrink: byte %zu is not zero", bad);
    v_free(q);
  }
  pass(NULL);
  return 0;
}

/* ------------------------------------------------------------------------------------ */
/* RLIMIT_AS with 32 threads                                                             */

enum { RL_THREADS = 32, RL_CAP = 32768 };

struct rl_thread {
  pthread_t tid;
  int id;
  void **ptrs;
  size_t *sizes;     /* the size of each block in ptrs */
  size_t n, ok, fails;
  size_t bytes;
  int again_ok, again_errno;
  size_t again_size;   /* the request that failed in the new round */
};

static pthread_barrier_t rl_go, rl_allocated, rl_freed, rl_again, rl_turns, rl_done;
static atomic_int rl_turn;   /* the thread whose turn it is to allocate again */
static int rl_concurrent;    /* rlimit_as_regain: the concurrent round too */

static void *rl_worker(void *arg) {
  struct rl_thread *t = arg;
  uint64_t s = 0x9e3779b97f4a7c15ull * (uint64_t)(t->id + 1);
  pthread_barrier_wait(&rl_go);
  while (t->fails < 48 && t->n < RL_CAP && t->bytes < (2ull << 30)) {
    size_t n = rng_size(&s, 16, 4u << 20);
    int op = (int)(rng_next(&s) % 5);
    void *p = NULL;
    const char *fn = "malloc";
    errno = 0;
    switch (op) {
    case 0: case 1: fn = "malloc"; p = v_malloc(n); break;
    case 2: fn = "calloc"; p = v_calloc(1, n); break;
    case 3: fn = "memalign(64)"; p = v_memalign(64, n); break;
    case 4:
      if (t->n > 0) {
        /* grow an existing block; on failure it must stay valid */
        size_t i = (size_t)(rng_next(&s) % t->n);
        fn = "realloc";
        void *q = v_realloc(t->ptrs[i], n);
        int e = errno;
        if (q == NULL) {
          if (e != ENOMEM)
            nm_fail("thread %d: realloc(p, %zu) under RLIMIT_AS returned NULL with errno %s, "
                    "expected ENOMEM",
                    t->id, n, errname(e));
          *(volatile char *)t->ptrs[i] = 1;   /* the old block is still ours */
          t->fails++;
        } else {
          t->ptrs[i] = q;
          t->sizes[i] = n;
          ((volatile char *)q)[n - 1] = 1;
          t->bytes += n;
        }
        continue;
      }
      p = v_malloc(n);
      break;
    }
    int e = errno;
    if (p == NULL) {
      if (e != ENOMEM)
        nm_fail("thread %d: %s(%zu) under RLIMIT_AS returned NULL with errno %s, expected "
                "ENOMEM",
                t->id, fn, n, errname(e));
      t->fails++;
      continue;
    }
    ((volatile char *)p)[0] = 1;
    ((volatile char *)p)[n - 1] = 1;
    t->sizes[t->n] = n;
    t->ptrs[t->n++] = p;
    t->ok++;
    t->bytes += n;
  }
  pthread_barrier_wait(&rl_allocated);
  size_t held = t->n;
  for (size_t i = 0; i < held; i++) v_free(t->ptrs[i]);
  t->n = 0;
  pthread_barrier_wait(&rl_freed);
  /* Everything was freed. rlimit_as_regain: every thread at once allocates small blocks and
   * 256 KiB blocks again (a thread whose allocator left the address space in other threads'
   * heaps fails here). */
  pthread_barrier_wait(&rl_again);
  t->again_ok = 1;
  /* Held at once: up to 24 small blocks and one of 256 KiB (8 MiB for all threads). */
  static const size_t again_sizes[] = { 100, 196, 4000, 256u << 10 };
  for (size_t k = 0; rl_concurrent && k < 4 * 8 && t->again_ok; k++) {
    size_t n = again_sizes[k % 4];
    errno = 0;
    void *p = v_malloc(n);
    if (p == NULL) {
      t->again_ok = 0;
      t->again_errno = errno;
      t->again_size = n;
      break;
    }
    memset(p, 7, n);
    if (n == again_sizes[3]) v_free(p);
    else t->ptrs[t->n++] = p;
  }
  for (size_t i = 0; i < t->n; i++) v_free(t->ptrs[i]);
  t->n = 0;
  pthread_barrier_wait(&rl_turns);
  /* Then, one thread at a time (each freeing before the next goes), its first blocks of
   * the first round again, the same sizes, up to 1 MiB. */
  while (atomic_load(&rl_turn) != t->id) sched_yield();
  size_t again = 0;
  for (size_t i = 0; i < held && again < (1u << 20) && t->again_ok; i++) {
    errno = 0;
    void *p = v_malloc(t->sizes[i]);
    if (p == NULL) {
      t->again_ok = 0;
      t->again_errno = errno;
      t->again_size = t->sizes[i];
      break;
    }
    memset(p, 7, t->sizes[i]);
    t->ptrs[t->n++] = p;
    again += t->sizes[i];
  }
  for (size_t i = 0; i < t->n; i++) v_free(t->ptrs[i]);
  t->n = 0;
  atomic_fetch_add(&rl_turn, 1);
  pthread_barrier_wait(&rl_done);
  return NULL;
}

static int run_rlimit_as(size_t headroom_mib, int concurrent) {
  static struct rl_thread th[RL_THREADS];
  rl_concurrent = concurrent;
  pthread_barrier_init(&rl_go, NULL, RL_THREADS + 1);
  pthread_barrier_init(&rl_allocated, NULL, RL_THREADS + 1);
  pthread_barrier_init(&rl_freed, NULL, RL_THREADS + 1);
  pthread_barrier_init(&rl_again, NULL, RL_THREADS + 1);
  pthread_barrier_init(&rl_turns, NULL, RL_THREADS + 1);
  pthread_barrier_init(&rl_done, NULL, RL_THREADS + 1);
  set_phase("creating threads");
  for (int i = 0; i < RL_THREADS; i++) {
    th[i].id = i;
    th[i].ptrs = v_malloc(RL_CAP * sizeof(void *));
    th[i].sizes = v_malloc(RL_CAP * sizeof(size_t));
    if (!th[i].ptrs || !th[i].sizes) nm_fail("malloc of the pointer array failed");
    if (pthread_create(&th[i].tid, NULL, rl_worker, &th[i]) != 0) nm_fail("pthread_create failed");
  }
  size_t vm = status_kb("VmSize") * 1024;
  struct rlimit old, lim;
  getrlimit(RLIMIT_AS, &old);
  lim.rlim_cur = vm + (headroom_mib << 20);
  lim.rlim_max = old.rlim_max;
  if (setrlimit(RLIMIT_AS, &lim) != 0) nm_fail("setrlimit(RLIMIT_AS) failed (errno %d)", errno);
  set_phase("32 threads allocating under RLIMIT_AS");
  pthread_barrier_wait(&rl_go);
  pthread_barrier_wait(&rl_allocated);
  set_phase("32 threads freeing under RLIMIT_AS");
  pthread_barrier_wait(&rl_freed);
  size_t vm_freed = status_kb("VmSize") * 1024;

  set_phase("every thread at once allocating small and 256 KiB blocks again after freeing");
  pthread_barrier_wait(&rl_again);
  pthread_barrier_wait(&rl_turns);
  set_phase("each thread in turn allocating its first blocks again");
  pthread_barrier_wait(&rl_done);
  size_t ok = 0, fails = 0, bytes = 0, again_size = 0;
  int again_failed = 0, again_errno = 0;
  for (int i = 0; i < RL_THREADS; i++) {
    pthread_join(th[i].tid, NULL);
    ok += th[i].ok;
    fails += th[i].fails;
    bytes += th[i].bytes;
    if (!th[i].again_ok) {
      again_failed++;
      again_errno = th[i].again_errno;
      again_size = th[i].again_size;
    }
  }
  if (again_failed)
    nm_fail("after every thread freed everything, %d of %d threads could not allocate again "
            "(malloc(%zu): errno %s); the process still maps %zu MiB, "
            "limit %zu MiB (%zu MiB at the start)",
            again_failed, RL_THREADS, again_size, errname(again_errno), vm_freed >> 20,
            (size_t)lim.rlim_cur >> 20, vm >> 20);
  if (fails == 0)
    nm_fail("the address-space limit never made a request fail (%zu MiB requested with a "
            "%zu MiB headroom): the check did not test anything",
            bytes >> 20, headroom_mib);
  pass("(limit VmSize+%zu MiB; %zu blocks, %zu MiB granted, %zu failures, all NULL+ENOMEM)",
       headroom_mib, ok, bytes >> 20, fails);
  return 0;
}

static int check_rlimit_as(void) {
  return run_rlimit_as(256, 0);
}

static int check_rlimit_as_regain(void) {
  return run_rlimit_as(64, 1);
}

/* RLIMIT_AS with 2 MiB of headroom: small requests still succeed. */
static pthread_barrier_t rh_go, rh_done;
static int rh_failed;
static size_t rh_failed_size;

static int rh_small_round(void) {
  static const size_t sizes[] = { 196, 16, 100, 1000, 4000, 24 };
  void *p[64];
  for (int i = 0; i < 64; i++) {
    size_t n = sizes[i % 6];
    p[i] = (i % 3 == 0) ? v_calloc(1, n) : v_malloc(n);
    if (p[i] == NULL) {
      rh_failed_size = n;
      for (int k = 0; k < i; k++) v_free(p[k]);
      return -1;
    }
    memset(p[i], 1, n);
  }
  for (int i = 0; i < 64; i++) v_free(p[i]);
  return 0;
}

static void *rh_worker(void *arg) {
  (void)arg;
  pthread_barrier_wait(&rh_go);   /* its first allocation happens under the limit */
  if (rh_small_round() != 0) rh_failed = 2;
  pthread_barrier_wait(&rh_done);
  return NULL;
}

static int check_rlimit_as_headroom_2m(void) {
  pthread_barrier_init(&rh_go, NULL, 2);
  pthread_barrier_init(&rh_done, NULL, 2);
  pthread_t t;
  if (pthread_create(&t, NULL, rh_worker, NULL) != 0) nm_fail("pthread_create failed");
  size_t vm = status_kb("VmSize") * 1024;
  struct rlimit old, lim;
  getrlimit(RLIMIT_AS, &old);
  lim.rlim_cur = vm + (2u << 20);
  lim.rlim_max = old.rlim_max;
  set_phase("small requests with 2 MiB of address space left");
  if (setrlimit(RLIMIT_AS, &lim) != 0) nm_fail("setrlimit(RLIMIT_AS) failed (errno %d)", errno);
  if (rh_small_round() != 0) rh_failed = 1;
  pthread_barrier_wait(&rh_go);
  pthread_barrier_wait(&rh_done);
  pthread_join(t, NULL);
  setrlimit(RLIMIT_AS, &old);
  if (rh_failed)
    nm_fail("with 2 MiB of address space left, malloc(%zu) failed in %s", rh_failed_size,
            rh_failed == 1 ? "the main thread" : "a thread allocating for the first time");
  pass("(limit VmSize+2 MiB: 64 small blocks in the main thread and in a new one)");
  return 0;
}

/* ------------------------------------------------------------------------------------ */
/* fork while threads run malloc and stdio (glibc BZ#19431's scenario)                   */

static atomic_int fs_stop;
static char fs_dir[256];
static char fs_lines[300];

static void fs_make_lines_file(void) {
  FILE *f = fopen(fs_lines, "w");
  if (!f) nm_fail("cannot create %s", fs_lines);
  uint64_t s = 5;
  for (int i = 0; i < 1500; i++) {
    size_t len = (i % 60 == 59) ? rng_size(&s, 40000, 300000) : rng_size(&s, 1, 300);
    for (size_t k = 0; k < len; k++) fputc('a' + (int)(k % 26), f);
    fputc('\n', f);
  }
  fclose(f);
}

static void fs_malloc_burst(uint64_t *s, int count) {
  void *p[16];
  for (int i = 0; i < count && i < 16; i++) {
    size_t n = rng_size(s, 8, (rng_next(s) % 8 == 0) ? (1u << 20) : 32768);
    p[i] = v_malloc(n);
    if (p[i]) ((volatile char *)p[i])[0] = 1;
  }
  for (int i = 0; i < count && i < 16; i++) v_free(p[i]);
}

static void *fs_worker(void *arg) {
  int id = (int)(intptr_t)arg;
  uint64_t s = 1000 + (uint64_t)id;
  char path[320];
  snprintf(path, sizeof path, "%s/w%d", fs_dir, id);
  FILE *lines = NULL;
  while (!atomic_load_explicit(&fs_stop, memory_order_relaxed)) {
    fs_malloc_burst(&s, 1 + (int)(rng_next(&s) % 16));
    switch (id) {
    case 0:   /* fflush(NULL): the stdio list lock, then every FILE lock */
      for (int i = 0; i < 20; i++) {
        fflush(NULL);
        fs_malloc_burst(&s, 2);
      }
      break;
    case 1:
    case 2: { /* getline with a fresh buffer: malloc while holding the FILE lock */
      if (lines == NULL) lines = fopen(fs_lines, "r");
      if (lines == NULL) nm_fail("worker %d: cannot open %s", id, fs_lines);
      for (int i = 0; i < 20; i++) {
        char *buf = NULL;
        size_t cap = 0;
        ssize_t r = getline(&buf, &cap, lines);
        v_free(buf);
        if (r < 0) {
          fclose(lines);
          lines = NULL;
          break;
        }
      }
      break;
    }
    default: { /* fopen / fprintf / fclose, and the shared stdout */
      FILE *f = fopen(path, "w");
      if (f == NULL) nm_fail("worker %d: fopen(%s) failed (errno %d)", id, path, errno);
      for (int i = 0; i < 50; i++) fprintf(f, "line %d %s\n", i, "some text to buffer");
      fclose(f);
      printf("worker %d writes to stdout\n", id);
      fflush(NULL);
      break;
    }
    }
  }
  if (lines) fclose(lines);
  return NULL;
}

/* Waits up to `seconds` for pid; returns its status, or -1 after killing it. */
static int wait_child(pid_t pid, double seconds) {
  double t0 = now_s();
  long nap = 20;
  for (;;) {
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) return st;
    if (r < 0 && errno != EINTR) nm_fail("waitpid(%d) failed (errno %d)", (int)pid, errno);
    if (now_s() - t0 > seconds) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      return -1;
    }
    sleep_us(nap);
    if (nap < 2000) nap *= 2;
  }
}

static int env_int(const char *name, int dflt) {
  const char *v = getenv(name);
  return v && *v ? atoi(v) : dflt;
}

static int check_fork_stdio(void) {
  const char *tmp = getenv("TMPDIR");
  snprintf(fs_dir, sizeof fs_dir, "%s/nm_conform.XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (mkdtemp(fs_dir) == NULL) nm_fail("mkdtemp(%s) failed", fs_dir);
  snprintf(fs_lines, sizeof fs_lines, "%s/lines", fs_dir);
  fs_make_lines_file();
  /* stdout goes to /dev/null for the duration: the threads and the children print. */
  fflush(stdout);
  int saved_stdout = dup(1);
  int devnull = open("/dev/null", O_WRONLY);
  dup2(devnull, 1);
  close(devnull);

  const int max_forks = env_int("NM_CONFORM_FORKS", 2000);
  const double max_seconds = 20.0;
  pthread_t t[4];
  for (int i = 0; i < 4; i++)
    if (pthread_create(&t[i], NULL, fs_worker, (void *)(intptr_t)i) != 0) nm_fail("pthread_create failed");
  sleep_us(50000);
  watchdog_kick(15);
  double t0 = now_s();
  int forks = 0;
  uint64_t s = 77;
  for (; forks < max_forks && now_s() - t0 < max_seconds; forks++) {
    set_phase("parent in fork() while 4 threads run malloc, fflush(NULL), getline, fopen/fclose; forks done");
    pid_t pid = fork();
    if (pid < 0) nm_fail("fork #%d failed (errno %d)", forks, errno);
    if (pid == 0) {
      void *a = v_malloc(100);
      void *b = v_malloc(200000);
      void *c = v_calloc(10, 1000);
      if (!a || !b || !c) _exit(3);
      memset(a, 1, 100);
      memset(b, 2, 200000);
      v_free(a);
      v_free(b);
      v_free(c);
      printf("child %d: malloc, free and printf work\n", forks);
      fflush(stdout);
      _exit(0);
    }
    g_child = pid;
    g_progress = forks;
    watchdog_kick(15);
    set_phase("parent waiting for a child");
    int st = wait_child(pid, 5.0);
    g_child = 0;
    if (st == -1)
      nm_fail("child deadlocked: fork #%d (pid %d) did not exit within 5 s (malloc, free, printf "
              "in the child)",
              forks, (int)pid);
    if (WIFSIGNALED(st)) nm_fail("child of fork #%d was killed by signal %d", forks, WTERMSIG(st));
    if (WEXITSTATUS(st) != 0)
      nm_fail("child of fork #%d exited with status %d (3 = malloc failed)", forks, WEXITSTATUS(st));
    if (rng_next(&s) % 4 == 0) fs_malloc_burst(&s, 4);
  }
  double dt = now_s() - t0;
  set_phase("joining the worker threads");
  watchdog_kick(15);
  atomic_store(&fs_stop, 1);
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  fflush(stdout);
  dup2(saved_stdout, 1);
  close(saved_stdout);
  char path[320];
  for (int i = 0; i < 4; i++) {
    snprintf(path, sizeof path, "%s/w%d", fs_dir, i);
    unlink(path);
  }
  unlink(fs_lines);
  rmdir(fs_dir);
  pass("(%d forks in %.1f s, no deadlock)", forks, dt);
  return 0;
}

/* ------------------------------------------------------------------------------------ */
/* fork from a signal handler that interrupted malloc, free or realloc                   */

static volatile sig_atomic_t fsh_op;   /* 0 none, 1 malloc, 2 free, 3 realloc */
static volatile sig_atomic_t fsh_forks, fsh_forks_in_op, fsh_failed;
static int fsh_pipe[2];
static timer_t fsh_timer;
static uint64_t fsh_seed = 12345;
static char fsh_why[256];

static void fsh_arm(void) {
  struct itimerspec its;
  memset(&its, 0, sizeof its);
  its.it_value.tv_nsec = 50000 + (long)(rng_next(&fsh_seed) % 400000);   /* 50..450 µs */
  timer_settime(fsh_timer, 0, &its, NULL);
}

static const char *const fsh_op_names[] = {"nothing", "malloc", "free", "realloc"};
static volatile sig_atomic_t fsh_cur_op;

static void fsh_note(const char *a, const char *b, long num) {
  /* async-signal-safe formatting of the failure reason */
  if (fsh_failed) return;
  fsh_failed = 1;
  char n[24];
  utoa(n, (unsigned long)num);
  size_t len = 0;
  const char *parts[] = {a, n, b, " (the signal had interrupted: ", fsh_op_names[fsh_cur_op], ")"};
  for (int i = 0; i < 6; i++)
    for (const char *c = parts[i]; *c && len < sizeof fsh_why - 1; c++) fsh_why[len++] = *c;
  fsh_why[len] = 0;
}

static volatile sig_atomic_t fsh_in_child;

/* The child, back in the main loop after the handler returned. */
static void fsh_child_work(void) {
  void *a = v_malloc(24);
  void *b = v_malloc(3000);
  void *c = v_malloc(200000);
  if (!a || !b || !c) _exit(3);
  memset(a, 1, 24);
  memset(b, 2, 3000);
  memset(c, 3, 200000);
  b = v_realloc(b, 9000);
  if (!b) _exit(4);
  v_free(a);
  v_free(b);
  v_free(c);
  if (write(fsh_pipe[1], "x", 1) != 1) _exit(5);
  _exit(0);
}

static void fsh_handler(int sig) {
  (void)sig;
  int saved = errno;
  int op = fsh_op;
  fsh_cur_op = op;
  if (fsh_failed) {
    errno = saved;
    return;
  }
  set_phase(op ? "parent in fork() called from a signal handler that interrupted an allocation call; forks done"
               : "parent in fork() called from a signal handler; forks done");
  pid_t pid = fork();
  if (pid == 0) {
    /* The child returns from the handler: the interrupted call completes in the child,
     * then the main loop sees fsh_in_child and allocates (fsh_child_work). */
    fsh_in_child = 1;
    errno = saved;
    return;
  }
  if (pid < 0) {
    fsh_note("fork() in the signal handler failed, errno ", "", errno);
    errno = saved;
    return;
  }
  g_child = pid;
  set_phase("parent in the signal handler, waiting for the child; forks done");
  /* Wait for the child's byte (or its death) for up to 5 s. */
  int got = 0, st = 0, reaped = 0;
  for (int waited = 0; waited < 5000 && !got && !reaped; waited += 10) {
    struct pollfd pfd = {fsh_pipe[0], POLLIN, 0};
    int r = poll(&pfd, 1, 10);
    if (r > 0) {
      char c;
      if (read(fsh_pipe[0], &c, 1) == 1) got = 1;
    } else if (waitpid(pid, &st, WNOHANG) == pid) {
      reaped = 1;
    }
  }
  if (!got && !reaped) {
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    g_child = 0;
    fsh_note("child deadlocked: the child of fork #", " (made in a signal handler) did not finish the interrupted call and then malloc/free/realloc within 5 s", fsh_forks);
    errno = saved;
    return;
  }
  if (!reaped) waitpid(pid, &st, 0);
  if (!got) {   /* it may have written and exited between our poll and waitpid */
    struct pollfd pfd = {fsh_pipe[0], POLLIN, 0};
    char c;
    if (poll(&pfd, 1, 0) > 0 && read(fsh_pipe[0], &c, 1) == 1) got = 1;
  }
  g_child = 0;
  if (WIFSIGNALED(st))
    fsh_note("the child of a fork from a signal handler was killed by signal ", "", WTERMSIG(st));
  else if (WEXITSTATUS(st) != 0)
    fsh_note("the child of a fork from a signal handler exited with status ", " (3/4 = malloc/realloc failed)", WEXITSTATUS(st));
  else if (!got)
    fsh_note("the child of a fork from a signal handler exited without writing its byte, status ", "", st);
  fsh_forks++;
  if (op) fsh_forks_in_op++;
  g_progress = fsh_forks;
  watchdog_kick(15);
  set_phase("the malloc/free/realloc loop whose signal handler forks; forks done");
  fsh_arm();
  errno = saved;
}

static int check_fork_in_signal_handler(void) {
  if (pipe(fsh_pipe) != 0) nm_fail("pipe failed");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = fsh_handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &sa, NULL);
  struct sigevent sev;
  memset(&sev, 0, sizeof sev);
  sev.sigev_notify = SIGEV_SIGNAL;
  sev.sigev_signo = SIGUSR1;
  if (timer_create(CLOCK_MONOTONIC, &sev, &fsh_timer) != 0) nm_fail("timer_create failed (errno %d)", errno);
  enum { SLOTS = 256 };
  static void *slot[SLOTS];
  uint64_t s = 3;
  const int target = env_int("NM_CONFORM_SIGNAL_FORKS", 400);
  set_phase("the malloc/free/realloc loop whose signal handler forks; forks done");
  g_progress = 0;
  watchdog_kick(15);
  double t0 = now_s();
  fsh_arm();
  while (!fsh_failed && (fsh_forks < target || fsh_forks_in_op < target / 2) && now_s() - t0 < 25.0) {
    for (int k = 0; k < 64; k++) {
      size_t i = (size_t)(rng_next(&s) % SLOTS);
      uint64_t r = rng_next(&s);
      size_t n = (r % 64 == 0) ? rng_size(&s, 65536, 1u << 20) : rng_size(&s, 1, 8192);
      if (slot[i] == NULL) {
        fsh_op = 1;
        void *p = v_malloc(n);
        fsh_op = 0;
        if (fsh_in_child) fsh_child_work();
        if (!p) nm_fail("malloc(%zu) failed", n);
        ((volatile char *)p)[0] = 1;
        slot[i] = p;
      } else if (r & 256) {
        fsh_op = 2;
        v_free(slot[i]);
        fsh_op = 0;
        if (fsh_in_child) fsh_child_work();
        slot[i] = NULL;
      } else {
        fsh_op = 3;
        void *p = v_realloc(slot[i], n);
        fsh_op = 0;
        if (fsh_in_child) fsh_child_work();
        if (!p) nm_fail("realloc(%zu) failed", n);
        ((volatile char *)p)[n - 1] = 1;
        slot[i] = p;
      }
    }
  }
  struct itimerspec off;
  memset(&off, 0, sizeof off);
  timer_settime(fsh_timer, 0, &off, NULL);
  timer_delete(fsh_timer);
  signal(SIGUSR1, SIG_IGN);
  if (fsh_failed) nm_fail("%s", fsh_why);
  for (int i = 0; i < SLOTS; i++) v_free(slot[i]);
  if (fsh_forks_in_op < 50)
    nm_fail("only %d of %d signals interrupted an allocation call in 25 s: the check could "
            "not exercise its point",
            (int)fsh_forks_in_op, (int)fsh_forks);
  pass("(%d forks from the handler, %d of them interrupted malloc/free/realloc)",
       (int)fsh_forks, (int)fsh_forks_in_op);
  return 0;
}

/* ------------------------------------------------------------------------------------ */
/* 20,000 short-lived threads                                                            */

enum { TT_TOTAL = 20000, TT_BATCH = 64, TT_KEEP = 8, TT_BLOCKS = 32 };

struct tt_slot {
  pthread_t tid;
  int index;
  void *handed[TT_KEEP];   /* freed by the main thread after the thread exits */
};

static void *tt_worker(void *arg) {
  struct tt_slot *sl = arg;
  uint64_t s = 0x1234567ull + (uint64_t)sl->index * 7919u;
  void *b[TT_BLOCKS + 1];
  for (int i = 0; i < TT_BLOCKS; i++) {
    size_t n = rng_size(&s, 16, 4096);
    b[i] = v_malloc(n);
    if (!b[i]) nm_fail("thread %d: malloc(%zu) failed", sl->index, n);
    memset(b[i], 0x11, n);
  }
  b[TT_BLOCKS] = v_malloc(65536);
  if (!b[TT_BLOCKS]) nm_fail("thread %d: malloc(65536) failed", sl->index);
  memset(b[TT_BLOCKS], 0x22, 65536);
  for (int i = 0; i < TT_KEEP; i++) sl->handed[i] = b[i * 4];
  for (int i = 0; i <= TT_BLOCKS; i++)
    if (i % 4 != 0 || i >= TT_KEEP * 4) v_free(b[i]);
  return NULL;
}

static int check_threads_20k(void) {
  static struct tt_slot slots[TT_BATCH];
  size_t rss0 = rss_bytes();
  size_t peak = rss0;
  double t0 = now_s();
  int total = env_int("NM_CONFORM_THREADS", TT_TOTAL);
  int budget = env_int("NM_CONFORM_THREADS_SECONDS", 45);   /* meson's timeout is 60 s */
  set_phase("creating and joining batches of 64 short-lived threads; threads started so far");
  /* Small stacks: glibc then keeps them in its stack cache, so the check measures the
   * allocator, not mmap/munmap of 8 MiB stacks. */
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  for (int done = 0; done < total; done += TT_BATCH) {
    int nb = total - done < TT_BATCH ? total - done : TT_BATCH;
    g_progress = done;
    watchdog_kick(15);
    if (now_s() - t0 > budget)
      nm_fail("too slow: only %d of %d short-lived threads done after %d s (%.1f ms per thread; "
              "glibc needs about 0.1 ms)",
              done, total, budget, (now_s() - t0) * 1e3 / done);
    for (int i = 0; i < nb; i++) {
      slots[i].index = done + i;
      int r = pthread_create(&slots[i].tid, &attr, tt_worker, &slots[i]);
      if (r != 0) nm_fail("pthread_create for thread %d failed (%s)", done + i, errname(r));
    }
    for (int i = 0; i < nb; i++) pthread_join(slots[i].tid, NULL);
    for (int i = 0; i < nb; i++)
      for (int k = 0; k < TT_KEEP; k++) v_free(slots[i].handed[k]);
    if ((done / TT_BATCH) % 16 == 0 || done + nb >= total) {
      size_t rss = rss_bytes();
      if (rss > peak) peak = rss;
      if (rss > rss0 + (64u << 20))
        nm_fail("RSS grew from %zu MiB to %zu MiB after %d short-lived threads: the memory of "
                "exited threads is not reused",
                rss0 >> 20, rss >> 20, done + nb);
    }
  }
  size_t rss = rss_bytes();
  pass("(%d threads in %.1f s; RSS %zu MiB before, %zu MiB after, peak %zu MiB)", total,
       now_s() - t0, rss0 >> 20, rss >> 20, peak >> 20);
  return 0;
}

/* ------------------------------------------------------------------------------------ */
/* dlopen(RTLD_DEEPBIND): pointers cross between the program and the library             */

static const char *dl_path(void) {
  const char *e = getenv("NM_CONFORM_DL");
  if (e && *e) return e;
  static char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 64);
  if (n <= 0) nm_fail("readlink(/proc/self/exe) failed");
  buf[n] = 0;
  char *slash = strrchr(buf, '/');
  strcpy(slash ? slash + 1 : buf, "libnm_conform_dl.so");
  return buf;
}

static int check_dlopen_deepbind(void) {
  const char *path = dl_path();
  set_phase("dlopen(RTLD_NOW | RTLD_DEEPBIND)");
  void *h = dlopen(path, RTLD_NOW | RTLD_DEEPBIND);
  if (h == NULL) nm_fail("dlopen(%s, RTLD_NOW | RTLD_DEEPBIND) failed: %s", path, dlerror());
  void *(*dl_malloc)(size_t) = (void *(*)(size_t))dlsym(h, "nm_dl_malloc");
  void (*dl_free)(void *) = (void (*)(void *))dlsym(h, "nm_dl_free");
  void *(*dl_realloc)(void *, size_t) = (void *(*)(void *, size_t))dlsym(h, "nm_dl_realloc");
  void *(*dl_calloc)(size_t, size_t) = (void *(*)(size_t, size_t))dlsym(h, "nm_dl_calloc");
  if (!dl_malloc || !dl_free || !dl_realloc || !dl_calloc) nm_fail("the helper library lacks nm_dl_* symbols");
  set_phase("passing blocks between the program and a RTLD_DEEPBIND library");
  uint64_t s = 17;
  enum { KEEP = 64 };
  void *kept[KEEP] = {0};
  for (int i = 0; i < 4000; i++) {
    size_t n = (i % 50 == 0) ? rng_size(&s, 65536, 2u << 20) : rng_size(&s, 1, 8192);
    unsigned seed = (unsigned)i;
    /* library allocates, program reallocs and frees */
    nm_phase("program malloc_usable_size/realloc of a %zu-byte library block (round %d)", n, i);
    void *a = dl_malloc(n);
    if (!a) nm_fail("library malloc(%zu) failed", n);
    fill(a, n, seed);
    size_t u = v_usable(a);
    if (u < n) nm_fail("malloc_usable_size of a %zu-byte library block is %zu", n, u);
    void *a2 = v_realloc(a, n * 2 + 16);
    if (!a2) nm_fail("program realloc of a library block failed");
    size_t bad = verify(a2, n, seed);
    if (bad != SIZE_MAX) nm_fail("program realloc of a %zu-byte library block lost byte %zu", n, bad);
    v_free(a2);
    /* program allocates, library reallocs and frees */
    nm_phase("library realloc/free of a %zu-byte program block (round %d)", n, i);
    void *b = v_malloc(n);
    if (!b) nm_fail("malloc(%zu) failed", n);
    fill(b, n, seed + 1);
    void *b2 = dl_realloc(b, n * 3 + 8);
    if (!b2) nm_fail("library realloc of a program block failed");
    bad = verify(b2, n, seed + 1);
    if (bad != SIZE_MAX) nm_fail("library realloc of a %zu-byte program block lost byte %zu", n, bad);
    dl_free(b2);
    /* plain crossings, some kept alive for a while */
    nm_phase("%zu-byte blocks crossing both ways, some kept alive (round %d)", n, i);
    void *c = dl_calloc(1, n);
    if (!c || first_nonzero(c, n) != SIZE_MAX) nm_fail("library calloc(%zu) failed or not zero", n);
    int k = (int)(rng_next(&s) % KEEP);
    if (kept[k]) {
      if (rng_next(&s) & 1) v_free(kept[k]);
      else dl_free(kept[k]);
    }
    kept[k] = c;
    void *d = v_malloc(n);
    memset(d, 0x44, n);
    dl_free(d);
  }
  for (int k = 0; k < KEEP; k++) dl_free(kept[k]);
  /* The heap is still sound afterwards. */
  set_phase("malloc/free in the program after the crossings");
  void *blocks[256];
  for (int r = 0; r < 20; r++) {
    for (int i = 0; i < 256; i++) {
      size_t n = rng_size(&s, 1, 20000);
      blocks[i] = v_malloc(n);
      if (!blocks[i]) nm_fail("malloc failed after the crossings");
      memset(blocks[i], i, n);
    }
    for (int i = 0; i < 256; i++) v_free(blocks[i]);
  }
  dlclose(h);
  pass(NULL);
  return 0;
}

/* ------------------------------------------------------------------------------------ */
/* malloc_trim, mallinfo2, mallopt, malloc_stats                                         */

enum { MI_BLOCK = 128, MI_COUNT = (64 << 20) / MI_BLOCK };

static void **mi_alloc_64mib(void) {
  void **v = v_malloc(MI_COUNT * sizeof(void *));
  if (!v) nm_fail("malloc of the pointer array failed");
  for (size_t i = 0; i < MI_COUNT; i++) {
    v[i] = v_malloc(MI_BLOCK);
    if (!v[i]) nm_fail("malloc(%d) #%zu failed", MI_BLOCK, i);
    ((volatile char *)v[i])[0] = 1;
  }
  return v;
}

static void mi_free_all(void **v) {
  for (size_t i = 0; i < MI_COUNT; i++) v_free(v[i]);
  v_free(v);
}

static int check_mallinfo2_in_use(void) {
  struct mallinfo2 m0 = mallinfo2();
  void **v = mi_alloc_64mib();
  struct mallinfo2 m1 = mallinfo2();
  size_t used1 = m1.uordblks + m1.hblkhd;
  /* Each block counted once: what the allocator rounds a 64 MiB total up to (glibc adds an
   * 8-byte header, a size class wastes at most a quarter, canaries and trailers add less
   * than the 128-byte block itself), never twice the 64 MiB. */
  if (used1 < (64u << 20) || used1 >= (128u << 20) + (m0.uordblks + m0.hblkhd))
    nm_fail("with 64 MiB allocated in %d-byte blocks, mallinfo2 reports uordblks %zu + hblkhd "
            "%zu = %zu MiB in use (expected 64 MiB to less than 128 MiB more than the %zu KiB "
            "at the start: every live block counted once)",
            MI_BLOCK, m1.uordblks, m1.hblkhd, used1 >> 20, (m0.uordblks + m0.hblkhd) >> 10);
  if (m1.arena + m1.hblkhd < used1 || m1.fordblks > m1.arena)
    nm_fail("mallinfo2: arena %zu + hblkhd %zu must hold uordblks + hblkhd %zu, and fordblks %zu "
            "is part of arena", m1.arena, m1.hblkhd, used1, m1.fordblks);
  mi_free_all(v);
  struct mallinfo2 m2 = mallinfo2();
  size_t used2 = m2.uordblks + m2.hblkhd;
  if (used2 + (32u << 20) > used1)
    nm_fail("after freeing the 64 MiB, mallinfo2 still reports %zu MiB in use (was %zu MiB)",
            used2 >> 20, used1 >> 20);
  pass("(in use: %zu KiB at start, %zu MiB with 64 MiB allocated, %zu KiB after free)",
       (m0.uordblks + m0.hblkhd) >> 10, used1 >> 20, used2 >> 10);
  return 0;
}

static int check_malloc_trim(void) {
  void **v = mi_alloc_64mib();
  mi_free_all(v);
  void *big = live_block(32u << 20, 1);
  v_free(big);
  int r = malloc_trim(0);
  if (r != 0 && r != 1) nm_fail("malloc_trim(0) returned %d, expected 0 or 1", r);
  int r2 = malloc_trim(1u << 20);
  if (r2 != 0 && r2 != 1) nm_fail("malloc_trim(1 MiB) returned %d, expected 0 or 1", r2);
  /* the process is fine afterwards */
  v = mi_alloc_64mib();
  for (size_t i = 0; i < MI_COUNT; i += 4096) fill(v[i], MI_BLOCK, 3);
  for (size_t i = 0; i < MI_COUNT; i += 4096)
    if (verify(v[i], MI_BLOCK, 3) != SIZE_MAX) nm_fail("block content lost after malloc_trim");
  mi_free_all(v);
  pass("(malloc_trim(0) = %d)", r);
  return 0;
}

static int check_mallopt(void) {
  static const struct {
    int param, value;
    const char *name;
  } opts[] = {
      {M_MMAP_THRESHOLD, 1 << 20, "M_MMAP_THRESHOLD, 1 MiB"},
      {M_TRIM_THRESHOLD, 8 << 20, "M_TRIM_THRESHOLD, 8 MiB"},
      {M_TOP_PAD, 1 << 20, "M_TOP_PAD, 1 MiB"},
      {M_MMAP_MAX, 65536, "M_MMAP_MAX, 65536"},
      {M_ARENA_MAX, 8, "M_ARENA_MAX, 8"},
  };
  for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
    int r = mallopt(opts[i].param, opts[i].value);
    if (r != 1) nm_fail("mallopt(%s) returned %d, expected 1 (glibc accepts it)", opts[i].name, r);
  }
  /* allocation still works on both sides of the new threshold */
  static const size_t sizes[] = {100, 500000, 1 << 20, 3 << 20};
  for (int k = 0; k < 4; k++) {
    void *p = live_block(sizes[k], 4);
    live_intact(p, sizes[k], 4, "nothing");
    v_free(p);
  }
  pass(NULL);
  return 0;
}

static int check_malloc_stats(void) {
  void **v = v_malloc(1000 * sizeof(void *));
  for (int i = 0; i < 1000; i++) v[i] = v_malloc((size_t)i * 10 + 1);
  char path[300];
  const char *tmp = getenv("TMPDIR");
  snprintf(path, sizeof path, "%s/nm_conform_stats.XXXXXX", tmp && *tmp ? tmp : "/tmp");
  int fd = mkstemp(path);
  if (fd < 0) nm_fail("mkstemp failed");
  unlink(path);
  fflush(stderr);
  int saved = dup(2);
  dup2(fd, 2);
  malloc_stats();
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  struct stat st;
  fstat(fd, &st);
  char head[81] = {0};
  if (pread(fd, head, 80, 0) < 0) head[0] = 0;
  close(fd);
  for (int i = 0; i < 1000; i++) v_free(v[i]);
  v_free(v);
  if (st.st_size == 0) nm_fail("malloc_stats() wrote nothing to stderr");
  for (char *c = head; *c; c++)
    if (*c == '\n') *c = ' ';
  pass("(%lld bytes on stderr, starting \"%.40s\")", (long long)st.st_size, head);
  return 0;
}

/* ------------------------------------------------------------------------------------ */
/* The table                                                                             */

struct check {
  const char *name;
  int (*run)(void);
  unsigned watchdog;   /* seconds */
  const char *glibc;   /* what glibc 2.36 does, in words */
};

static const struct check CHECKS[] = {
    {"enomem_malloc", check_enomem_malloc, 20,
     "malloc(n) with n > PTRDIFF_MAX returns NULL and sets errno to ENOMEM: checked_request2size() "
     "rejects the size before any heap or system call."},
    {"enomem_calloc", check_enomem_calloc, 20,
     "calloc(1, n) and calloc(n, 1) with n > PTRDIFF_MAX return NULL with errno ENOMEM."},
    {"enomem_realloc", check_enomem_realloc, 20,
     "realloc(p, n) with n > PTRDIFF_MAX returns NULL with errno ENOMEM; p stays allocated and "
     "unchanged."},
    {"enomem_reallocarray", check_enomem_reallocarray, 20,
     "reallocarray is realloc after an overflow check: reallocarray(p, 1, n) and (p, n, 1) with "
     "a huge n return NULL with ENOMEM and leave p unchanged; reallocarray(NULL, 1, n) likewise."},
    {"enomem_memalign", check_enomem_memalign, 20,
     "memalign(a, n) with a huge n returns NULL with ENOMEM: _mid_memalign checks "
     "n > SIZE_MAX - a - MINSIZE before anything else."},
    {"enomem_aligned_alloc", check_enomem_aligned_alloc, 20,
     "In 2.36 aligned_alloc is an alias of memalign, so a huge size gives NULL with ENOMEM."},
    {"enomem_valloc", check_enomem_valloc, 20,
     "valloc(n) is memalign(page size, n): NULL with ENOMEM for a huge n."},
    {"enomem_pvalloc", check_enomem_pvalloc, 20,
     "pvalloc(n) with a huge n returns NULL with ENOMEM (its round-up to pages is "
     "overflow-checked)."},
    {"enomem_posix_memalign", check_enomem_posix_memalign, 20,
     "posix_memalign(&p, a, n) with a huge n returns ENOMEM (the error number is the return "
     "value) and does not store into p."},
    {"calloc_overflow", check_calloc_overflow, 20,
     "calloc(a, b) whose product overflows size_t returns NULL with ENOMEM "
     "(__builtin_mul_overflow), instead of allocating the wrapped product."},
    {"reallocarray_overflow", check_reallocarray_overflow, 20,
     "reallocarray(p, a, b) whose product overflows returns NULL with ENOMEM and leaves p "
     "unchanged."},
    {"huge_fails_fast", check_huge_fails_fast, 20,
     "A request above PTRDIFF_MAX fails in arithmetic before any system call: 1000 of them take "
     "well under a millisecond and leave /proc/self/maps as it was."},
    {"realloc_zero_frees", check_realloc_zero_frees, 30,
     "realloc(p, 0) with p != NULL frees p and returns NULL (REALLOC_ZERO_BYTES_FREES); errno "
     "is not changed (free preserves it)."},
    {"realloc_null_zero", check_realloc_null_zero, 20,
     "realloc(NULL, 0) is malloc(0): a unique, 16-byte-aligned minimum chunk (24 usable bytes) "
     "that can be written, realloc'd and freed."},
    {"realloc_fail_intact", check_realloc_fail_intact, 20,
     "A realloc that fails returns NULL and does not touch the old block: it keeps its content "
     "and can still be grown and freed."},
    {"realloc_content", check_realloc_content, 30,
     "realloc keeps the first min(old, new) bytes when growing or shrinking, in place or moved, "
     "from 1 B to 8 MiB (mmapped chunks are moved with mremap)."},
    {"align16", check_align16, 20,
     "Every block from malloc, calloc and realloc is 16-byte aligned (MALLOC_ALIGNMENT = 16 on "
     "x86_64 = alignof(max_align_t)), malloc(0) and malloc(1..8) included: the smallest chunk "
     "is 32 bytes."},
    {"posix_memalign_einval", check_posix_memalign_einval, 20,
     "posix_memalign returns EINVAL unless the alignment is a power of two multiple of "
     "sizeof(void *): 0, 1, 2, 4, 12, 24, 48, ... are rejected, whatever the size."},
    {"memalign_huge_alignment", check_memalign_huge_alignment, 20,
     "memalign (and aligned_alloc, its alias in 2.36) with an alignment above SIZE_MAX/2+1 "
     "returns NULL with EINVAL; with alignment SIZE_MAX/2+1 (a power of two too large to "
     "satisfy) NULL with ENOMEM."},
    {"memalign_nonpow2", check_memalign_nonpow2, 20,
     "memalign with an alignment that is not a power of two does not fail: it rounds the "
     "alignment up to the next power of two, starting at 32 (memalign(24, n) is 32-aligned, "
     "48 -> 64, 100 -> 128, 3000 -> 4096); an alignment <= 16 is plain malloc. aligned_alloc, "
     "its alias in 2.36, does the same (glibc 2.38 made aligned_alloc fail with EINVAL "
     "instead; memalign still rounds up)."},
    {"aligned_memalign", check_aligned_memalign, 20,
     "memalign(a, n) for every power of two a from 16 B to 1 MiB and n in {1, 100, 4096, 65536, "
     "1 MiB+1}: an a-aligned block whose usable size is >= n, all of it writable."},
    {"aligned_posix_memalign", check_aligned_posix_memalign, 20,
     "posix_memalign, same alignments and sizes: returns 0 and an aligned block, usable >= n."},
    {"aligned_aligned_alloc", check_aligned_aligned_alloc, 20,
     "aligned_alloc, same alignments and sizes: in 2.36 the size need not be a multiple of the "
     "alignment (aligned_alloc(64, 100) works)."},
    {"valloc_page", check_valloc_page, 20,
     "valloc(n) returns a page-aligned block with usable size >= n."},
    {"pvalloc_round", check_pvalloc_round, 20,
     "pvalloc(n) rounds n up to whole pages and returns a page-aligned block whose usable size "
     "is at least the rounded size."},
    {"pvalloc_overflow", check_pvalloc_overflow, 20,
     "pvalloc(n) near SIZE_MAX: the round-up to pages would wrap; glibc checks it "
     "(__builtin_add_overflow) and returns NULL with ENOMEM instead of a small block."},
    {"free_errno", check_free_errno, 30,
     "free never changes errno (since 2.33 __libc_free saves and restores it around munmap and "
     "heap trimming), for NULL, small, large (unmapped) and remote blocks."},
    {"free_errno_madvise_fails", check_free_errno_madvise_fails, 30,
     "free leaves errno unchanged even when a system call inside it fails: with a seccomp "
     "filter that makes every madvise fail with EPERM (as some sandboxes do), the frees of "
     "free_errno still keep errno at 1234. __libc_free restores errno whatever happened inside; "
     "glibc trims the main heap with brk and ignores a failed madvise in other arenas."},
    {"usable_size_null", check_usable_size_null, 20, "malloc_usable_size(NULL) returns 0."},
    {"usable_size_writable", check_usable_size_writable, 30,
     "malloc_usable_size(p) is at least the requested size, and every usable byte belongs to "
     "the block (writing all of them disturbs no neighbour)."},
    {"calloc_zero_reuse", check_calloc_zero_reuse, 30,
     "calloc memory is zero, also when the chunk is recycled dirty memory: glibc clears reused "
     "chunks and skips the clearing only for fresh mmap or top-of-heap memory."},
    {"errno_exhausted", check_errno_exhausted, 40,
     "Out of address space (RLIMIT_AS), every entry point fails the glibc way: malloc, calloc, "
     "realloc, reallocarray, memalign, aligned_alloc, valloc and pvalloc return NULL with errno "
     "ENOMEM, and posix_memalign returns ENOMEM and sets errno to ENOMEM as well (glibc's "
     "allocation fails inside mmap or sbrk, which set it; tst-malloc-thread-fail relies on it)."},
    {"rlimit_as", check_rlimit_as, 40,
     "Under RLIMIT_AS, a failing mmap or sbrk makes malloc/calloc/memalign/realloc return NULL "
     "with errno ENOMEM (realloc leaves the block valid); if a thread cannot get a new arena it "
     "uses an existing one; nothing crashes, and once everything is freed each thread, in "
     "turn, can allocate its first blocks (up to 1 MiB) again."},
    {"rlimit_as_regain", check_rlimit_as_regain, 40,
     "As rlimit_as with only 64 MiB of headroom, and once everything is freed every thread, all "
     "at once, allocates small blocks and 256 KiB blocks again (glibc's threads fall back to an "
     "existing arena), then each in turn its first blocks."},
    {"rlimit_as_headroom_2m", check_rlimit_as_headroom_2m, 30,
     "With only 2 MiB of address space left under RLIMIT_AS, small requests still succeed, in "
     "the main thread and in a thread that never allocated before (glibc grows its main arena "
     "with brk, a few pages at a time, and a thread that cannot get an arena of its own uses an "
     "existing one)."},
    {"fork_stdio", check_fork_stdio, 50,
     "fork() runs the atfork prepare handlers, then takes the stdio list lock, then the malloc "
     "arena locks, and resets them all in the child (the order fixed for BZ#19431 in 2.24): "
     "forking while other threads sit in malloc, fflush(NULL), getline and fopen/fclose never "
     "deadlocks, and the child can malloc, free and printf."},
    {"fork_in_signal_handler", check_fork_in_signal_handler, 40,
     "In a single-threaded process, fork() from a signal handler that interrupted malloc, free "
     "or realloc neither deadlocks nor crashes, and the child can allocate once it has returned "
     "from the handler (so that the interrupted call completes): glibc's malloc takes no lock "
     "while the process is single-threaded, and fork takes none then (glibc's own test "
     "tst-mallocfork2). glibc does not support allocating in the child while still inside the "
     "handler (the heap may be half-updated: 'malloc assertion failure in sysmalloc'), nor a "
     "fork from a handler in a multi-threaded process (fork takes the arena locks)."},
    {"threads_20k", check_threads_20k, 50,
     "Threads share at most 8 x cores arenas; a thread's tcache goes back to its arena when it "
     "exits and blocks freed by other threads return to their arena: 20,000 short-lived threads "
     "leave RSS bounded."},
    {"dlopen_deepbind", check_dlopen_deepbind, 30,
     "There is one malloc in the process, so a library opened with RTLD_DEEPBIND (bound to "
     "libc's malloc) and the program can free and realloc each other's blocks."},
    {"mallinfo2_in_use", check_mallinfo2_in_use, 30,
     "mallinfo2() reports uordblks (bytes in use in the arenas) + hblkhd (bytes in mmapped "
     "chunks): 64 MiB (plus the allocator's rounding, never double) while 64 MiB is allocated, "
     "each block counted once; arena (bytes the arenas got from the system) holds uordblks and fordblks; it falls "
     "after free."},
    {"malloc_trim", check_malloc_trim, 30,
     "malloc_trim(pad) returns 1 if it released memory to the system, 0 otherwise; the heap "
     "stays usable."},
    {"mallopt", check_mallopt, 20,
     "mallopt(M_MMAP_THRESHOLD, 1 MiB), M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX and M_ARENA_MAX "
     "return 1 (accepted)."},
    {"malloc_stats", check_malloc_stats, 20,
     "malloc_stats() prints, for each arena, 'system bytes' and 'in use bytes', then the totals "
     "and the mmap counts, to stderr."},
    {"cxx_new_bad_alloc", nm_check_cxx_new_bad_alloc, 20,
     "operator new / new[] of a size no allocation can satisfy (libstdc++ over glibc's malloc "
     "returning NULL, no new_handler installed) throws std::bad_alloc."},
    {"cxx_aligned_new_bad_alloc", nm_check_cxx_aligned_new_bad_alloc, 20,
     "operator new(n, std::align_val_t(64)) and new[] with a huge n throw std::bad_alloc "
     "(libstdc++ calls aligned_alloc, which returns NULL)."},
    {"cxx_nothrow_new", nm_check_cxx_nothrow_new, 20,
     "operator new(n, std::nothrow) (also aligned) with a huge n returns nullptr."},
};
#define N_CHECKS (sizeof CHECKS / sizeof CHECKS[0])

static const struct check *find_check(const char *name) {
  for (size_t i = 0; i < N_CHECKS; i++)
    if (strcmp(CHECKS[i].name, name) == 0) return &CHECKS[i];
  return NULL;
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "--list") == 0) {
    for (size_t i = 0; i < N_CHECKS; i++) printf("%s\n", CHECKS[i].name);
    return 0;
  }
  if (argc == 3 && strcmp(argv[1], "--describe") == 0) {
    const struct check *c = find_check(argv[2]);
    if (!c) {
      fprintf(stderr, "nm_conform: no check named %s\n", argv[2]);
      return 2;
    }
    printf("%s\n", c->glibc);
    return 0;
  }
  if (argc != 2 || argv[1][0] == '-') {
    fprintf(stderr, "usage: nm_conform --list | --describe NAME | NAME\n");
    return 2;
  }
  const struct check *c = find_check(argv[1]);
  if (!c) {
    fprintf(stderr, "nm_conform: no check named %s (see --list)\n", argv[1]);
    return 2;
  }
  g_check = c->name;
  unsigned wd = c->watchdog;
  int scale = env_int("NM_CONFORM_WATCHDOG", 0);
  if (scale > 0) wd = (unsigned)scale;
  watchdog_start(wd);
  crash_handlers_install();
  set_phase("starting the check");
  int r = c->run();
  alarm(0);
  if (r == 0 && !g_passed) pass(NULL);
  return r;
}
