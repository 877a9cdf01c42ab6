/* Shared macros of the public headers. */
#ifndef NEBULA_API_H
#define NEBULA_API_H

#include <stdbool.h>
#include <stddef.h>

/* Exported from the shared library (the project builds with -fvisibility=hidden). */
#if defined(NEBULA_BUILDING_LIBRARY) && defined(__GNUC__)
#define NEBULA_API __attribute__((visibility("default")))
#else
#define NEBULA_API
#endif

/* Results that must not be dropped: an allocation, an error code. */
#if defined(__GNUC__)
#define NEBULA_NODISCARD __attribute__((warn_unused_result))
#define NEBULA_MALLOC_LIKE __attribute__((malloc))
#else
#define NEBULA_NODISCARD
#define NEBULA_MALLOC_LIKE
#endif

#ifdef __cplusplus
#define NEBULA_BEGIN_DECLS extern "C" {
#define NEBULA_END_DECLS }
#else
#define NEBULA_BEGIN_DECLS
#define NEBULA_END_DECLS
#endif

#endif
