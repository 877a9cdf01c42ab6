/* Linked into nm_stats_child_siglib only: a reference to nm_stats_siglib, so the linker
 * keeps it as DT_NEEDED (meson links with --as-needed). */
int nm_siglib_present(void);
__attribute__((used)) int (*const nm_siglib_ref)(void) = nm_siglib_present;
