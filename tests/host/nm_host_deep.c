/* The program of the deepbind suite. It exports its own helper() (returning 1) and opens a
 * plugin that bundles another helper() (returning 2):
 *
 *   nm_host_deep check  PLUGIN now|lazy|plain        dlopen(PLUGIN) from the program
 *   nm_host_deep loader LOADER PLUGIN now|lazy|plain  dlopen(PLUGIN) from the library LOADER
 *
 * now = RTLD_NOW | RTLD_DEEPBIND, lazy = RTLD_LAZY | RTLD_DEEPBIND, plain = RTLD_NOW. It then
 * checks what the plugin sees: its own helper() under RTLD_DEEPBIND (glibc's meaning of the
 * flag) and the program's without; and for malloc, in every case, the process's one malloc
 * (the preload's when preloaded): the plugin's and its dependency's &malloc, a function
 * pointer in the plugin's data, and blocks passed both ways (malloc/free, realloc, calloc,
 * posix_memalign, operator new/delete in the C++ plugin) at sizes up to 3 MiB. One line
 * per fact on stdout ("helper=2", "plugin_path=..."), a "FAIL: ..." line per failed check;
 * exit status 0 when every check passed. The program is built with
 * -Wl,-rpath,$ORIGIN/../plugins, so a bare plugin name is found next to it when it is
 * copied into a bin/ plugins/ layout. */
#include <dlfcn.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((visibility("default"))) int helper(void) { return 1; }

static int failures;

#define FAIL(...)                \
  do {                           \
    printf("FAIL: " __VA_ARGS__); \
    printf("\n");                \
    failures++;                  \
  } while (0)

static void *sym(void *h, const char *name, int required) {
  void *p = dlsym(h, name);
  if (p == NULL && required) FAIL("the plugin has no %s", name);
  return p;
}

static const char *who(void *fn) {
  Dl_info info;
  if (fn && dladdr(fn, &info) && info.dli_fname) {
    const char *s = strrchr(info.dli_fname, '/');
    return s ? s + 1 : info.dli_fname;
  }
  return "?";
}

static void same_function(const char *what, void *seen, void *want) {
  printf("%s=%s\n", what, seen == want ? "global" : who(seen));
  if (seen != want)
    FAIL("%s is %p (in %s), not the process's %p (in %s)", what, seen, who(seen), want, who(want));
}

static void fill(unsigned char *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed + i * 31);
}

static int intact(const unsigned char *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != (unsigned char)(seed + i * 31)) return 0;
  return 1;
}

typedef void *(*alloc_fn)(size_t);
typedef void (*free_fn)(void *);

static void cross(void *h) {
  alloc_fn p_malloc = (alloc_fn)sym(h, "plugin_malloc", 1);
  free_fn p_free = (free_fn)sym(h, "plugin_free", 1);
  void *(*p_realloc)(void *, size_t) = (void *(*)(void *, size_t))sym(h, "plugin_realloc", 1);
  void *(*p_calloc)(size_t, size_t) = (void *(*)(size_t, size_t))sym(h, "plugin_calloc", 1);
  void *(*p_memalign)(size_t, size_t) = (void *(*)(size_t, size_t))sym(h, "plugin_memalign", 1);
  size_t (*p_usable)(void *) = (size_t (*)(void *))sym(h, "plugin_usable_size", 1);
  alloc_fn p_new = (alloc_fn)sym(h, "plugin_new", 1);
  free_fn p_delete = (free_fn)sym(h, "plugin_delete", 1);
  alloc_fn p_dep_malloc = (alloc_fn)sym(h, "plugin_dep_malloc", 1);
  if (failures) return;
  static const size_t sizes[] = { 1, 8, 24, 100, 500, 4000, 40000, 300000, 3u << 20 };
  void *(*volatile m)(size_t) = malloc;
  void (*volatile f)(void *) = free;
  void *(*volatile r)(void *, size_t) = realloc;
  for (unsigned round = 0; round < 20; round++) {
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
      size_t n = sizes[k] + round;
      unsigned seed = (unsigned)(round * 7 + k);
      /* the plugin allocates, the program frees */
      unsigned char *a = p_malloc(n);
      if (!a) { FAIL("plugin malloc(%zu) failed", n); return; }
      fill(a, n, seed);
      if (malloc_usable_size(a) < n) FAIL("malloc_usable_size of a %zu-byte plugin block", n);
      a = r(a, 2 * n + 8);
      if (!a || !intact(a, n, seed)) { FAIL("program realloc of a %zu-byte plugin block", n); return; }
      f(a);
      /* the program allocates, the plugin reallocs and frees */
      unsigned char *b = m(n);
      if (!b) { FAIL("malloc(%zu) failed", n); return; }
      fill(b, n, seed + 1);
      if (p_usable(b) < n) FAIL("plugin malloc_usable_size of a %zu-byte program block", n);
      b = p_realloc(b, 3 * n + 16);
      if (!b || !intact(b, n, seed + 1)) { FAIL("plugin realloc of a %zu-byte program block", n); return; }
      p_free(b);
      /* calloc, posix_memalign and new one way, free and delete the other */
      unsigned char *c = p_calloc(1, n);
      if (!c) { FAIL("plugin calloc(%zu) failed", n); return; }
      for (size_t i = 0; i < n; i++)
        if (c[i]) { FAIL("plugin calloc(%zu) not zero", n); break; }
      f(c);
      void *d = p_memalign(64, n);
      if (!d || ((uintptr_t)d & 63)) { FAIL("plugin posix_memalign(64, %zu)", n); return; }
      f(d);
      void *e = p_new(n);
      f(e);
      void *g = m(n);
      p_delete(g);
      void *dep = p_dep_malloc(n);
      if (!dep) { FAIL("dependency malloc(%zu) failed", n); return; }
      p_delete(dep);
    }
  }
  if (!failures) printf("crossing=ok\n");
}

