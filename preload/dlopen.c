/* dlopen(RTLD_DEEPBIND): the library keeps its deep binding for everything but malloc.
 *
 * A library opened with RTLD_DEEPBIND looks symbols up in its own scope (itself and its
 * dependencies, libc among them) before the global scope where the preload sits, so its
 * malloc family would bind to libc's while the rest of the program uses ours, and pointers
 * would cross allocators (jemalloc#2419, gperftools#1148). We used to drop the flag; now
 * the flag stays (the plugin calls the helper() it bundles, not the program's) and, once the
 * real dlopen returns, every malloc-family relocation of the objects that dlopen loaded (the
 * library and its dependencies that were not loaded yet) that refers to a symbol the object
 * does not define (R_X86_64_JUMP_SLOT, R_X86_64_GLOB_DAT,
 * R_X86_64_64, or the aarch64 equivalents) is rewritten to the process's definition: the
 * one the global scope gives, the preload's (or whatever was preloaded before it). A lazy
 * JUMP_SLOT is written before its first call, so glibc never resolves it in the deep scope.
 *
 * The caller. glibc's dlopen uses its return address to find the calling object: its
 * DT_RPATH / DT_RUNPATH for a bare name, its directory for $ORIGIN, its namespace. Without
 * RTLD_DEEPBIND the wrapper still ends in a sibling call, so glibc sees the program's
 * return address. With it the wrapper must run after dlopen, so it resolves the name as
 * glibc would for the caller and hands glibc a path:
 *   - a path with '/' and "$ORIGIN" / "${ORIGIN}": the caller's origin is substituted
 *     (the directory of its file; /proc/self/exe's for the program); $LIB and $PLATFORM do
 *     not depend on the caller and are left to glibc;
 *   - a bare name: an object already loaded under that soname is taken as glibc would; else
 *     the caller's own search list (dlinfo RTLD_DI_SERINFO: its DT_RPATH chain, then
 *     LD_LIBRARY_PATH, then its DT_RUNPATH) is tried in order, each candidate opened and
 *     accepted if it is an ELF object of our class and machine; the directories the list
 *     shares with the preload's own (the system directories at its end) are left to glibc,
 *     which also consults ld.so.cache before them.
 * Not reproduced: glibc-hwcaps subdirectories of the caller's run path, and the program's
 * DT_RPATH applying to a caller that has a DT_RUNPATH (glibc skips it, the fallback
 * search does not).
 *
 * Where this cannot be done (an architecture other than x86-64 and aarch64, or $ORIGIN in a
 * secure process, where glibc's rules for it differ), the flag is dropped as before, with
 * one line on stderr, once. Known window: the library's constructors run inside dlopen,
 * before the rewrite, so their allocations come from libc's malloc; our free hands such
 * blocks back to it (entry.c: foreign pointers), but a constructor that frees one of our
 * blocks with libc's free would still fail. */
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "env_config.h"
#include "nm_types.h"
#include "os/os.h"

#define NM_EXPORT __attribute__((visibility("default")))

#if defined(__x86_64__)
#define NM_DEEPBIND_PATCH 1
#define NM_R_JUMP_SLOT R_X86_64_JUMP_SLOT
#define NM_R_GLOB_DAT R_X86_64_GLOB_DAT
#define NM_R_ABS64 R_X86_64_64
#define NM_ELF_MACHINE EM_X86_64
#elif defined(__aarch64__)
#define NM_DEEPBIND_PATCH 1
#define NM_R_JUMP_SLOT R_AARCH64_JUMP_SLOT
#define NM_R_GLOB_DAT R_AARCH64_GLOB_DAT
#define NM_R_ABS64 R_AARCH64_ABS64
#define NM_ELF_MACHINE EM_AARCH64
#else
#define NM_DEEPBIND_PATCH 0
#endif

static void *(*nm_next_dlopen)(const char *, int);
static int nm_deepbind_warned;

/* The fallback: the old behaviour, one fixed line (no user text) the first time. */
static NM_COLD int nm_dlopen_strip_deepbind(int mode) {
  if (!__atomic_exchange_n(&nm_deepbind_warned, 1, __ATOMIC_RELAXED)) {
    static const char msg[] = "nebula: dlopen(RTLD_DEEPBIND): the flag is dropped here, so the "
                              "library binds to nebula's malloc (docs/compatibility.md)\n";
    nm_os_write(2, msg, sizeof msg - 1);
  }
  return mode & ~RTLD_DEEPBIND;
}

