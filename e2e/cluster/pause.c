/*
 * Paddock's pod sandbox ("pause") process for the local test cluster.
 *
 * containerd starts this as the first process of every pod sandbox: it holds the pod's
 * namespaces open, reaps zombies (it is PID 1 when the pod shares its PID namespace) and exits
 * with status 0 on SIGINT or SIGTERM. Built with `gcc -static` by e2e/cluster/cluster.sh into
 * the image localhost/paddock/pause:1; it needs no libc at run time and no files.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_terminate(int sig) {
  (void)sig;
  _exit(0);
}

static void on_child(int sig) {
  (void)sig;
  int saved = errno;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
  errno = saved;
}

int main(int argc, char **argv) {
  if (argc > 1 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
    puts("paddock-pause 1");
    return 0;
  }
  if (getpid() != 1) {
    fprintf(stderr, "paddock-pause: warning: not running as PID 1\n");
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = on_terminate;
  if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0) {
    perror("paddock-pause: sigaction");
    return 1;
  }
  sa.sa_handler = on_child;
  sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
  if (sigaction(SIGCHLD, &sa, NULL) < 0) {
    perror("paddock-pause: sigaction");
    return 2;
  }
  for (;;) {
    pause();
  }
  return 42; /* unreachable */
}