int main(int argc, char **argv) {
  if (argc < 4 || (strcmp(argv[1], "loader") == 0 && argc < 5)) {
    fprintf(stderr, "usage: nm_host_deep check PLUGIN now|lazy|plain\n"
                    "       nm_host_deep loader LOADER PLUGIN now|lazy|plain\n");
    return 2;
  }
  int loader = strcmp(argv[1], "loader") == 0;
  const char *plugin = loader ? argv[3] : argv[2];
  const char *how = loader ? argv[4] : argv[3];
  int deep = strcmp(how, "plain") != 0;
  int flags = strcmp(how, "lazy") == 0 ? RTLD_LAZY | RTLD_DEEPBIND
              : deep                   ? RTLD_NOW | RTLD_DEEPBIND
                                       : RTLD_NOW;
  void *h;
  if (loader) {
    void *l = dlopen(argv[2], RTLD_NOW);
    if (!l) { printf("FAIL: dlopen(%s): %s\n", argv[2], dlerror()); return 1; }
    void *(*open_fn)(const char *, int) = (void *(*)(const char *, int))dlsym(l, "loader_open");
    if (!open_fn) { printf("FAIL: no loader_open in %s\n", argv[2]); return 1; }
    h = open_fn(plugin, flags);
  } else {
    h = dlopen(plugin, flags);
  }
  if (!h) {
    printf("FAIL: dlopen(%s, %s): %s\n", plugin, how, dlerror());
    return 1;
  }
  int (*p_helper)(void) = (int (*)(void))sym(h, "plugin_helper", 1);
  if (!p_helper) return 1;
  printf("plugin_path=%s\n", who((void *)p_helper));
  Dl_info info;
  if (dladdr((void *)p_helper, &info) && info.dli_fname) printf("plugin_file=%s\n", info.dli_fname);
  int got = p_helper();
  printf("helper=%d\n", got);
  if (got != (deep ? 2 : 1))
    FAIL("the plugin's helper() returned %d: %s", got,
         deep ? "RTLD_DEEPBIND did not bind the plugin to its own helper"
              : "without RTLD_DEEPBIND the program's helper comes first");

  void *(*addr)(void);
  static const char *const names[][2] = {
    { "plugin_malloc_address", "malloc" }, { "plugin_free_address", "free" },
    { "plugin_data_malloc_address", "malloc" }, { "plugin_data_free_address", "free" },
    { "plugin_dep_malloc_address", "malloc" },
  };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    addr = (void *(*)(void))sym(h, names[i][0], 1);
    if (addr) same_function(names[i][0] + 7, addr(), dlsym(RTLD_DEFAULT, names[i][1]));
  }
  cross(h);
  size_t (*containers)(size_t) = (size_t (*)(size_t))sym(h, "plugin_containers", 0);
  if (containers) printf("containers=%zu\n", containers(1000));
  return failures ? 1 : 0;
}
