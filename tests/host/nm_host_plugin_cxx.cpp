// The C++ plugin of the deepbind suite: the same interface as nm_host_plugin.c, with
// plugin_new / plugin_delete being operator new and delete. nm_host_deep is a C program,
// so libstdc++ is loaded as this plugin's dependency, inside its RTLD_DEEPBIND scope: its
// operator new and delete must still reach the preload's malloc and free.
#include <malloc.h>
#include <stdlib.h>

#include <new>
#include <string>
#include <vector>

#define NM_EXPORT extern "C" __attribute__((visibility("default")))

NM_EXPORT int helper(void) { return 2; }
NM_EXPORT int plugin_helper(void) { return helper(); }

extern "C" void *dep_malloc_address(void);
extern "C" void *dep_malloc(size_t n);
NM_EXPORT void *plugin_dep_malloc_address(void) { return dep_malloc_address(); }
NM_EXPORT void *plugin_dep_malloc(size_t n) { return dep_malloc(n); }

static void *(*volatile data_malloc)(size_t) = malloc;
static void (*volatile data_free)(void *) = free;

NM_EXPORT void *plugin_malloc_address(void) { return (void *)&malloc; }
NM_EXPORT void *plugin_free_address(void) { return (void *)&free; }
NM_EXPORT void *plugin_data_malloc_address(void) { return (void *)data_malloc; }
NM_EXPORT void *plugin_data_free_address(void) { return (void *)data_free; }

NM_EXPORT void *plugin_malloc(size_t n) { return malloc(n); }
NM_EXPORT void *plugin_calloc(size_t k, size_t n) { return calloc(k, n); }
NM_EXPORT void *plugin_realloc(void *p, size_t n) { return realloc(p, n); }
NM_EXPORT void plugin_free(void *p) { free(p); }
NM_EXPORT size_t plugin_usable_size(void *p) { return malloc_usable_size(p); }
NM_EXPORT void *plugin_memalign(size_t a, size_t n) {
  void *p = NULL;
  return posix_memalign(&p, a, n) == 0 ? p : NULL;
}

// operator new and delete live in libstdc++, which calls malloc and free.
NM_EXPORT void *plugin_new(size_t n) { return ::operator new(n); }
NM_EXPORT void plugin_delete(void *p) { ::operator delete(p); }

// Containers and strings, so that libstdc++'s own allocations run too.
NM_EXPORT size_t plugin_containers(size_t n) {
  std::vector<std::string> v;
  for (size_t i = 0; i < n; i++) v.push_back(std::string(i % 100 + 20, 'x'));
  size_t total = 0;
  for (const auto &s : v) total += s.size();
  return total;
}