static NM_COLD void nm_dlopen_resolve(void) {
  nm_next_dlopen = (void *(*)(const char *, int))dlsym(RTLD_NEXT, "dlopen");
}

#if NM_DEEPBIND_PATCH

/* ------------------------------------------------------------------------------------------
 * The malloc family and the process's definition of each
 * ------------------------------------------------------------------------------------------ */

/* Not declared by every glibc's headers. */
void free_sized(void *p, size_t size);
void free_aligned_sized(void *p, size_t alignment, size_t size);
void cfree(void *p);

/* The addresses are resolved by ld.so through the global scope (these are preemptible
 * references from a shared object): the definitions every object without a deep binding
 * uses. */
#define NM_FAMILY(X)                                                                          \
  X(malloc) X(free) X(calloc) X(realloc) X(reallocarray) X(posix_memalign) X(aligned_alloc)  \
  X(memalign) X(valloc) X(pvalloc) X(malloc_usable_size) X(free_sized) X(free_aligned_sized) \
  X(cfree) X(malloc_trim) X(mallopt) X(mallinfo) X(mallinfo2) X(malloc_stats)

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#define NM_FAMILY_ENTRY(f) { #f, (void *)&f },
static const struct {
  const char *name;
  void *fn;
} nm_family[] = { NM_FAMILY(NM_FAMILY_ENTRY) };
#pragma GCC diagnostic pop

#define NM_FAMILY_COUNT (sizeof nm_family / sizeof nm_family[0])

static void *nm_family_target(const char *name) {
  for (size_t i = 0; i < NM_FAMILY_COUNT; i++)
    if (strcmp(name, nm_family[i].name) == 0) return nm_family[i].fn;
  return NULL;
}

/* ------------------------------------------------------------------------------------------
 * Dynamic sections
 * ------------------------------------------------------------------------------------------ */

/* _DYNAMIC (<link.h>, defined by the linker) is ours: the preload is never rewritten. */

typedef struct nm_object {
  ElfW(Addr) base;
  const ElfW(Phdr) *phdr;
  ElfW(Half) phnum;
  const ElfW(Dyn) *dyn;
  uintptr_t relro_lo, relro_hi;
  const ElfW(Sym) *symtab;
  const char *strtab;
  size_t strsz;
  const ElfW(Rela) *rela, *jmprel;
  size_t relasz, jmprelsz;
  const char *soname;
} nm_object_t;

/* glibc relocates the d_ptr values of a writable .dynamic in place, not of a read-only one
 * (the vDSO's): a value inside one of the object's segments is an address already. */
static uintptr_t nm_dyn_addr(const nm_object_t *o, ElfW(Addr) v) {
  for (ElfW(Half) i = 0; i < o->phnum; i++) {
    const ElfW(Phdr) *ph = &o->phdr[i];
    if (ph->p_type == PT_LOAD && v >= o->base + ph->p_vaddr && v < o->base + ph->p_vaddr + ph->p_memsz)
      return v;
  }
  return o->base + v;
}

