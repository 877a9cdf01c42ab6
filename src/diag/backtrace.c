#include "diag/backtrace.h"

#include <dlfcn.h>
#include <execinfo.h>
#include <link.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

#define UNW_LOCAL_ONLY
#include <libunwind.h>

static __thread bool nm_unwinding;

/* When we are a shared object (the preload), the leading frames inside it are ours, however
 * the compiler inlined them: they are left out. Linked into a program, `skip` decides. Our
 * text range is found once (dladdr on every frame would cost more than the unwinding). */
static uintptr_t nm_self_lo = 1, nm_self_hi;

static int nm_find_self(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  uintptr_t self = (uintptr_t)arg;
  uintptr_t lo = UINTPTR_MAX, hi = 0;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD) continue;
    uintptr_t a = info->dlpi_addr + ph->p_vaddr;
    if (a < lo) lo = a;
    if (a + ph->p_memsz > hi) hi = a + ph->p_memsz;
  }
  if (self < lo || self >= hi) return 0;
  nm_self_lo = lo;
  nm_self_hi = hi;
  return 1;
}

static bool nm_ours(uintptr_t ip) {
  if (nm_self_lo == 1) {
    nm_self_lo = 0;
    Dl_info self, prog;
    bool separate = dladdr((void *)nm_ours, &self) && dladdr((void *)getauxval(AT_PHDR), &prog) &&
                    self.dli_fbase != prog.dli_fbase;
    if (separate) dl_iterate_phdr(nm_find_self, (void *)(uintptr_t)nm_ours);
  }
  return ip > nm_self_lo && ip - 1 < nm_self_hi;
}

int nm_backtrace_capture(void **ips, int max, int skip) {
  if (nm_unwinding) return 0;
  nm_unwinding = true;
  void *all[NM_BACKTRACE_MAX + 16];
  int want = max + skip + 1;   /* +1: this function */
  if (want > (int)(sizeof all / sizeof all[0])) want = (int)(sizeof all / sizeof all[0]);
  /* glibc's backtrace (libgcc's unwinder, which finds unwind tables with _dl_find_object:
   * no lock, no per-thread set-up). libunwind's unw_backtrace keeps a per-thread cache that
   * it maps and unmaps for every thread: 100,000 short-lived threads took 90 s. */
  int n = backtrace(all, want);
  nm_unwinding = false;
  int i = skip + 1, out = 0;
  while (i < n && nm_ours((uintptr_t)all[i])) i++;
  for (; i < n && out < max; i++) ips[out++] = all[i];
  return out;
}

static char nm_exe[512];
static char nm_cwd[512];

/* The module's path as a symbolizer needs it, absolute: the main program's dli_fname may be
 * "" or argv[0], and a library preloaded by a relative path keeps that path. */
static const char *nm_module_path(const char *fname, nm_buf_t *scratch) {
  if (fname != NULL && fname[0] == '/') return fname;
  if (nm_exe[0] == '\0') {
    ssize_t n = readlink("/proc/self/exe", nm_exe, sizeof nm_exe - 1);
    nm_exe[n > 0 ? n : 0] = '\0';
  }
  if (fname == NULL || fname[0] == '\0') return nm_exe[0] ? nm_exe : "?";
  const char *base = strrchr(fname, '/'), *exe_base = strrchr(nm_exe, '/');
  base = base ? base + 1 : fname;
  if (exe_base != NULL && strcmp(base, exe_base + 1) == 0) return nm_exe;
  if (nm_cwd[0] == '\0' && getcwd(nm_cwd, sizeof nm_cwd) == NULL) nm_cwd[0] = '\0';
  if (nm_cwd[0] == '\0') return fname;
  nm_buf_str(scratch, nm_cwd);
  nm_buf_char(scratch, '/');
  nm_buf_str(scratch, fname[0] == '.' && fname[1] == '/' ? fname + 2 : fname);
  nm_buf_char(scratch, '\0');
  scratch->data[scratch->cap - 1] = '\0';
  return scratch->data;
}

/* `#N 0xADDR name+0xOFF (module+0xOFF)`; name may be NULL. */
static void nm_frame_line(nm_buf_t *b, int index, uintptr_t ip, const char *name, uintptr_t off) {
  nm_buf_str(b, "    #");
  nm_buf_u64(b, (uint64_t)index);
  nm_buf_char(b, ' ');
  nm_buf_hex_width(b, ip, 16);
  nm_buf_char(b, ' ');
  if (name != NULL && name[0] != '\0') {
    nm_buf_str(b, name);
    nm_buf_char(b, '+');
    nm_buf_hex(b, off);
  } else {
    nm_buf_str(b, "??");
  }
  Dl_info info;
  /* ip - 1: a return address may be one past the end of its function */
  if (dladdr((void *)(ip - 1), &info) != 0 && info.dli_fname != NULL) {
    nm_buf_str(b, " (");
    char path[600];
    nm_buf_t scratch = NM_BUF(path);
    nm_buf_str(b, nm_module_path(info.dli_fname, &scratch));
    nm_buf_char(b, '+');
    nm_buf_hex(b, ip - (uintptr_t)info.dli_fbase);
    nm_buf_char(b, ')');
  }
  nm_buf_char(b, '\n');
}

