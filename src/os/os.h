/* OS pages: the only place that talks to the kernel. Raw syscalls, so a preloaded library
 * hooking mmap/write cannot call back into malloc while we hold state (DESIGN.md point 11). */
#ifndef NM_OS_H
#define NM_OS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

size_t nm_os_page_size(void);
/* size bytes aligned to align (a power of two, multiple of the page size); NULL on failure. */
void *nm_os_map_aligned(size_t size, size_t align);
void *nm_os_map(size_t size);
void nm_os_unmap(void *p, size_t size);
/* Map size bytes exactly at `at`, never over an existing mapping; NULL otherwise. */
void *nm_os_map_at(void *at, size_t size);
/* The errno of this thread's last failed mmap since the last call (0: none); clears it. */
int nm_os_map_error(void);
/* Move the size bytes of pages at `from` onto `to` (both page-aligned and mapped) by moving
 * page-table entries, without a copy: what `to` held is dropped, `from` is left unmapped.
 * false if the kernel refuses (nothing changed then). */
bool nm_os_move(void *from, size_t size, void *to);
/* Give the pages back to the kernel; their content reads as zero afterwards. */
void nm_os_purge(void *p, size_t size);
/* Is the page holding p mapped? (mincore: one syscall, no fault.) */
bool nm_os_mapped(const void *p);
/* write(2) all of buf to fd, retrying short writes; never allocates. */
void nm_os_write(int fd, const char *buf, size_t len);
/* A coarse monotonic clock in milliseconds (vDSO, no syscall). */
uint64_t nm_os_now_ms(void);
/* Resident set size of this process in bytes, from /proc/self/statm (0 if unknown). */
size_t nm_os_rss(void);

#endif