static bool nm_object_read(const struct dl_phdr_info *info, nm_object_t *o) {
  memset(o, 0, sizeof *o);
  o->base = info->dlpi_addr;
  o->phdr = info->dlpi_phdr;
  o->phnum = info->dlpi_phnum;
  for (ElfW(Half) i = 0; i < o->phnum; i++) {
    const ElfW(Phdr) *ph = &o->phdr[i];
    if (ph->p_type == PT_DYNAMIC) o->dyn = (const ElfW(Dyn) *)(o->base + ph->p_vaddr);
    if (ph->p_type == PT_GNU_RELRO) {
      o->relro_lo = o->base + ph->p_vaddr;
      o->relro_hi = o->relro_lo + ph->p_memsz;
    }
  }
  if (o->dyn == NULL) return false;
  ElfW(Addr) soname = 0, pltrel = DT_RELA;
  bool has_soname = false;
  for (const ElfW(Dyn) *d = o->dyn; d->d_tag != DT_NULL; d++) {
    switch (d->d_tag) {
    case DT_SYMTAB: o->symtab = (const ElfW(Sym) *)nm_dyn_addr(o, d->d_un.d_ptr); break;
    case DT_STRTAB: o->strtab = (const char *)nm_dyn_addr(o, d->d_un.d_ptr); break;
    case DT_STRSZ: o->strsz = d->d_un.d_val; break;
    case DT_RELA: o->rela = (const ElfW(Rela) *)nm_dyn_addr(o, d->d_un.d_ptr); break;
    case DT_RELASZ: o->relasz = d->d_un.d_val; break;
    case DT_JMPREL: o->jmprel = (const ElfW(Rela) *)nm_dyn_addr(o, d->d_un.d_ptr); break;
    case DT_PLTRELSZ: o->jmprelsz = d->d_un.d_val; break;
    case DT_PLTREL: pltrel = d->d_un.d_val; break;
    case DT_SONAME: soname = d->d_un.d_val; has_soname = true; break;
    default: break;
    }
  }
  if (pltrel != DT_RELA) o->jmprel = NULL;   /* never on x86-64 or aarch64 */
  if (o->symtab == NULL || o->strtab == NULL) return false;
  if (has_soname && soname < o->strsz) o->soname = o->strtab + soname;
  return true;
}

/* ------------------------------------------------------------------------------------------
 * Rewriting one slot
 * ------------------------------------------------------------------------------------------ */

static size_t nm_page_size;
static pthread_mutex_t nm_patch_lock = PTHREAD_MUTEX_INITIALIZER;

/* Writes value to *slot of an object that has finished loading. process_vm_writev honours
 * page protections (no FOLL_FORCE): it writes a writable page and fails with EFAULT on a
 * read-only one, which for a GOT slot means PT_GNU_RELRO that glibc protected after
 * relocating the object. That page is made writable for the store and read-only again
 * (passes are serialised, so no other pass changes it meanwhile). Where process_vm_writev
 * is refused (seccomp, old kernels), the RELRO range as glibc rounds it decides. */
static void nm_slot_write(const nm_object_t *o, void **slot, void *value) {
  struct iovec local = { &value, sizeof value }, remote = { slot, sizeof value };
  ssize_t n = process_vm_writev(getpid(), &local, 1, &remote, 1, 0);
  if (n == (ssize_t)sizeof value) return;
  bool readonly_known = n < 0 && errno == EFAULT;
  /* glibc protects [start, end) of PT_GNU_RELRO rounded down to pages at both ends. */
  uintptr_t a = (uintptr_t)slot, mask = ~(uintptr_t)(nm_page_size - 1);
  bool in_relro = a >= (o->relro_lo & mask) && a + sizeof value <= (o->relro_hi & mask);
  if (!in_relro) {
    if (!readonly_known) __atomic_store_n(slot, value, __ATOMIC_RELAXED);
    return;   /* read-only outside RELRO: not a GOT we know how to restore; left alone */
  }
  void *page = (void *)(a & ~(uintptr_t)(nm_page_size - 1));
  if (mprotect(page, nm_page_size, PROT_READ | PROT_WRITE) != 0) return;
  __atomic_store_n(slot, value, __ATOMIC_RELAXED);
  mprotect(page, nm_page_size, PROT_READ);
}

static void nm_patch_relocs(const nm_object_t *o, const ElfW(Rela) *r, size_t size) {
  if (r == NULL) return;
  for (size_t i = 0; i < size / sizeof *r; i++) {
    unsigned type = (unsigned)ELF64_R_TYPE(r[i].r_info);
    size_t symi = ELF64_R_SYM(r[i].r_info);
    if ((type != NM_R_JUMP_SLOT && type != NM_R_GLOB_DAT && type != NM_R_ABS64) || symi == 0) continue;
    const ElfW(Sym) *sym = &o->symtab[symi];
    if (sym->st_shndx != SHN_UNDEF || sym->st_name >= o->strsz) continue;   /* its own */
    void *target = nm_family_target(o->strtab + sym->st_name);
    if (target == NULL) continue;
    void *value = type == NM_R_ABS64 ? (char *)target + r[i].r_addend : target;
    void **slot = (void **)(o->base + r[i].r_offset);
    if (__atomic_load_n(slot, __ATOMIC_RELAXED) != value) nm_slot_write(o, slot, value);
  }
}

