/* nm_symbolize_probe: prints its own backtrace frames in the nebula report format, so the
 * scripts/nebula-symbolize test can check the file:line it resolves them to. Built -g -O0
 * (and once more without debug information). The markers in the comments name the lines
 * the test expects; keep each marker on the line of its call. */
#include <dlfcn.h>
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define NM_PROBE_EXPORT __attribute__((visibility("default"), noinline))

volatile int nm_probe_sink;
static int nm_probe_frame_no;

/* Prints the frame of the caller's return address:
 *     #N 0x<addr> <sym>+0x<off> (<module>+0x<module offset>) */
NM_PROBE_EXPORT void nm_symbolize_probe_report(void)
{
    void *ra = __builtin_return_address(0);
    uintptr_t addr = (uintptr_t)ra;
    Dl_info info;
    memset(&info, 0, sizeof info);
    if (!dladdr(ra, &info) || !info.dli_fbase) {
        fprintf(stderr, "nm_symbolize_probe: dladdr failed\n");
        return;
    }
    /* The main program's dli_fname may be "" or argv[0] relative to the start directory. */
    const char *module = info.dli_fname;
    char exe[PATH_MAX];
    if (!module || module[0] != '/') {
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n <= 0) {
            fprintf(stderr, "nm_symbolize_probe: readlink /proc/self/exe failed\n");
            return;
        }
        exe[n] = '\0';
        module = exe;
    }
    uintptr_t base = (uintptr_t)info.dli_fbase;
    if (info.dli_sname && info.dli_saddr)
        printf("    #%d 0x%016" PRIxPTR " %s+0x%" PRIxPTR " (%s+0x%" PRIxPTR ")\n",
               nm_probe_frame_no, addr, info.dli_sname, addr - (uintptr_t)info.dli_saddr,
               module, addr - base);
    else
        printf("    #%d 0x%016" PRIxPTR " ?? (%s+0x%" PRIxPTR ")\n",
               nm_probe_frame_no, addr, module, addr - base);
    nm_probe_frame_no++;
}

/* Inlined into its caller even at -O0, so the frame has one inline level. */
static inline __attribute__((always_inline)) void nm_symbolize_probe_inlined(void)
{
    nm_symbolize_probe_report(); /* PROBE-INLINED-CALL */
    nm_probe_sink++;
}

NM_PROBE_EXPORT void nm_symbolize_probe_caller(void)
{
    nm_symbolize_probe_report(); /* PROBE-CALL */
    nm_probe_sink++;
}

NM_PROBE_EXPORT void nm_symbolize_probe_inline_caller(void)
{
    nm_symbolize_probe_inlined(); /* PROBE-INLINE-SITE */
    nm_probe_sink++;
}

int main(void)
{
    nm_symbolize_probe_caller();        /* frame #0 */
    nm_symbolize_probe_inline_caller(); /* frame #1 */
    return fflush(stdout) == 0 ? 0 : 1;
}
