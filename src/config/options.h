/* The NEBULA_MEM_CONFIG options, one row per key in the order docs/configuration.md lists
 * them. From this table config.h declares nm_config_t's fields, and config.c makes the
 * defaults (nm_config_defaults), the parser's key table and nm_config_keys(). A unit test
 * holds docs/configuration.md to nm_config_keys() both ways (a section, a row of its key
 * table, a place in its contents, in this order). A new boolean or size option is one OPT
 * row here and its section in the docs.
 *
 *   OPT(key, KIND, type, field, default, KIND's arguments)   a key and the field it sets
 *   KEY(key, KIND, field, KIND's arguments)                  a key that sets (part of) a
 *                                                            field declared in config.h
 *   KIND    arguments     the value
 *   BOOL                  1|0|on|off|true|false|yes|no, into a bool
 *   SIZE    min, max      a size (K, M, G, T suffixes) from min to max, into a size_t
 *   POW2    min, max      the same, and a power of two
 *   MS      min, max      milliseconds (ms or s suffix) from min to max, into an unsigned
 *   PATH                  a path shorter than NM_CONFIG_PATH_MAX; "stderr" is stored as ""
 *   ENUM    names, apply  one of names (NULL-terminated, in config.c); apply(cfg, index)
 *                         stores it, or, apply being NULL, the index is stored (an enum
 *                         whose values are in the order of names)
 *   ROUTE                 route= ranges (config_route.c)
 *
 * default is the field's value before any key is read. NM_BY_STRATEGY and NM_BY_PRESET mark
 * the fields strategy= and preset= set: the default strategy and preset give their values
 * (config.c's tables), as they do to route='s fields. The other fields declared in config.h
 * (the budgets, stats_asked) start at 0. */
#ifndef NM_CONFIG_OPTIONS_H
#define NM_CONFIG_OPTIONS_H

#define NM_BY_STRATEGY 0
#define NM_BY_PRESET 0

#define NM_CONFIG_OPTIONS(OPT, KEY)                                                                  \
  /* strategy=: the route and its tunings, in one word */                                            \
  OPT(strategy, ENUM, nm_strategy_t, strategy, NM_STRATEGY_BALANCED, strategy_names, apply_strategy) \
  /* preset=: the checks (development: the debugging aids) */                                        \
  OPT(preset, ENUM, nm_preset_t, preset, NM_PRESET_PRODUCTION, preset_names, apply_preset)           \
  /* route=: range_count and ranges (declared in config.h) */                                        \
  KEY(route, ROUTE, ranges)                                                                          \
  /* size classes per doubling: 4 or 8 */                                                            \
  OPT(classes, ENUM, unsigned, classes_per_doubling, NM_BY_STRATEGY, classes_names, apply_classes)   \
  /* freed bytes a heap keeps resident */                                                            \
  OPT(purge_threshold, SIZE, size_t, purge_threshold, NM_BY_STRATEGY, 0, SIZE_MAX)                   \
  /* how long freed pages stay resident */                                                           \
  OPT(purge_delay, MS, unsigned, purge_delay_ms, NM_BY_STRATEGY, 0, NM_CONFIG_PURGE_DELAY_MAX_MS)    \
  /* bytes of one bump region */                                                                     \
  OPT(bump_region, POW2, size_t, bump_region, NM_CONFIG_BUMP_REGION_DEFAULT,                         \
      NM_CONFIG_BUMP_REGION_MIN, NM_CONFIG_BUMP_REGION_MAX)                                          \
  /* fill freed blocks with 0xDF */                                                                  \
  OPT(junk, BOOL, bool, junk, NM_BY_PRESET)                                                          \
  /* fill new blocks with 0xA5 (not calloc's) */                                                     \
  OPT(fill, BOOL, bool, fill, NM_BY_PRESET)                                                          \
  /* any config problem is fatal */                                                                  \
  OPT(strict, BOOL, bool, strict, false)                                                             \
  /* bytes in use, 0 = none: the process's, then per backend (budget[] in config.h) */               \
  KEY(budget, SIZE, budget[NM_BUDGET_TOTAL], 0, SIZE_MAX)                                            \
  KEY(pool_budget, SIZE, budget[NM_BACKEND_POOL], 0, SIZE_MAX)                                       \
  KEY(bump_budget, SIZE, budget[NM_BACKEND_BUMP], 0, SIZE_MAX)                                       \
  KEY(system_budget, SIZE, budget[NM_BACKEND_SYSTEM], 0, SIZE_MAX)                                   \
  /* what a failed request does after its report */                                                  \
  OPT(oom, ENUM, nm_oom_t, oom, NM_OOM_NULL, oom_names, NULL)                                        \
  /* what a detected heap misuse does */                                                             \
  OPT(misuse, ENUM, nm_misuse_t, misuse, NM_MISUSE_ABORT, misuse_names, NULL)                        \
  /* guard bytes, double/invalid-free checks */                                                      \
  OPT(canary, BOOL, bool, canary, NM_BY_PRESET)                                                      \
  /* what a guarded block records of where it was allocated */                                       \
  OPT(alloc_backtrace, ENUM, nm_alloc_backtrace_t, alloc_backtrace, NM_BY_PRESET,                    \
      alloc_backtrace_names, apply_alloc_backtrace)                                                  \
  /* when statistics are dumped */                                                                   \
  OPT(stats, ENUM, nm_stats_when_t, stats, NM_BY_PRESET, stats_names, apply_stats)                   \
  /* the signal that dumps them */                                                                   \
  OPT(stats_signal, ENUM, nm_stats_signal_t, stats_signal, NM_STATS_SIGUSR1, stats_signal_names,     \
      apply_stats_signal)                                                                            \
  /* their format */                                                                                 \
  OPT(stats_format, ENUM, nm_stats_format_t, stats_format, NM_STATS_TEXT, stats_format_names,        \
      apply_stats_format)                                                                            \
  /* where they go (%p: the pid); "" = stderr */                                                     \
  OPT(stats_file, PATH, nm_config_path_t, stats_file, "")

#endif