/* ------------------------------------------------------------------------------------------
 * Which objects: the library and the dependencies this dlopen loaded with it
 * ------------------------------------------------------------------------------------------ */

/* dl_iterate_phdr lists the caller's (our) namespace in load order under the loader's list
 * lock; new objects are appended, the library first, then its new dependencies breadth
 * first, each after an object that needs it. So one forward pass finds them: the library
 * (by its dynamic section, the handle's l_ld), then every later object whose soname or file
 * name a member names in DT_NEEDED. Objects another thread appends meanwhile (possibly
 * still being relocated: glibc adds to the list before it relocates, and a lazy JUMP_SLOT
 * is set up with +=) are not members and are never touched. Only a library that was not
 * loaded before the call (it comes after the last object seen then) is rewritten: an
 * object already loaded keeps its relocations, and whatever another tool wrote in them. */
typedef struct nm_mark {
  const void *phdr;
  ElfW(Addr) base;
} nm_mark_t;

static int nm_last_object(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  nm_mark_t *m = arg;
  m->phdr = info->dlpi_phdr;
  m->base = info->dlpi_addr;
  return 0;
}

#define NM_WANTED_MAX 512

typedef struct nm_pass {
  nm_mark_t last;               /* the last object before the call */
  bool after;                   /* past it */
  const void *library;          /* the handle's dynamic section */
  bool in;                      /* the library was found: members follow */
  size_t nwanted;               /* DT_NEEDED names of the members so far */
  bool overflow;                /* more than NM_WANTED_MAX: every later object is a member */
  const char *wanted[NM_WANTED_MAX];
} nm_pass_t;

static bool nm_is_wanted(const nm_pass_t *p, const char *file, const char *soname) {
  if (p->overflow) return true;
  const char *base = strrchr(file, '/');
  base = base ? base + 1 : file;
  for (size_t i = 0; i < p->nwanted; i++) {
    const char *w = p->wanted[i];
    if ((soname && strcmp(w, soname) == 0) || strcmp(w, file) == 0 || strcmp(w, base) == 0) return true;
  }
  return false;
}

static void nm_want_needed(nm_pass_t *p, const nm_object_t *o) {
  for (const ElfW(Dyn) *d = o->dyn; d->d_tag != DT_NULL; d++) {
    if (d->d_tag != DT_NEEDED || d->d_un.d_val >= o->strsz) continue;
    if (p->nwanted == NM_WANTED_MAX) {
      p->overflow = true;
      return;
    }
    p->wanted[p->nwanted++] = o->strtab + d->d_un.d_val;
  }
}

static int nm_patch_object(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  nm_pass_t *p = arg;
  if (!p->after) {
    p->after = info->dlpi_phdr == p->last.phdr && info->dlpi_addr == p->last.base;
    return 0;
  }
  nm_object_t o;
  if (!nm_object_read(info, &o)) return 0;
  bool member = p->in ? nm_is_wanted(p, info->dlpi_name, o.soname) : (const void *)o.dyn == p->library;
  if (!member) return 0;
  p->in = true;
  nm_want_needed(p, &o);
  if (o.dyn == _DYNAMIC) return 0;
  nm_patch_relocs(&o, o.jmprel, o.jmprelsz);
  nm_patch_relocs(&o, o.rela, o.relasz);
  return 0;
}

static void nm_patch_library(void *handle, const nm_mark_t *last) {
  int saved = errno;
  struct link_map *lm = handle;   /* glibc's handles are link maps */
  pthread_mutex_lock(&nm_patch_lock);
  if (nm_page_size == 0) nm_page_size = (size_t)sysconf(_SC_PAGESIZE);
  static nm_pass_t p;             /* big: kept off the stack (under the lock) */
  memset(&p, 0, sizeof p);
  p.last = *last;
  p.after = last->phdr == NULL;
  p.library = lm->l_ld;
  dl_iterate_phdr(nm_patch_object, &p);
  if (!p.after) {   /* the mark was unloaded meanwhile: the library is searched everywhere */
    memset(&p, 0, sizeof p);
    p.after = true;
    p.library = lm->l_ld;
    dl_iterate_phdr(nm_patch_object, &p);
  }
  pthread_mutex_unlock(&nm_patch_lock);
  errno = saved;
}

