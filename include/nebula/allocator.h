/* The common allocator interface: code written against nebula_allocator_t works with the
 * bump, pool and stack allocators, the system allocator and any allocator of the caller's.
 *
 * An allocator object starts with a nebula_allocator_t (its `base`): the concrete types
 * give theirs with nebula_bump_allocator(), nebula_pool_allocator(), ... Failures return
 * NULL (or false) and record a nebula_error_t (nebula/error.h). */
#ifndef NEBULA_ALLOCATOR_H
#define NEBULA_ALLOCATOR_H

#include <nebula/api.h>
#include <nebula/error.h>

NEBULA_BEGIN_DECLS

typedef struct nebula_allocator nebula_allocator_t;

typedef struct nebula_allocator_ops {
  /* size bytes aligned to align (a power of two; 0 means the default, 16). NULL on failure,
   * with the error recorded. size 0 yields a unique pointer that may be freed. */
  void *(*allocate)(nebula_allocator_t *a, size_t size, size_t align);
  /* Returns p (NULL: no-op). Returns false, recording the error, for a pointer it does not
   * own or an order it does not allow; the memory is then left untouched. */
  bool (*deallocate)(nebula_allocator_t *a, void *p);
  /* Resizes p to size bytes, keeping min(old, size) bytes; p NULL allocates. On failure
   * returns NULL and p is unchanged. NULL here: allocate, copy, deallocate is used. */
  void *(*reallocate)(nebula_allocator_t *a, void *p, size_t size, size_t align);
  /* Bytes usable at p (>= the size asked); 0 for a pointer it does not own. */
  size_t (*usable_size)(nebula_allocator_t *a, const void *p);
  void (*state)(nebula_allocator_t *a, nebula_allocator_state_t *out);
  /* Frees everything the allocator holds, and the allocator itself (NULL: nothing to do). */
  void (*destroy)(nebula_allocator_t *a);
} nebula_allocator_ops_t;

struct nebula_allocator {
  const nebula_allocator_ops_t *ops;
  const char *name;   /* e.g. "bump", or the name given at creation */
};

/* Dispatch through a->ops. Thread-safety is the allocator's (documented per type). */
NEBULA_API NEBULA_NODISCARD void *nebula_allocate(nebula_allocator_t *a, size_t size, size_t align);
NEBULA_API bool nebula_deallocate(nebula_allocator_t *a, void *p);
NEBULA_API NEBULA_NODISCARD void *nebula_reallocate(nebula_allocator_t *a, void *p, size_t size, size_t align);
NEBULA_API size_t nebula_usable_size(nebula_allocator_t *a, const void *p);
NEBULA_API const char *nebula_allocator_name(const nebula_allocator_t *a);
NEBULA_API void nebula_allocator_state(nebula_allocator_t *a, nebula_allocator_state_t *out);
NEBULA_API void nebula_allocator_destroy(nebula_allocator_t *a);
/* count * size bytes, or NULL with NEBULA_ERR_OVERFLOW. */
NEBULA_API NEBULA_NODISCARD void *nebula_allocate_array(nebula_allocator_t *a, size_t count, size_t size, size_t align);

/* The process's malloc (whatever it is: glibc, or nebula under the preload) behind the
 * interface. A static object: thread-safe; destroy does nothing; deallocate cannot tell a
 * foreign pointer (it frees whatever it is given, as free does). */
NEBULA_API nebula_allocator_t *nebula_system_allocator(void);

NEBULA_END_DECLS

#endif
