/* nm_host_noscall PROGRAM ARGS...: runs PROGRAM with process_vm_writev(2) refused (EPERM)
 * by a seccomp filter, as some container profiles do: the preload's RTLD_DEEPBIND rewrite
 * then decides from PT_GNU_RELRO alone whether a slot's page must be made writable. */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: nm_host_noscall PROGRAM ARGS...\n");
    return 2;
  }
  struct sock_filter filter[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_process_vm_writev, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = { sizeof filter / sizeof filter[0], filter };
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
    perror("nm_host_noscall: seccomp");
    return 2;
  }
  execv(argv[1], argv + 1);
  perror("nm_host_noscall: execv");
  return 127;
}