/* ------------------------------------------------------------------------------------------
 * The name glibc would load for the caller
 * ------------------------------------------------------------------------------------------ */

static struct link_map *nm_caller_map(const void *ra) {
  Dl_info info;
  struct link_map *lm = NULL;
  if (dladdr1(ra, &info, (void **)&lm, RTLD_DL_LINKMAP) && lm != NULL) return lm;
  /* glibc's choice for an address in no object (JIT code): the program, whose handle is
   * its link_map. */
  return (struct link_map *)nm_next_dlopen(NULL, RTLD_LAZY | RTLD_NOLOAD);
}

/* The caller's $ORIGIN: the directory of its file as glibc recorded it (for a relative
 * name, dlinfo has the one glibc computed at load time), /proc/self/exe's for the program. */
static bool nm_caller_origin(struct link_map *lm, char *out, size_t cap) {
  const char *name = lm->l_name;
  char exe[PATH_MAX];
  if (name == NULL || name[0] == '\0') {   /* the program */
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return false;
    exe[n] = '\0';
    name = exe;
  } else if (name[0] != '/') {
    if (cap < PATH_MAX || dlinfo(lm, RTLD_DI_ORIGIN, out) != 0) return false;
    return out[0] == '/';
  }
  const char *slash = strrchr(name, '/');
  if (slash == NULL) return false;
  size_t len = (size_t)(slash - name);
  if (len == 0) len = 1;   /* "/" */
  if (len >= cap) return false;
  memcpy(out, name, len);
  out[len] = '\0';
  return true;
}

/* The length of the $ORIGIN or ${ORIGIN} token at p ('$'), or 0 (glibc's is_dst). */
static size_t nm_origin_token(const char *p) {
  if (strncmp(p, "${ORIGIN}", 9) == 0) return 9;
  if (strncmp(p, "$ORIGIN", 7) != 0) return 0;
  char c = p[7];
  bool ident = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  return ident ? 0 : 7;
}

static bool nm_expand_origin(const char *file, const char *origin, char *out, size_t cap) {
  size_t o = 0, olen = strlen(origin);
  for (const char *p = file; *p;) {
    size_t t = *p == '$' ? nm_origin_token(p) : 0;
    if (t) {
      if (o + olen >= cap) return false;
      memcpy(out + o, origin, olen);
      o += olen;
      p += t;
    } else {
      if (o + 1 >= cap) return false;
      out[o++] = *p++;
    }
  }
  out[o] = '\0';
  return true;
}

/* An ELF object of our class, byte order and machine (glibc skips others and searches on). */
static bool nm_loadable(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ElfW(Ehdr) h;
  ssize_t n = pread(fd, &h, sizeof h, 0);
  close(fd);
  return n == (ssize_t)sizeof h && memcmp(h.e_ident, ELFMAG, SELFMAG) == 0 &&
         h.e_ident[EI_CLASS] == ELFCLASS64 && h.e_ident[EI_DATA] == ELFDATA2LSB &&
         h.e_machine == NM_ELF_MACHINE;
}

typedef struct nm_soname_query {
  const char *name;
  bool found;
} nm_soname_query_t;

static int nm_soname_match(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  nm_soname_query_t *q = arg;
  nm_object_t o;
  if (strcmp(info->dlpi_name, q->name) == 0 ||
      (nm_object_read(info, &o) && o.soname != NULL && strcmp(o.soname, q->name) == 0))
    q->found = true;
  return q->found;
}

/* The caller's search list (dlinfo RTLD_DI_SERINFO), in a malloc'ed block. */
static Dl_serinfo *nm_search_list(void *handle) {
  Dl_serinfo size;
  if (dlinfo(handle, RTLD_DI_SERINFOSIZE, &size) != 0 || size.dls_size < sizeof size) return NULL;
  Dl_serinfo *si = malloc(size.dls_size);
  if (si == NULL) return NULL;
  *si = size;
  if (dlinfo(handle, RTLD_DI_SERINFO, si) != 0) {
    free(si);
    return NULL;
  }
  return si;
}

