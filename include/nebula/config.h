/* Configuration: one struct for the allocators of the library and, with the same string
 * grammar as NEBULA_MEM_CONFIG (`key=value,key=value`, docs/configuration.md), the keys
 * the preload reads. Start from a preset, parse strings on top, validate.
 *
 * Library keys (docs/library.md): name=TEXT, capacity=SIZE, grow=BOOL, thread_safe=BOOL,
 * block_size=SIZE, block_count=N, alignment=N, budget=SIZE, poison=BOOL, backtrace=BOOL.
 * Every NEBULA_MEM_CONFIG key (strategy=, route=, junk=, ...) is accepted and checked by
 * the preload's own parser, so a string valid for one is valid for the other.
 * Thread-safety: functions touch only the structs they are given. */
#ifndef NEBULA_CONFIG_H
#define NEBULA_CONFIG_H

#include <nebula/api.h>
#include <nebula/error.h>

NEBULA_BEGIN_DECLS

typedef enum nebula_preset {
  NEBULA_PRESET_PRODUCTION = 0,   /* fast: no poisoning, no backtraces */
  NEBULA_PRESET_DEVELOPMENT,      /* poison freed memory, backtraces in errors, checks */
} nebula_preset_t;

typedef struct nebula_config {
  nebula_preset_t preset;
  char name[32];          /* the allocator's name in errors ("" = its kind: "bump", ...) */
  size_t capacity;        /* bump/stack: bytes of the first chunk; pool: unused */
  bool grow;              /* bump/pool: take more chunks when full */
  bool thread_safe;       /* bump: the thread-safe variant (pool is always thread-safe) */
  size_t block_size;      /* pool: bytes per block */
  size_t block_count;     /* pool: blocks in the first chunk */
  size_t alignment;       /* pool: block alignment; bump/stack: default alignment */
  size_t budget;          /* bytes the allocator may take (0 = no budget) */
  bool poison;            /* mark freed/unused memory for ASan/valgrind and fill it with 0xDF */
  bool backtrace;         /* errors carry a backtrace */
  char preload[512];      /* the NEBULA_MEM_CONFIG keys seen, as written (for the preload) */
} nebula_config_t;

/* Fills cfg with a preset's values. */
NEBULA_API void nebula_config_production(nebula_config_t *cfg);
NEBULA_API void nebula_config_development(nebula_config_t *cfg);

/* One bad field or key: its name and why. */
typedef struct nebula_config_problem {
  char field[32];
  char message[192];
} nebula_config_problem_t;

/* Parses text on top of cfg (`preset=` applies the preset first, where it appears). A bad
 * key or value keeps the field's previous value. Writes up to max problems and returns
 * how many were found; 0 means the text was valid. On problems, records NEBULA_ERR_CONFIG
 * naming the first. */
NEBULA_API size_t nebula_config_parse(const char *text, nebula_config_t *cfg,
                                      nebula_config_problem_t *problems, size_t max);
/* Checks every field (a struct filled by hand may hold anything); same contract. */
NEBULA_API size_t nebula_config_validate(const nebula_config_t *cfg, nebula_config_problem_t *problems,
                                         size_t max);

NEBULA_END_DECLS

#endif
