/* Typed helpers over the common interface, and scopes that free at scope exit.
 *
 *   point_t *p = NEBULA_NEW(a, point_t);                      uninitialised, like malloc
 *   point_t *q = NEBULA_NEW_INIT(a, point_t, (point_t){1, 2}); a copy of the value
 *   double *v = NEBULA_NEW_ARRAY(a, double, n);               n * sizeof(double), checked
 *   NEBULA_DELETE(a, p);                                      frees, sets p to NULL
 *
 *   NEBULA_SCOPED(a, char, buf, NEBULA_NEW_ARRAY(a, char, 256));   freed when buf's scope ends
 *   NEBULA_MEMORY_SCOPE(bump) { ... }      everything allocated from bump inside is freed
 *
 * The scopes use the cleanup attribute (GCC and Clang): they run on every way out of the
 * scope (end, break, continue, return, goto), but not on longjmp or exit.
 * Thread-safety: that of the allocator used. */
#ifndef NEBULA_TYPED_H
#define NEBULA_TYPED_H

#include <string.h>

#include <nebula/allocator.h>
#include <nebula/api.h>
#include <nebula/bump.h>
#include <nebula/stack.h>

NEBULA_BEGIN_DECLS

/* One T from a, uninitialised (like malloc), aligned to _Alignof(T); NULL on failure with
 * the allocator's error recorded. */
#define NEBULA_NEW(a, T) ((T *)nebula_allocate((a), sizeof(T), _Alignof(T)))

/* One T from a, set to value: an expression of type T (a compound literal's commas need no
 * parentheses: the rest of the arguments are the value). The value is evaluated first, once,
 * even when the allocation fails. NULL on failure. */
#define NEBULA_NEW_INIT(a, T, ...) \
  ((T *)nebula_new_copy((a), sizeof(T), _Alignof(T), (const T[1]){ __VA_ARGS__ }))

/* n T from a, uninitialised; NULL with NEBULA_ERR_OVERFLOW if n * sizeof(T) overflows. */
#define NEBULA_NEW_ARRAY(a, T, n) ((T *)nebula_allocate_array((a), (n), sizeof(T), _Alignof(T)))

/* Frees p (an lvalue, evaluated twice: no side effects) to a and sets it to NULL. An
 * expression: true on success; false (p unchanged) when the allocator refuses, with its
 * error recorded (a stack freed out of order, a foreign pointer). */
#define NEBULA_DELETE(a, p) (nebula_deallocate((a), (p)) ? ((p) = NULL, 1) : 0)

/* NEBULA_NEW_INIT's helper: size bytes from a, with a copy of value. */
static inline void *nebula_new_copy(nebula_allocator_t *a, size_t size, size_t align, const void *value) {
  void *p = nebula_allocate(a, size, align);
  if (p != NULL) memcpy(p, value, size);
  return p;
}

/* ---- scoped pointers ---------------------------------------------------------------------- */

/* NEBULA_SCOPED(a, T, name, init) declares `T *name = init;` that is freed to a when name's
 * scope ends, whatever its value then is: reassign it (realloc) freely, set it to NULL to
 * keep the memory (ownership handed on), or free it early with NEBULA_DELETE. A failed
 * free at scope exit (a stack's block not on top) leaves the allocator's error recorded.
 * Declare scoped pointers to a stack in allocation order: they are freed in reverse. */
typedef struct nebula_scoped {
  nebula_allocator_t *allocator;
  void *slot;   /* the address of the pointer variable */
} nebula_scoped_t;

static inline void nebula_scoped_release(nebula_scoped_t *s) {
  void *p;
  memcpy(&p, s->slot, sizeof p);   /* the variable is a T *: read its bytes as a void * */
  if (p != NULL) nebula_deallocate(s->allocator, p);
}

#define NEBULA_SCOPED(a, T, name, init)                                                          \
  T *name = (init);                                                                              \
  __attribute__((cleanup(nebula_scoped_release), unused)) nebula_scoped_t nebula_scoped_##name = \
      { (a), (void *)&name }

/* ---- memory scopes ------------------------------------------------------------------------ */

/* NEBULA_MEMORY_SCOPE(bump) { body }: a checkpoint of bump is taken on entry and restored
 * when the body is left, however (falling off the end, break, continue, return, goto), so
 * everything allocated from the bump inside is freed. It is a one-pass loop: a break or
 * continue in the body leaves the scope, not an enclosing loop. Resetting the bump inside
 * makes the restore fail with NEBULA_ERR_ORDER (recorded, nothing changed). Scopes nest. */
typedef struct nebula_memory_scope {
  nebula_bump_t *bump;
  nebula_bump_marker_t marker;
  int pass;
} nebula_memory_scope_t;

static inline nebula_memory_scope_t nebula_memory_scope_enter(nebula_bump_t *b) {
  nebula_memory_scope_t s = { b, nebula_bump_checkpoint(b), 1 };
  return s;
}

static inline void nebula_memory_scope_leave(nebula_memory_scope_t *s) {
  nebula_bump_restore(s->bump, s->marker);
}

/* NEBULA_STACK_SCOPE(stack) { body }: the same for a stack (mark, release). */
typedef struct nebula_stack_scope {
  nebula_stack_t *stack;
  nebula_stack_marker_t marker;
  int pass;
} nebula_stack_scope_t;

static inline nebula_stack_scope_t nebula_stack_scope_enter(nebula_stack_t *s) {
  nebula_stack_scope_t sc = { s, nebula_stack_mark(s), 1 };
  return sc;
}

static inline void nebula_stack_scope_leave(nebula_stack_scope_t *sc) {
  nebula_stack_release(sc->stack, sc->marker);
}

#define NEBULA_SCOPE_CAT_(a, b) a##b
#define NEBULA_SCOPE_NAME_(line) NEBULA_SCOPE_CAT_(nebula_scope_, line)

#define NEBULA_MEMORY_SCOPE(bump)                                                                 \
  for (__attribute__((cleanup(nebula_memory_scope_leave))) nebula_memory_scope_t                  \
           NEBULA_SCOPE_NAME_(__LINE__) = nebula_memory_scope_enter(bump);                        \
       NEBULA_SCOPE_NAME_(__LINE__).pass; NEBULA_SCOPE_NAME_(__LINE__).pass = 0)

#define NEBULA_STACK_SCOPE(stack)                                                                 \
  for (__attribute__((cleanup(nebula_stack_scope_leave))) nebula_stack_scope_t                    \
           NEBULA_SCOPE_NAME_(__LINE__) = nebula_stack_scope_enter(stack);                        \
       NEBULA_SCOPE_NAME_(__LINE__).pass; NEBULA_SCOPE_NAME_(__LINE__).pass = 0)

NEBULA_END_DECLS

#endif
