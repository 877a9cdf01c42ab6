/* NEBULA_MEM_CONFIG: `key=value,key=value`, parsed once at start-up without allocating.
 * The same grammar is used by the library API (nebula_config_parse). Later keys override
 * earlier ones and presets; every problem is reported, not only the first. */
#ifndef NM_CONFIG_H
#define NM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/options.h"

typedef enum nm_strategy_e {
  NM_STRATEGY_BALANCED = 0,    /* default: pool for small, large pages, system above */
  NM_STRATEGY_THROUGHPUT,      /* bump for medium sizes: request- and batch-shaped programs */
  NM_STRATEGY_COMPACT,         /* lowest RSS: eager purge, tighter classes */
  NM_STRATEGY_SYSTEM,          /* everything to the next allocator; nebula only observes */
} nm_strategy_t;

typedef enum nm_preset_e {
  NM_PRESET_PRODUCTION = 0,    /* default: checks that cost almost nothing */
  NM_PRESET_DEVELOPMENT,       /* junk/fill, canaries, double/invalid-free detection, stats */
} nm_preset_t;

/* The backends: one enum for the route, the router, the statistics and the reports. A
 * route= range names pool, bump or system; large is where the router puts pool requests
 * above the size classes (a page each). */
typedef enum nm_backend_e {
  NM_BACKEND_POOL = 0,     /* size classes */
  NM_BACKEND_LARGE,        /* pool slices, one block per page */
  NM_BACKEND_BUMP,         /* per-thread bump regions */
  NM_BACKEND_SYSTEM,       /* the next allocator */
  NM_BACKEND_COUNT
} nm_backend_t;

/* "pool", "large", "bump", "system", NULL: indexed by nm_backend_t. */
extern const char *const nm_backend_names[NM_BACKEND_COUNT + 1];

/* oom=: what a failed request does after its report. */
typedef enum nm_oom_e {
  NM_OOM_NULL = 0,             /* default: NULL with errno ENOMEM, as malloc must */
  NM_OOM_ABORT,                /* abort(), so a core dump is taken */
  NM_OOM_FALLBACK,             /* a failed pool/bump request is tried on the system backend */
} nm_oom_t;

/* misuse=: what a detected heap misuse (double free, bad pointer, overwrite) does. */
typedef enum nm_misuse_e {
  NM_MISUSE_ABORT = 0,         /* default: report, then abort() */
  NM_MISUSE_REPORT,            /* report and continue (the bad call does nothing) */
} nm_misuse_t;

/* stats=, stats_signal=, stats_format=. */
/* stats=terminal: at exit, but to stderr only when it is a terminal (or to stats_file):
 * test suites that check a child's stderr must not see a dump they did not ask for. */
typedef enum nm_stats_when_e { NM_STATS_OFF = 0, NM_STATS_EXIT, NM_STATS_TERMINAL } nm_stats_when_t;
typedef enum nm_stats_signal_e { NM_STATS_SIGUSR1 = 0, NM_STATS_SIGUSR2, NM_STATS_NOSIGNAL } nm_stats_signal_t;
typedef enum nm_stats_format_e { NM_STATS_TEXT = 0, NM_STATS_JSON, NM_STATS_PROMETHEUS } nm_stats_format_t;
#define NM_CONFIG_PATH_MAX 256

/* Budgets (budget=, pool_budget=, bump_budget=, system_budget=): a slot per backend, indexed
 * by nm_backend_t, and the process total after them. Large blocks are pool slices and are
 * charged to the pool's slot, so large's stays empty (no key sets it). */
enum { NM_BUDGET_TOTAL = NM_BACKEND_COUNT, NM_BUDGET_SLOTS };

#define NM_CONFIG_MAX_RANGES 8

/* Limits the parser enforces (docs/configuration.md). */
#define NM_CONFIG_PURGE_DELAY_MAX_MS  3600000u                 /* purge_delay: one hour */
#define NM_CONFIG_BUMP_REGION_MIN     ((size_t)64 << 10)       /* bump_region: a power of two */
#define NM_CONFIG_BUMP_REGION_MAX     ((size_t)2 << 20)        /* a region fits a segment */
#define NM_CONFIG_BUMP_REGION_DEFAULT ((size_t)1 << 20)

/* One range of request sizes [lo, hi] (hi = SIZE_MAX for "and above") and its backend. */
typedef struct nm_route_range_s {
  size_t lo, hi;
  nm_backend_t backend;   /* never NM_BACKEND_LARGE */
} nm_route_range_t;

/* alloc_backtrace=: what a guarded block records of where it was allocated. */
typedef enum nm_alloc_backtrace_e {
  NM_ALLOC_BACKTRACE_OFF = 0,
  NM_ALLOC_BACKTRACE_SAMPLE,   /* the call site always, a whole backtrace for 1 block in ~64 */
  NM_ALLOC_BACKTRACE_FULL,     /* a whole backtrace for every block */
} nm_alloc_backtrace_t;

/* stats_file=: a path, "" for stderr. */
typedef char nm_config_path_t[NM_CONFIG_PATH_MAX];

/* The options: a field per OPT row of config/options.h (its type, name and what it holds
 * are there), then the fields that no single key owns. */
typedef struct nm_config_s {
#define NM_CONFIG_FIELD(key, KIND, type, field, ...) type field;
#define NM_CONFIG_NO_FIELD(...)
  NM_CONFIG_OPTIONS(NM_CONFIG_FIELD, NM_CONFIG_NO_FIELD)
#undef NM_CONFIG_FIELD
#undef NM_CONFIG_NO_FIELD
  /* route= (and every strategy): ranges cover 0..SIZE_MAX in order, without gap or overlap. */
  unsigned range_count;
  nm_route_range_t ranges[NM_CONFIG_MAX_RANGES];
  size_t budget[NM_BUDGET_SLOTS];  /* budget=, pool_budget=, ...: bytes in use; 0 = none */
  /* One of stats=, stats_signal=, stats_format=, stats_file= was given (with a valid value;
   * a preset does not count): only then does the preload install the stats_signal handler
   * (docs/statistics.md, "The signal"). No key of its own. */
  bool stats_asked;
} nm_config_t;

/* One problem found while parsing, as text for one stderr line. */
typedef struct nm_config_problem_s {
  char key[32];                    /* the key as written (truncated), "" for syntax errors */
  char message[192];               /* e.g. "unknown key 'bugdet' (did you mean 'budget'?)" */
} nm_config_problem_t;

/* The defaults (strategy=balanced, preset=production). */
void nm_config_defaults(nm_config_t *cfg);
/* Parse text (NULL or "" = nothing to change) on top of *cfg. A key with a bad value keeps
 * its previous value. Writes up to max_problems problems and returns how many were found
 * (possibly more than max_problems). Never allocates; safe before malloc works. */
size_t nm_config_parse(const char *text, nm_config_t *cfg, nm_config_problem_t *problems,
                       size_t max_problems);
/* The names of every key the parser knows, NULL-terminated (for docs and tests). */
const char *const *nm_config_keys(void);

#endif
