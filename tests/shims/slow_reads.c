// An LD_PRELOAD shim for tests/test_slow_filesystem.cpp: every read from a file whose name ends in ".h5" waits
// STRIDE_SLOW_READ_MS milliseconds first, as reads do on a busy shared file system. With STRIDE_SLOW_READ_LOG
// set, each process appends "<pid> <delayed reads>" to that file when it exits, so a test can show the delay
// really applied. Built without sanitizers (CMakeLists.txt): it only forwards to libc.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static ssize_t (*real_read)(int, void*, size_t);
static ssize_t (*real_pread)(int, void*, size_t, off_t);
static ssize_t (*real_pread64)(int, void*, size_t, off64_t);
static long delay_ms = -1;
static atomic_long delayed;

static void delay_if_h5(int fd) {
  if (delay_ms < 0) {
    const char* v = getenv("STRIDE_SLOW_READ_MS");
    delay_ms = v ? atol(v) : 0;
  }
  if (delay_ms <= 0) return;
  char link[64], target[4096];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  const ssize_t n = readlink(link, target, sizeof target - 1);
  if (n < 3 || memcmp(target + n - 3, ".h5", 3) != 0) return;
  atomic_fetch_add(&delayed, 1);
  struct timespec t = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
  while (nanosleep(&t, &t) != 0) {
  }
}

ssize_t read(int fd, void* buf, size_t n) {
  if (!real_read) real_read = (ssize_t(*)(int, void*, size_t))dlsym(RTLD_NEXT, "read");
  delay_if_h5(fd);
  return real_read(fd, buf, n);
}

ssize_t pread(int fd, void* buf, size_t n, off_t at) {
  if (!real_pread) real_pread = (ssize_t(*)(int, void*, size_t, off_t))dlsym(RTLD_NEXT, "pread");
  delay_if_h5(fd);
  return real_pread(fd, buf, n, at);
}

ssize_t pread64(int fd, void* buf, size_t n, off64_t at) {
  if (!real_pread64) real_pread64 = (ssize_t(*)(int, void*, size_t, off64_t))dlsym(RTLD_NEXT, "pread64");
  delay_if_h5(fd);
  return real_pread64(fd, buf, n, at);
}

__attribute__((destructor)) static void report(void) {
  const char* path = getenv("STRIDE_SLOW_READ_LOG");
  if (!path || atomic_load(&delayed) == 0) return;
  const int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd < 0) return;
  char line[64];
  const int len = snprintf(line, sizeof line, "%d %ld\n", (int)getpid(), atomic_load(&delayed));
  if (len > 0) (void)!write(fd, line, (size_t)len);
  close(fd);
}