/* For a bare name: the path of the first loadable candidate in the caller's search list
 * before the directories it shares (as a suffix) with the preload's own, into out; false
 * when glibc should search from our side (it then finds what the caller would, in
 * ld.so.cache and the system directories). */
static bool nm_search_caller(struct link_map *caller, const char *name, char *out, size_t cap) {
  Dl_info self;
  struct link_map *own = NULL;
  if (!dladdr1((void *)nm_search_caller, &self, (void **)&own, RTLD_DL_LINKMAP) || own == NULL) return false;
  Dl_serinfo *theirs = nm_search_list(caller);
  if (theirs == NULL) return false;
  Dl_serinfo *ours = nm_search_list(own);
  unsigned shared = 0;
  while (ours != NULL && shared < theirs->dls_cnt && shared < ours->dls_cnt &&
         strcmp(theirs->dls_serpath[theirs->dls_cnt - 1 - shared].dls_name,
                ours->dls_serpath[ours->dls_cnt - 1 - shared].dls_name) == 0)
    shared++;
  bool found = false;
  size_t nlen = strlen(name);
  for (unsigned i = 0; i + shared < theirs->dls_cnt && !found; i++) {
    const char *dir = theirs->dls_serpath[i].dls_name;
    size_t dlen = strlen(dir);
    if (dlen == 0 || dlen + 1 + nlen >= cap) continue;
    memcpy(out, dir, dlen);
    out[dlen] = '/';
    memcpy(out + dlen + 1, name, nlen + 1);
    found = nm_loadable(out);
  }
  free(ours);
  free(theirs);
  return found;
}

/* ------------------------------------------------------------------------------------------
 * dlopen with RTLD_DEEPBIND
 * ------------------------------------------------------------------------------------------ */

static char nm_not_here;   /* "cannot do it here": the wrapper falls back */
#define NM_NOT_HERE ((void *)&nm_not_here)

static NM_COLD void *nm_dlopen_deep(const char *file, int mode, const void *ra) {
  bool slash = strchr(file, '/') != NULL;
  bool origin = slash && strchr(file, '$') != NULL;
  /* glibc restricts $ORIGIN in a secure process: its own expansion (tail call) decides. */
  if (origin && nm_preload_secure()) return NM_NOT_HERE;
  char path[PATH_MAX];
  const char *load = file;
  if (origin || !slash) {
    struct link_map *caller = nm_caller_map(ra);
    if (caller == NULL) return NM_NOT_HERE;
    if (origin) {
      char dir[PATH_MAX];
      if (!nm_caller_origin(caller, dir, sizeof dir) || strchr(dir, '$') != NULL ||
          !nm_expand_origin(file, dir, path, sizeof path))
        return NM_NOT_HERE;
      load = path;
    } else {
      nm_soname_query_t q = { file, false };
      dl_iterate_phdr(nm_soname_match, &q);
      if (!q.found && nm_search_caller(caller, file, path, sizeof path)) load = path;
    }
  }
  nm_mark_t last = { NULL, 0 };
  dl_iterate_phdr(nm_last_object, &last);
  void *h = nm_next_dlopen(load, mode);
  if (h != NULL) nm_patch_library(h, &last);
  return h;
}

#endif   /* NM_DEEPBIND_PATCH */

/* Without RTLD_DEEPBIND: ends in a sibling call, so glibc sees the program's return address
 * as the caller and resolves RUNPATH and $ORIGIN against the real caller, not against us.
 * With it: nm_dlopen_deep resolves the name for the caller itself (see the top). */
NM_EXPORT void *dlopen(const char *file, int mode) {
  if (NM_UNLIKELY(nm_next_dlopen == NULL)) nm_dlopen_resolve();
  if (NM_UNLIKELY(mode & RTLD_DEEPBIND) && file != NULL) {
#if NM_DEEPBIND_PATCH
    void *h = nm_dlopen_deep(file, mode, __builtin_extract_return_addr(__builtin_return_address(0)));
    if (h != NM_NOT_HERE) return h;
#endif
    mode = nm_dlopen_strip_deepbind(mode);
  }
  return nm_next_dlopen(file, mode);
}
