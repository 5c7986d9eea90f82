/*
 * bench_proc.h - real programs as children of a benchmark, and a private
 * network namespace for them.
 *
 * Children are started by bench_proc_spawn and remembered in a small table
 * (per translation unit); they are signalled by pid only, and only while the
 * table holds them: whoever reaps one with waitpid calls bench_proc_forget
 * right after, so a pid the kernel has reused is never signalled.
 * bench_proc_stop asks (SIGTERM), then insists (SIGKILL after 5 s);
 * bench_proc_kill_all is for atexit. Single-threaded: the table has no lock,
 * and bench_netns_enter must run before any thread exists (threads and
 * children inherit the namespace of the thread that made them).
 *
 * tests/bench/bench_mailbox.c keeps its own copies of these helpers.
 */
#ifndef WB_BENCH_PROC_H
#define WB_BENCH_PROC_H

#ifndef _GNU_SOURCE
#error "define _GNU_SOURCE before any include"
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/bench/bench_common.h"

#define BENCH_PROC_MAX 8

extern char **environ;

static pid_t bench_proc_children[BENCH_PROC_MAX];

/* Start argv[0] (a path, no PATH search) in dir with envp (NULL: ours), its
 * stdin, stdout and stderr on in_fd, out_fd and err_fd (-1: /dev/null). The
 * child starts with no signal blocked and SIGPIPE at its default, whatever
 * the benchmark did to its own. Descriptors of the benchmark other than
 * these must be close-on-exec. Returns the pid; a failed fork is fatal, a
 * failed exec is the child's exit status 127. */
static inline pid_t bench_proc_spawn(char *const argv[], char *const envp[], const char *dir,
                                     int in_fd, int out_fd, int err_fd)
{
    size_t slot = 0;
    while (slot < BENCH_PROC_MAX && bench_proc_children[slot] != 0)
        slot++;
    if (slot == BENCH_PROC_MAX)
        BENCH_FAIL("more than %d children", BENCH_PROC_MAX);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        BENCH_FAIL("fork: %s", strerror(errno));
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        int null = open("/dev/null", O_RDWR);
        dup2(in_fd >= 0 ? in_fd : null, 0);
        dup2(out_fd >= 0 ? out_fd : null, 1);
        dup2(err_fd >= 0 ? err_fd : null, 2);
        if (null > 2)
            close(null);
        if (dir != NULL && chdir(dir) != 0)
            _exit(126);
        execve(argv[0], argv, envp != NULL ? envp : environ);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    bench_proc_children[slot] = pid;
    return pid;
}

/* pid was reaped: never signal it again. */
static inline void bench_proc_forget(pid_t pid)
{
    for (size_t i = 0; i < BENCH_PROC_MAX; i++)
        if (pid > 0 && bench_proc_children[i] == pid)
            bench_proc_children[i] = 0;
}

static inline int bench_proc_ours(pid_t pid)
{
    for (size_t i = 0; i < BENCH_PROC_MAX; i++)
        if (pid > 0 && bench_proc_children[i] == pid)
            return 1;
    return 0;
}

/* SIGTERM, then SIGKILL after 5 s, and reap. Returns the wait status, or -1
 * when pid is not a child in the table. */
static inline int bench_proc_stop(pid_t pid)
{
    int status = -1;
    if (!bench_proc_ours(pid))
        return -1;
    kill(pid, SIGTERM);
    for (int i = 0; i < 500; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            goto reaped;
        bench_sleep_us(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
reaped:
    bench_proc_forget(pid);
    return status;
}

/* SIGKILL every child still in the table, and reap them (atexit). */
static inline void bench_proc_kill_all(void)
{
    for (size_t i = 0; i < BENCH_PROC_MAX; i++)
        if (bench_proc_children[i] > 0) {
            kill(bench_proc_children[i], SIGKILL);
            waitpid(bench_proc_children[i], NULL, 0);
            bench_proc_children[i] = 0;
        }
}

/* "exit N" or "killed by signal N" for a wait status. */
static inline const char *bench_proc_status_text(int status, char *buf, size_t cap)
{
    if (WIFEXITED(status))
        snprintf(buf, cap, "exit %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, cap, "killed by signal %d", WTERMSIG(status));
    else
        snprintf(buf, cap, "wait status 0x%x", (unsigned)status);
    return buf;
}

static inline int bench_write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* Move the process into a network namespace of its own with loopback up,
 * where fixed ports collide with nothing and the programs it starts see no
 * address but 127.0.0.1. Returns 1 when done; 0 with a note in note when the
 * run stays in the host's namespace (not root, or WB_BENCH_NO_NETNS set). */
static inline int bench_netns_enter(char *note, size_t cap)
{
    if (getenv("WB_BENCH_NO_NETNS") != NULL) {
        snprintf(note, cap, "WB_BENCH_NO_NETNS set");
        return 0;
    }
    int orig = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (unshare(CLONE_NEWNET) != 0) {
        snprintf(note, cap, "unshare(CLONE_NEWNET): %s", strerror(errno));
        if (orig >= 0)
            close(orig);
        return 0;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    strcpy(ifr.ifr_name, "lo");
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int up = fd >= 0 && ioctl(fd, SIOCGIFFLAGS, &ifr) == 0;
    if (up) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        up = ioctl(fd, SIOCSIFFLAGS, &ifr) == 0;
    }
    int err = errno;
    if (fd >= 0)
        close(fd);
    if (!up) {
        snprintf(note, cap, "loopback in a new namespace: %s", strerror(err));
        if (orig < 0 || setns(orig, CLONE_NEWNET) != 0)
            BENCH_FAIL("cannot return to the original network namespace");
        close(orig);
        return 0;
    }
    if (orig >= 0)
        close(orig);
    note[0] = '\0';
    return 1;
}

/* A TCP port on 127.0.0.1 that was free a moment ago. */
static inline uint16_t bench_free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) != 0)
        BENCH_FAIL("cannot find a free port: %s", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

/* The HTTP status of GET / on 127.0.0.1:port, or 0 (no answer within 1 s). */
static inline int bench_http_status(uint16_t port)
{
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {1, 0};
    static const char req[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    char buf[64] = "";
    int status = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof(req) - 1)) {
        size_t got = 0;
        while (got < sizeof(buf) - 1) {
            ssize_t r = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
            if (r <= 0)
                break;
            got += (size_t)r;
            buf[got] = '\0';
            if (strchr(buf, '\n') != NULL)
                break;
        }
        if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
            status = 0;
    }
    close(fd);
    return status;
}

static inline int bench_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Remove a directory and everything under it (symlinks not followed). */
static inline void bench_rm_tree(const char *dir)
{
    nftw(dir, bench_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The first line of /proc/loadavg, or "?". */
static inline const char *bench_loadavg(char *buf, size_t cap)
{
    snprintf(buf, cap, "?");
    FILE *f = fopen("/proc/loadavg", "r");
    if (f != NULL) {
        if (fgets(buf, (int)cap, f) == NULL)
            snprintf(buf, cap, "?");
        fclose(f);
    }
    buf[strcspn(buf, "\n")] = '\0';
    return buf;
}

#endif