void nm_backtrace_format(nm_buf_t *b, void *const *ips, int n) {
  for (int i = 0; i < n; i++) {
    uintptr_t ip = (uintptr_t)ips[i];
    Dl_info info;
    const char *name = NULL;
    uintptr_t off = 0;
    if (dladdr((void *)(ip - 1), &info) != 0 && info.dli_sname != NULL) {
      name = info.dli_sname;
      off = ip - (uintptr_t)info.dli_saddr;
    }
    nm_frame_line(b, i, ip, name, off);
  }
}

/* libunwind, opened by the first report that needs it, RTLD_LOCAL. Linked at start-up, its
 * _Unwind_* definitions came before libgcc_s's in the global scope, so libgcc_s's own calls
 * (thread cancellation, C++ exceptions) reached libunwind: a thread cancelled in fputs died
 * holding stderr's lock. Opened locally, nothing else can bind to it. */
#define NM_STR_(x) #x
#define NM_STR(x) NM_STR_(x)
static struct {
  int (*getcontext)(unw_context_t *);
  int (*init_local)(unw_cursor_t *, unw_context_t *);
  int (*step)(unw_cursor_t *);
  int (*get_reg)(unw_cursor_t *, unw_regnum_t, unw_word_t *);
  int (*get_proc_name)(unw_cursor_t *, char *, size_t, unw_word_t *);
} nm_unw;
static pthread_once_t nm_unw_once = PTHREAD_ONCE_INIT;
static bool nm_unw_ready;

static void nm_unw_open(void) {
  void *lib = dlopen("libunwind.so.8", RTLD_LAZY | RTLD_LOCAL);
  if (lib == NULL) lib = dlopen("libunwind.so", RTLD_LAZY | RTLD_LOCAL);
  if (lib == NULL) return;
  /* The header's names are macros for per-architecture symbols (_ULx86_64_step, ...). */
  *(void **)&nm_unw.getcontext = dlsym(lib, NM_STR(unw_tdep_getcontext));
  *(void **)&nm_unw.init_local = dlsym(lib, NM_STR(unw_init_local));
  *(void **)&nm_unw.step = dlsym(lib, NM_STR(unw_step));
  *(void **)&nm_unw.get_reg = dlsym(lib, NM_STR(unw_get_reg));
  *(void **)&nm_unw.get_proc_name = dlsym(lib, NM_STR(unw_get_proc_name));
  nm_unw_ready = nm_unw.getcontext && nm_unw.init_local && nm_unw.step && nm_unw.get_reg &&
                 nm_unw.get_proc_name;
}

/* Without libunwind (not installed, or no memory to open it): glibc's backtrace and the
 * dynamic symbol table. */
static void nm_backtrace_write_plain(nm_buf_t *b, int skip) {
  void *ips[NM_BACKTRACE_MAX];
  nm_unwinding = false;
  int n = nm_backtrace_capture(ips, NM_BACKTRACE_MAX, skip + 1);
  if (n == 0) nm_buf_str(b, "    (no backtrace: no frame could be unwound)\n");
  else nm_backtrace_format(b, ips, n);
}

void nm_backtrace_write_here(nm_buf_t *b, int skip) {
  if (nm_unwinding) {
    nm_buf_str(b, "    (no backtrace: the unwinder itself needed memory)\n");
    return;
  }
  nm_unwinding = true;   /* also over the dlopen: its allocations must not report again */
  pthread_once(&nm_unw_once, nm_unw_open);
  if (!nm_unw_ready) {
    nm_backtrace_write_plain(b, skip);
    return;
  }
  unw_context_t ctx;
  unw_cursor_t cur;
  int frames = 0;
  if (nm_unw.getcontext(&ctx) != 0 || nm_unw.init_local(&cur, &ctx) != 0) {
    nm_buf_str(b, "    (no backtrace: libunwind could not start)\n");
    nm_unwinding = false;
    return;
  }
  int index = 0;
  while (frames < NM_BACKTRACE_MAX + skip && nm_unw.step(&cur) > 0) {
    frames++;
    if (frames <= skip) continue;
    unw_word_t ip = 0, off = 0;
    nm_unw.get_reg(&cur, UNW_REG_IP, &ip);
    if (index == 0 && nm_ours((uintptr_t)ip)) continue;
    char name[256];
    const char *sym = nm_unw.get_proc_name(&cur, name, sizeof name, &off) == 0 ? name : NULL;
    Dl_info info;
    if (sym == NULL && dladdr((void *)(ip - 1), &info) != 0 && info.dli_sname != NULL) {
      sym = info.dli_sname;   /* libunwind could not map the file (no address space left) */
      off = ip - (uintptr_t)info.dli_saddr;
    }
    nm_frame_line(b, index++, (uintptr_t)ip, sym, (uintptr_t)off);
  }
  if (index == 0) nm_buf_str(b, "    (no backtrace: no frame could be unwound)\n");
  nm_unwinding = false;
}
