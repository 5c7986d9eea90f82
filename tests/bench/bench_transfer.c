/*
 * bench_transfer.c - file transfer throughput on loopback, as a user lives
 * it: a sender and a receiver process move one big file (1 GiB by default)
 * through a Magic Wormhole, directly or through a transit relay.
 *
 * Clients: waybill (`waybill send FILE` / `waybill receive --accept-file -o
 * OUT`), Debian's Python `wormhole` (magic-wormhole 0.12.0 under
 * /usr/bin/python3) and Go `wormhole-william` (1.0.6). Pairs, each direct
 * and through the relay: wb->wb, py->py, go->go, wb->py, py->wb, wb->go,
 * go->wb. "Relay" runs pass --no-listen to both sides where the client has
 * it; Go has no such flag (its receiver never listens, its sender always
 * does), so which path a Go run took is read from the relay, not assumed.
 *
 * Setup, all children stopped by pid:
 *   - a private network namespace (only loopback: every direct hint is
 *     127.0.0.1) and a private mount namespace whose /etc/hosts maps
 *     transit.magic-wormhole.io to 127.0.0.1: wormhole-william always uses
 *     that relay at port 4001 and cannot be told otherwise. Without them the
 *     runs a Go client needs the relay for are skipped with a note.
 *   - `waybill mailbox-server` on 127.0.0.1:4000 and `waybill transit-relay`
 *     on 127.0.0.1:4001 (logging at info: one line per finished pair with
 *     the bytes it carried, which tells a relayed run from a direct one).
 *   - the payload, made by libsodium's randombytes_buf_deterministic (a
 *     ChaCha20 stream), in a directory on tmpfs (/dev/shm when it has room,
 *     else TMPDIR or /tmp), so that neither side waits for a disk.
 *
 * One run: sender (`--code N-crossover-clockwork`, a new nameplate every run)
 * and receiver are forked back to back; t0 is taken just before the first
 * fork, the end is the receiver's exit, seen through a signalfd. MB/s is
 * bytes / (end - t0) with MB = 10^6 bytes, start-up and PAKE included. A run
 * counts when both exit 0 and the received file has the right size; the
 * first good run of a pair also has its sha256 compared with the payload's
 * (not timed). Received files are deleted after each run.
 *
 * A failed run (an exit status, a wrong file, RUN_TIMEOUT_NS) prints `#`
 * lines with the reason and both programs' last lines, and its pair is
 * dropped; a run with a Go client is retried once first (`# RETRY`):
 * wormhole-william's sender sometimes closes its relay connection right after
 * `go`, and Go's SPAKE2 rarely disagrees with python-spake2's. Benchmarks do
 * not fail CI: the exit status is 0 unless the setup itself is impossible.
 *
 * In the same run, in this process on one core: crypto_secretbox_easy on
 * 16 KiB and 1 MiB messages, SHA-256 through OpenSSL's EVP and through
 * libsodium. A transfer does secretbox on the sender, secretbox_open on the
 * receiver and usually a SHA-256 on one side, with two cores for both
 * processes: half the secretbox speed is what a client that does nothing
 * else on the data path would reach, hence the _vs_secretbox_half ratios.
 *
 * Figures:
 *   transfer_anchor_secretbox_16k / _1m, transfer_anchor_sha256_openssl /
 *     _sodium                      MB/s, median of ANCHOR_REPS
 *   transfer_SIZE_{direct,relay}_S_to_R   MB/s, median of the runs
 *   transfer_ratio_{direct,relay}_wb_vs_py / _wb_vs_go   wb->wb over py->py
 *     or go->go
 *   transfer_ratio_{direct,relay}_wb_vs_secretbox_half   wb->wb over half
 *     of transfer_anchor_secretbox_1m (the goal is >= 1.0)
 *
 * Environment: WB_BENCH_TRANSFER_MB=N payload of N MiB (default 1024);
 * WB_BENCH_TRANSFER_RUNS=N runs per pair (default 3); WB_BENCH_TRANSFER_ONLY=
 * PATTERN runs the pairs whose name (e.g. direct_wb_to_py) matches the
 * fnmatch PATTERN or contains it; WB_BENCH_WAYBILL=PATH measures another
 * waybill binary; WB_BENCH_NO_NETNS=1 stays in the host's network namespace.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/bench/bench_common.h"
#include "tests/bench/bench_proc.h"

#ifndef WAYBILL_BIN
#define WAYBILL_BIN "waybill"
#endif
#define PY_WORMHOLE    "/usr/bin/wormhole"
#define GO_WORMHOLE    "/usr/bin/wormhole-william"
#define WORDS          "crossover-clockwork"
#define GO_RELAY_NAME  "transit.magic-wormhole.io"
#define RELAY_PORT     4001
#define MAILBOX_PORT   4000
#define PAYLOAD_NAME   "payload.bin"
#define BLOCK          (16u << 20) /* payload generation and hashing */
#define RUN_TIMEOUT_NS 120000000000ull
#define SENDER_GRACE   15000000000ull /* sender's exit after the receiver's */
#define BUDGET_NS      900000000000ull
#define START_WAIT_S   15
#define ANCHOR_NS      400000000ull
#define ANCHOR_REPS    3
#define TAIL_LINES     6

enum { CL_WB, CL_PY, CL_GO, NCLIENT };

static const struct {
    const char *tag; /* in figure names */
    const char *pkg; /* where it comes from, for `not available` */
} CLIENTS[NCLIENT] = {
    [CL_WB] = {"wb", "this build"},
    [CL_PY] = {"py", "package magic-wormhole"},
    [CL_GO] = {"go", "package wormhole-william"},
};

static const int PAIRS[][2] = {
    {CL_WB, CL_WB}, {CL_PY, CL_PY}, {CL_GO, CL_GO}, {CL_WB, CL_PY},
    {CL_PY, CL_WB}, {CL_WB, CL_GO}, {CL_GO, CL_WB},
};
#define NPAIR ((int)(sizeof(PAIRS) / sizeof(PAIRS[0])))

typedef struct {
    int snd, rcv, relay;
    char name[48];    /* direct_wb_to_py */
    const char *skip; /* why the pair does not run, or NULL */
    int broken;
    int sha_checked;
    int runs_done;
    int via_relay, via_direct; /* runs, by what the relay carried */
    uint64_t relayed_min, relayed_max;
    bench_samples_t mbs, cpu_snd, cpu_rcv;
} pair_t;

static pair_t pairs[2][NPAIR];
static char tmpdir[256];
static int have_tmpdir;
static char *child_env[16], *relay_env[16];
static int sigfd = -1;
static int nameplate = 100;
static uint64_t payload_size;
static unsigned char payload_sha[32];
static char payload_path[320], relay_log[320], mailbox_url[64], helper[64];
static char wb_missing[160];
static int hosts_ok, relay_ok;
static uint64_t t_start;

static const char *waybill_bin(void)
{
    const char *b = getenv("WB_BENCH_WAYBILL");
    return b != NULL ? b : WAYBILL_BIN;
}

static const char *client_path(int c)
{
    return c == CL_WB ? waybill_bin() : c == CL_PY ? PY_WORMHOLE : GO_WORMHOLE;
}

static void cleanup(void)
{
    bench_proc_kill_all();
    if (have_tmpdir) {
        bench_rm_tree(tmpdir);
        have_tmpdir = 0;
    }
}

static int open_log(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        BENCH_FAIL("open %s: %s", path, strerror(errno));
    return fd;
}

/* Print the last TAIL_LINES lines of a file as `#   label| line`. */
static void print_tail(const char *label, const char *path)
{
    char buf[8192];
    FILE *f = fopen(path, "r");
    size_t n = 0;
    if (f != NULL) {
        if (fseek(f, 0, SEEK_END) == 0) {
            long size = ftell(f);
            fseek(f, size > (long)sizeof(buf) - 1 ? size - (long)sizeof(buf) + 1 : 0, SEEK_SET);
        }
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    buf[n] = '\0';
    char *start = buf + n;
    for (int lines = 0; start > buf; start--)
        if (start[-1] == '\n' && ++lines == TAIL_LINES)
            break;
    if (*start == '\0') {
        printf("#   %s| (nothing)\n", label);
        return;
    }
    for (char *line = strtok(start, "\r\n"); line != NULL; line = strtok(NULL, "\r\n"))
        printf("#   %s| %.200s\n", label, line);
}

static const char *hex(char *dst, const unsigned char *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sprintf(dst + 2 * i, "%02x", src[i]);
    return dst;
}

/* ---- environment ---------------------------------------------------------- */

/* The children's environment: fixed, so that no WORMHOLE_RELAY_URL or locale
 * of the caller changes what is measured; HOME and TMPDIR in our directory.
 * The relay's copy logs at info (one line per pair, with its bytes). */
static void env_init(void)
{
    static char home[320], tmp[320], log[64];
    static char keep_buf[2][512];
    static const char *keep[] = {"ASAN_OPTIONS", "UBSAN_OPTIONS"};
    int n = 0;
    snprintf(home, sizeof(home), "HOME=%s/home", tmpdir);
    snprintf(tmp, sizeof(tmp), "TMPDIR=%s/home", tmpdir);
    snprintf(log, sizeof(log), "WAYBILL_LOG=%s",
             getenv("WAYBILL_LOG") != NULL ? getenv("WAYBILL_LOG") : "warn");
    child_env[n++] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
    child_env[n++] = home;
    child_env[n++] = tmp;
    child_env[n++] = "LANG=C.UTF-8";
    child_env[n++] = "LC_ALL=C.UTF-8";
    child_env[n++] = "PYTHONIOENCODING=utf-8";
    child_env[n++] = "PYTHONUNBUFFERED=1";
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
        const char *v = getenv(keep[i]);
        if (v != NULL) {
            snprintf(keep_buf[i], sizeof(keep_buf[i]), "%s=%s", keep[i], v);
            child_env[n++] = keep_buf[i];
        }
    }
    memcpy(relay_env, child_env, sizeof(char *) * (size_t)n);
    relay_env[n] = "WAYBILL_LOG=info";
    relay_env[n + 1] = NULL;
    child_env[n++] = log;
    child_env[n] = NULL;
}

/* A directory for the payload: /dev/shm when it has room for the payload,
 * one received copy and some slack, else TMPDIR or /tmp. */
static void tmpdir_init(void)
{
    const char *base = "/dev/shm";
    struct statvfs v;
    uint64_t need = 2 * payload_size + (256u << 20);
    if (statvfs(base, &v) != 0 || (uint64_t)v.f_bavail * v.f_frsize < need) {
        base = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
        printf("# /dev/shm is missing or has less than %.0f MB free: payload in %s\n", need / 1e6,
               base);
    }
    snprintf(tmpdir, sizeof(tmpdir), "%s/wb_bench_transfer_XXXXXX", base);
    if (mkdtemp(tmpdir) == NULL)
        BENCH_FAIL("mkdtemp %s: %s", tmpdir, strerror(errno));
    have_tmpdir = 1;
}

/* A private mount namespace whose /etc/hosts also maps GO_RELAY_NAME to
 * 127.0.0.1. 1 when done; 0 with why in note. */
static int hosts_enter(char *note, size_t cap)
{
    char path[320], line[512];
    snprintf(path, sizeof(path), "%s/hosts", tmpdir);
    FILE *in = fopen("/etc/hosts", "r"), *out = fopen(path, "w");
    if (out == NULL) {
        snprintf(note, cap, "cannot write hosts file: %s", strerror(errno));
        if (in != NULL)
            fclose(in);
        return 0;
    }
    while (in != NULL && fgets(line, sizeof(line), in) != NULL)
        fputs(line, out);
    if (in != NULL)
        fclose(in);
    fprintf(out, "\n127.0.0.1 %s\n", GO_RELAY_NAME);
    fclose(out);
    if (unshare(CLONE_NEWNS) != 0) {
        snprintf(note, cap, "unshare(CLONE_NEWNS): %s", strerror(errno));
        return 0;
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
        snprintf(note, cap, "mount --make-rprivate /: %s", strerror(errno));
        return 0;
    }
    if (mount(path, "/etc/hosts", NULL, MS_BIND, NULL) != 0) {
        snprintf(note, cap, "bind mount over /etc/hosts: %s", strerror(errno));
        return 0;
    }
    return 1;
}

/* ---- payload -------------------------------------------------------------- */

/* Block i of the payload is the ChaCha20 stream of seed (i, "waybill"). */
static void payload_make(void)
{
    unsigned char seed[randombytes_SEEDBYTES] = "........waybill bench transfer";
    unsigned char *buf = malloc(BLOCK);
    unsigned int mdlen = 0;
    char shahex[65];
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (buf == NULL || md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
        BENCH_FAIL("payload: out of memory");
    snprintf(payload_path, sizeof(payload_path), "%s/%s", tmpdir, PAYLOAD_NAME);
    int fd = open(payload_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        BENCH_FAIL("open %s: %s", payload_path, strerror(errno));
    uint64_t t0 = bench_now_ns();
    for (uint64_t i = 0, off = 0; off < payload_size; i++) {
        size_t n = payload_size - off < BLOCK ? (size_t)(payload_size - off) : BLOCK;
        memcpy(seed, &i, sizeof(i));
        randombytes_buf_deterministic(buf, n, seed);
        EVP_DigestUpdate(md, buf, n);
        for (size_t w = 0; w < n;) {
            ssize_t r = write(fd, buf + w, n - w);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                BENCH_FAIL("write %s: %s", payload_path, strerror(errno));
            w += (size_t)r;
        }
        off += n;
    }
    if (close(fd) != 0)
        BENCH_FAIL("close %s: %s", payload_path, strerror(errno));
    EVP_DigestFinal_ex(md, payload_sha, &mdlen);
    EVP_MD_CTX_free(md);
    free(buf);
    printf("# payload: %" PRIu64 " bytes (%.0f MiB) in %s, made in %.2f s, sha256 %s\n",
           payload_size, payload_size / 1048576.0, payload_path, (bench_now_ns() - t0) / 1e9,
           hex(shahex, payload_sha, 32));
}

/* sha256 of a file with OpenSSL; 0 or -1. */
static int sha256_file(const char *path, unsigned char out[32])
{
    unsigned char *buf = malloc(BLOCK);
    unsigned int mdlen = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = -1;
    if (buf != NULL && md != NULL && fd >= 0 && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1) {
        ssize_t r;
        while ((r = read(fd, buf, BLOCK)) > 0)
            EVP_DigestUpdate(md, buf, (size_t)r);
        if (r == 0 && EVP_DigestFinal_ex(md, out, &mdlen) == 1)
            rc = 0;
    }
    if (fd >= 0)
        close(fd);
    EVP_MD_CTX_free(md);
    free(buf);
    return rc;
}

/* ---- anchors -------------------------------------------------------------- */

enum { AN_SECRETBOX_16K, AN_SECRETBOX_1M, AN_SHA_OPENSSL, AN_SHA_SODIUM, NANCHOR };
static const char *const ANCHOR_NAMES[NANCHOR] = {
    "transfer_anchor_secretbox_16k", "transfer_anchor_secretbox_1m",
    "transfer_anchor_sha256_openssl", "transfer_anchor_sha256_sodium"};
static double anchor_mbs[NANCHOR];

/* MB/s of one anchor over ANCHOR_NS of repeated work (after one pass). */
static double anchor_once(int which, unsigned char *msg, unsigned char *out)
{
    unsigned char key[crypto_secretbox_KEYBYTES], nonce[crypto_secretbox_NONCEBYTES];
    unsigned char digest[32];
    unsigned int mdlen;
    size_t len = which == AN_SECRETBOX_16K ? (16u << 10) : (1u << 20);
    uint64_t bytes = 0, t0 = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    crypto_hash_sha256_state st;
    randombytes_buf(key, sizeof(key));
    randombytes_buf(nonce, sizeof(nonce));
    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
        BENCH_FAIL("EVP_DigestInit_ex");
    crypto_hash_sha256_init(&st);
    for (int pass = 0;; pass++) {
        if (pass == 1)
            t0 = bench_now_ns();
        else if (pass > 1 && bench_now_ns() - t0 >= ANCHOR_NS)
            break;
        switch (which) {
        case AN_SECRETBOX_16K:
        case AN_SECRETBOX_1M:
            crypto_secretbox_easy(out, msg, len, nonce, key);
            sodium_increment(nonce, sizeof(nonce));
            break;
        case AN_SHA_OPENSSL:
            EVP_DigestUpdate(md, msg, len);
            break;
        default:
            crypto_hash_sha256_update(&st, msg, len);
            break;
        }
        if (pass > 0)
            bytes += len;
    }
    double mbs = bench_rate(bytes, bench_now_ns() - t0) / 1e6;
    EVP_DigestFinal_ex(md, digest, &mdlen);
    crypto_hash_sha256_final(&st, digest);
    EVP_MD_CTX_free(md);
    sodium_memzero(key, sizeof(key));
    return mbs;
}

static void anchors_run(void)
{
    unsigned char *msg = malloc(1u << 20), *out = malloc((1u << 20) + crypto_secretbox_MACBYTES);
    if (msg == NULL || out == NULL)
        BENCH_FAIL("anchors: out of memory");
    randombytes_buf(msg, 1u << 20);
    printf("# anchors: one thread in this process, libsodium %s, %s; each the median of %d "
           "times %.1f s of work on one buffer\n",
           sodium_version_string(), OPENSSL_VERSION_TEXT, ANCHOR_REPS, ANCHOR_NS / 1e9);
    for (int a = 0; a < NANCHOR; a++) {
        double v[ANCHOR_REPS];
        for (int r = 0; r < ANCHOR_REPS; r++)
            v[r] = anchor_once(a, msg, out);
        anchor_mbs[a] = bench_median(v, ANCHOR_REPS);
        bench_print(ANCHOR_NAMES[a], anchor_mbs[a], "MB/s");
    }
    free(msg);
    free(out);
}

/* ---- servers -------------------------------------------------------------- */

/* Is something listening on 127.0.0.1:port (or the any address)? Read from
 * /proc/net/tcp, so that no probe connection reaches the server. */
static int listening(uint16_t port)
{
    char line[256];
    int found = 0;
    FILE *f = fopen("/proc/net/tcp", "r");
    if (f == NULL)
        return 0;
    while (!found && fgets(line, sizeof(line), f) != NULL) {
        unsigned addr, lport, st;
        if (sscanf(line, " %*d: %8x:%4x %*x:%*x %x", &addr, &lport, &st) == 3 && lport == port &&
            st == 0x0A && (addr == 0 || addr == 0x0100007F))
            found = 1;
    }
    fclose(f);
    return found;
}

/* Start `waybill mailbox-server` or `waybill transit-relay`; its pid, or -1
 * with why set. */
static pid_t server_start(int relay, uint16_t port, const char *logpath, char *why, size_t cap)
{
    char dir[320], db[400], portnum[16];
    snprintf(dir, sizeof(dir), "%s/%s", tmpdir, relay ? "relay" : "mailbox");
    snprintf(db, sizeof(db), "%s/relay.sqlite", dir);
    snprintf(portnum, sizeof(portnum), "%u", port);
    if (mkdir(dir, 0700) != 0)
        BENCH_FAIL("mkdir %s: %s", dir, strerror(errno));
    int lfd = open_log(logpath);
    char *mb_argv[] = {(char *)waybill_bin(),
                       "mailbox-server",
                       "--listen",
                       "127.0.0.1",
                       "--port",
                       portnum,
                       "--channel-db",
                       db,
                       NULL};
    char *tr_argv[] = {
        (char *)waybill_bin(), "transit-relay", "--listen", "127.0.0.1", "--port", portnum, NULL};
    pid_t pid = bench_proc_spawn(relay ? tr_argv : mb_argv, relay ? relay_env : child_env, dir, -1,
                                 lfd, lfd);
    close(lfd);
    uint64_t deadline = bench_now_ns() + START_WAIT_S * 1000000000ull;
    while (bench_now_ns() < deadline) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            char st[48], first[200] = "";
            bench_proc_forget(pid);
            FILE *f = fopen(logpath, "r");
            while (f != NULL && fgets(first, sizeof(first), f) != NULL && first[0] == '\n')
                ;
            if (f != NULL)
                fclose(f);
            first[strcspn(first, "\n")] = '\0';
            snprintf(why, cap, "%s at start: %s", bench_proc_status_text(status, st, sizeof(st)),
                     first);
            return -1;
        }
        if (relay ? listening(port) : bench_http_status(port) > 0)
            return pid;
        bench_sleep_us(20000);
    }
    bench_proc_stop(pid);
    snprintf(why, cap, "not listening within %d s", START_WAIT_S);
    return -1;
}

/* Bytes the relay carried in the pairs it logged after offset `from`. */
static uint64_t relay_bytes_since(off_t from, int *npairs)
{
    char line[1024];
    uint64_t total = 0;
    *npairs = 0;
    FILE *f = fopen(relay_log, "r");
    if (f == NULL)
        return 0;
    if (fseeko(f, from, SEEK_SET) != 0) {
        fclose(f);
        return 0;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        uint64_t a, b;
        char *p = strstr(line, " pair ");
        p = p != NULL ? strstr(p, ": ") : NULL;
        if (p != NULL && sscanf(p + 2, "%*s -> %*s %" SCNu64 " bytes, %*s -> %*s %" SCNu64 " bytes",
                                &a, &b) == 2) {
            total += a + b;
            (*npairs)++;
        }
    }
    fclose(f);
    return total;
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* ---- one transfer --------------------------------------------------------- */

/* The command line of one side. */
static void client_argv(int c, int sender, int no_listen, const char *code, const char *out,
                        char **argv)
{
    int n = 0;
    argv[n++] = (char *)client_path(c);
    if (c == CL_PY) { /* global options before the command */
        argv[n++] = "--relay-url";
        argv[n++] = mailbox_url;
        argv[n++] = "--transit-helper";
        argv[n++] = helper;
    }
    argv[n++] = sender ? "send" : c == CL_GO ? "recv" : "receive";
    if (c != CL_PY) {
        argv[n++] = "--relay-url";
        argv[n++] = mailbox_url;
    }
    if (c == CL_WB) {
        argv[n++] = "--transit-helper";
        argv[n++] = helper;
    }
    if (no_listen && c != CL_GO)
        argv[n++] = "--no-listen";
    argv[n++] = "--hide-progress";
    if (sender) {
        argv[n++] = "--code";
        argv[n++] = (char *)code;
        argv[n++] = payload_path;
    } else {
        if (c != CL_GO) { /* Go writes into its cwd, under the sender's name */
            argv[n++] = "--accept-file";
            argv[n++] = "-o";
            argv[n++] = (char *)out;
        }
        argv[n++] = (char *)code;
    }
    argv[n] = NULL;
}

typedef struct {
    double mbs, cpu_snd_s, cpu_rcv_s;
    uint64_t relayed;
} run_res_t;

static double ru_seconds(const struct rusage *ru)
{
    return (double)(ru->ru_utime.tv_sec + ru->ru_stime.tv_sec) +
           (ru->ru_utime.tv_usec + ru->ru_stime.tv_usec) / 1e6;
}

/* Reap pid if it has exited: when, and the cpu time it used. */
static void reap(pid_t pid, int *done, int *status, uint64_t *t, uint64_t now, double *cpu_s)
{
    struct rusage ru;
    if (*done)
        return;
    pid_t r = wait4(pid, status, WNOHANG, &ru);
    if (r == pid) {
        bench_proc_forget(pid);
        *done = 1;
        *t = now;
        *cpu_s = ru_seconds(&ru);
    } else if (r < 0) {
        BENCH_FAIL("waitpid %d: %s", (int)pid, strerror(errno));
    }
}

static void print_argv(const char *label, char **argv)
{
    printf("#   %s %s", label, argv[0]);
    for (int i = 1; argv[i] != NULL; i++)
        printf(" %s", argv[i]);
    printf("\n");
}

/* One transfer for pair p. 0 with the figures, or -1 after printing why. */
static int transfer(pair_t *p, const char *tag, run_res_t *res)
{
    char code[64], rdir[320], out[400], snd_log[320], rcv_log[320], yes[320];
    char *snd_argv[20], *rcv_argv[20];

    snprintf(code, sizeof(code), "%d-%s", ++nameplate, WORDS);
    snprintf(rdir, sizeof(rdir), "%s/rcv-%d", tmpdir, nameplate);
    snprintf(out, sizeof(out), "%s/%s", rdir, PAYLOAD_NAME);
    snprintf(snd_log, sizeof(snd_log), "%s/sender.log", tmpdir);
    snprintf(rcv_log, sizeof(rcv_log), "%s/receiver.log", tmpdir);
    snprintf(yes, sizeof(yes), "%s/yes", tmpdir);
    if (mkdir(rdir, 0700) != 0)
        BENCH_FAIL("mkdir %s: %s", rdir, strerror(errno));
    client_argv(p->snd, 1, p->relay, code, out, snd_argv);
    client_argv(p->rcv, 0, p->relay, code, out, rcv_argv);
    int sfd = open_log(snd_log), rfd = open_log(rcv_log);
    int yfd = p->rcv == CL_GO ? open(yes, O_RDONLY | O_CLOEXEC) : -1; /* "ok? (y/N)" */
    off_t relay_from = file_size(relay_log);
    if (relay_from < 0)
        relay_from = 0;

    uint64_t t0 = bench_now_ns();
    pid_t snd = bench_proc_spawn(snd_argv, child_env, rdir, -1, sfd, sfd);
    pid_t rcv = bench_proc_spawn(rcv_argv, child_env, rdir, yfd, rfd, rfd);
    close(sfd);
    close(rfd);
    if (yfd >= 0)
        close(yfd);

    uint64_t deadline = t0 + RUN_TIMEOUT_NS, t_snd = 0, t_rcv = 0;
    int snd_done = 0, rcv_done = 0, snd_st = 0, rcv_st = 0, timed_out = 0;
    double cpu_snd = 0, cpu_rcv = 0;
    while (!snd_done || !rcv_done) {
        uint64_t now = bench_now_ns();
        if (rcv_done && t_rcv + SENDER_GRACE < deadline)
            deadline = t_rcv + SENDER_GRACE;
        if (now >= deadline) {
            timed_out = 1;
            break;
        }
        struct pollfd pf = {sigfd, POLLIN, 0};
        if (poll(&pf, 1, (int)((deadline - now + 999999) / 1000000)) < 0 && errno != EINTR)
            BENCH_FAIL("poll: %s", strerror(errno));
        now = bench_now_ns();
        if (pf.revents != 0) {
            struct signalfd_siginfo si;
            while (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
                ;
        }
        /* Either may have exited: a SIGCHLD of a server is read here too. */
        reap(snd, &snd_done, &snd_st, &t_snd, now, &cpu_snd);
        reap(rcv, &rcv_done, &rcv_st, &t_rcv, now, &cpu_rcv);
    }

    char why[400] = "", s1[48] = "running", s2[48] = "running";
    if (snd_done)
        bench_proc_status_text(snd_st, s1, sizeof(s1));
    if (rcv_done)
        bench_proc_status_text(rcv_st, s2, sizeof(s2));
    if (timed_out) {
        snprintf(why, sizeof(why), "timed out (%s after %.0f s; sender %s, receiver %s)",
                 rcv_done ? "sender not done" : "not done", (deadline - t0) / 1e9, s1, s2);
        bench_proc_stop(snd);
        bench_proc_stop(rcv);
    } else if (!WIFEXITED(snd_st) || WEXITSTATUS(snd_st) != 0 || !WIFEXITED(rcv_st) ||
               WEXITSTATUS(rcv_st) != 0) {
        snprintf(why, sizeof(why), "sender %s, receiver %s", s1, s2);
    } else if (file_size(out) != (off_t)payload_size) {
        snprintf(why, sizeof(why), "received file has %jd bytes, not %" PRIu64,
                 (intmax_t)file_size(out), payload_size);
    } else if (!p->sha_checked) {
        unsigned char got[32];
        char gothex[65];
        if (sha256_file(out, got) != 0 || memcmp(got, payload_sha, 32) != 0)
            snprintf(why, sizeof(why), "received file's sha256 %s differs from the payload's",
                     hex(gothex, got, 32));
        else
            p->sha_checked = 1;
    }

    /* The relay logs a pair when its second connection closes, just after
     * the clients exit. */
    int npairs = 0;
    uint64_t relayed = relay_bytes_since(relay_from, &npairs);
    for (int i = 0; relay_ok && i < 15 && relayed < payload_size / 2; i++) {
        bench_sleep_us(20000);
        relayed = relay_bytes_since(relay_from, &npairs);
    }
    bench_rm_tree(rdir);

    if (why[0] != '\0') {
        printf("# %s: %s: %s\n", tag, code, why);
        print_argv("sender:  ", snd_argv);
        print_argv("receiver:", rcv_argv);
        print_tail("sender", snd_log);
        print_tail("receiver", rcv_log);
        if (npairs > 0)
            printf("#   relay: %d pair(s), %" PRIu64 " bytes\n", npairs, relayed);
        fflush(stdout);
        return -1;
    }
    res->mbs = (double)payload_size / ((t_rcv - t0) / 1e9) / 1e6;
    res->cpu_snd_s = cpu_snd;
    res->cpu_rcv_s = cpu_rcv;
    res->relayed = relayed;
    return 0;
}

/* ---- pairs ---------------------------------------------------------------- */

static const char *size_tag(void)
{
    static char buf[32];
    if (payload_size % (1ull << 30) == 0)
        snprintf(buf, sizeof(buf), "%" PRIu64 "g", payload_size >> 30);
    else
        snprintf(buf, sizeof(buf), "%" PRIu64 "m", payload_size >> 20);
    return buf;
}

static int wanted(const char *name)
{
    const char *only = getenv("WB_BENCH_TRANSFER_ONLY");
    return only == NULL || only[0] == '\0' || fnmatch(only, name, 0) == 0 ||
           strstr(name, only) != NULL;
}

static void pairs_init(void)
{
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < NPAIR; i++) {
            pair_t *p = &pairs[r][i];
            p->snd = PAIRS[i][0];
            p->rcv = PAIRS[i][1];
            p->relay = r;
            snprintf(p->name, sizeof(p->name), "%s_%s_to_%s", r ? "relay" : "direct",
                     CLIENTS[p->snd].tag, CLIENTS[p->rcv].tag);
            for (int s = 0; s < 2 && p->skip == NULL; s++) {
                int c = s ? p->rcv : p->snd;
                static char why[NCLIENT][200];
                if (access(client_path(c), X_OK) != 0) {
                    snprintf(why[c], sizeof(why[c]), "%s not installed: %s", client_path(c),
                             CLIENTS[c].pkg);
                    p->skip = why[c];
                } else if (c == CL_WB && wb_missing[0] != '\0') {
                    p->skip = wb_missing;
                }
            }
            if (p->skip != NULL)
                continue;
            if (!wanted(p->name))
                p->skip = "";
            else if (!relay_ok && (r || p->snd == CL_GO))
                p->skip = "no transit relay on 127.0.0.1:4001 (see above)";
            else if (!hosts_ok && (p->snd == CL_GO || (r && p->rcv == CL_GO)))
                p->skip = "Go's relay transit.magic-wormhole.io cannot be mapped to 127.0.0.1 "
                          "(see above)";
        }
}

/* Each client's --version once, untimed: the first transfer then does not
 * pay for reading Python's modules from disk. */
static void clients_warm(void)
{
    for (int c = 0; c < NCLIENT; c++) {
        char *argv[] = {(char *)client_path(c), c == CL_WB ? "version" : "--version", NULL};
        if (access(argv[0], X_OK) != 0)
            continue;
        pid_t pid = bench_proc_spawn(argv, child_env, NULL, -1, -1, -1);
        waitpid(pid, NULL, 0);
        bench_proc_forget(pid);
    }
}

/* Does `waybill send` transfer files in this build? */
static void wb_probe(void)
{
    char path[320], text[8192];
    snprintf(path, sizeof(path), "%s/wb-send-help.txt", tmpdir);
    char *argv[] = {(char *)waybill_bin(), "send", "--help", NULL};
    int fd = open_log(path);
    pid_t pid = bench_proc_spawn(argv, child_env, NULL, -1, fd, fd);
    close(fd);
    waitpid(pid, NULL, 0);
    bench_proc_forget(pid);
    FILE *f = fopen(path, "r");
    size_t n = f != NULL ? fread(text, 1, sizeof(text) - 1, f) : 0;
    if (f != NULL)
        fclose(f);
    text[n] = '\0';
    if (access(waybill_bin(), X_OK) != 0)
        snprintf(wb_missing, sizeof(wb_missing), "%s not found", waybill_bin());
    else if (strstr(text, "--transit-helper") == NULL)
        snprintf(wb_missing, sizeof(wb_missing),
                 "this waybill has no file transfer yet: no --transit-helper in `waybill send "
                 "--help`");
}

static void run_one(pair_t *p, int round)
{
    char tag[96];
    run_res_t res;
    int go = p->snd == CL_GO || p->rcv == CL_GO;
    snprintf(tag, sizeof(tag), "%s->%s %s, run %d", CLIENTS[p->snd].tag, CLIENTS[p->rcv].tag,
             p->relay ? "relay" : "direct", round + 1);
    int rc = transfer(p, tag, &res);
    if (rc != 0 && go) {
        printf("# RETRY %s (a Go client: its sender's relay race or a rare key mismatch)\n", tag);
        rc = transfer(p, tag, &res);
    }
    if (rc != 0) {
        printf("# %s: dropped after this failure\n", p->name);
        p->broken = 1;
        return;
    }
    bench_add(&p->mbs, res.mbs);
    bench_add(&p->cpu_snd, res.cpu_snd_s);
    bench_add(&p->cpu_rcv, res.cpu_rcv_s);
    if (res.relayed >= payload_size / 2)
        p->via_relay++;
    else
        p->via_direct++;
    if (p->runs_done == 0 || res.relayed < p->relayed_min)
        p->relayed_min = res.relayed;
    if (res.relayed > p->relayed_max)
        p->relayed_max = res.relayed;
    p->runs_done++;
    printf("# %s: %.1f MB/s, via %s (the relay carried %" PRIu64 " bytes), cpu sender %.2f s, "
           "receiver %.2f s\n",
           tag, res.mbs, res.relayed >= payload_size / 2 ? "relay" : "direct", res.relayed,
           res.cpu_snd_s, res.cpu_rcv_s);
    fflush(stdout);
}

static double pair_mbs(const pair_t *p)
{
    bench_samples_t s = p->mbs;
    return p->runs_done > 0 ? bench_med(&s) : 0.0;
}

static void print_pair(pair_t *p)
{
    char name[96];
    snprintf(name, sizeof(name), "transfer_%s_%s", size_tag(), p->name);
    if (p->skip != NULL) {
        if (p->skip[0] != '\0')
            printf("%s: not available (%s)\n", name, p->skip);
        return;
    }
    if (p->runs_done == 0) {
        printf("# %s: no figure (%s)\n", name, p->broken ? "failed, see above" : "not run");
        return;
    }
    double lo = 1e300, hi = 0;
    for (int i = 0; i < p->mbs.n; i++) {
        lo = p->mbs.v[i] < lo ? p->mbs.v[i] : lo;
        hi = p->mbs.v[i] > hi ? p->mbs.v[i] : hi;
    }
    printf("# %s: %d run(s), %.1f..%.1f MB/s; path: %d relay, %d direct (the relay carried "
           "%.0f..%.0f MB); cpu median sender %.2f s, receiver %.2f s%s\n",
           name, p->runs_done, lo, hi, p->via_relay, p->via_direct, p->relayed_min / 1e6,
           p->relayed_max / 1e6, bench_med(&p->cpu_snd), bench_med(&p->cpu_rcv),
           p->broken ? "; dropped after a failure" : "");
    bench_print2(name, pair_mbs(p), "MB/s");
}

static void print_ratios(int relay)
{
    char name[96];
    const pair_t *wb = &pairs[relay][0], *py = &pairs[relay][1], *go = &pairs[relay][2];
    const char *kind = relay ? "relay" : "direct";
    if (wb->runs_done == 0)
        return;
    if (py->runs_done > 0) {
        snprintf(name, sizeof(name), "transfer_ratio_%s_wb_vs_py", kind);
        bench_print2(name, pair_mbs(wb) / pair_mbs(py), "x");
    }
    if (go->runs_done > 0) {
        snprintf(name, sizeof(name), "transfer_ratio_%s_wb_vs_go", kind);
        bench_print2(name, pair_mbs(wb) / pair_mbs(go), "x");
    }
    if (anchor_mbs[AN_SECRETBOX_1M] > 0) {
        snprintf(name, sizeof(name), "transfer_ratio_%s_wb_vs_secretbox_half", kind);
        bench_print2(name, pair_mbs(wb) / (anchor_mbs[AN_SECRETBOX_1M] / 2), "x");
    }
}

static int env_int(const char *name, int dflt, int lo, int hi)
{
    const char *v = getenv(name);
    if (v == NULL || v[0] == '\0')
        return dflt;
    char *end;
    long n = strtol(v, &end, 10);
    if (*end != '\0' || n < lo || n > hi)
        BENCH_FAIL("%s=%s: not a number in %d..%d", name, v, lo, hi);
    return (int)n;
}

int main(void)
{
    char note[200], hnote[200], load[64], why[256], home[320], mb_log[320], path[320];
    int runs = env_int("WB_BENCH_TRANSFER_RUNS", 3, 1, BENCH_MAX_RUNS);
    payload_size = (uint64_t)env_int("WB_BENCH_TRANSFER_MB", 1024, 1, 1 << 20) << 20;

    int in_netns = bench_netns_enter(note, sizeof(note));
    signal(SIGPIPE, SIG_IGN);
    if (sodium_init() < 0)
        BENCH_FAIL("sodium_init");
    tmpdir_init();
    atexit(cleanup);
    hosts_ok = hosts_enter(hnote, sizeof(hnote));
    snprintf(home, sizeof(home), "%s/home", tmpdir);
    if (mkdir(home, 0700) != 0)
        BENCH_FAIL("mkdir %s: %s", home, strerror(errno));
    snprintf(path, sizeof(path), "%s/yes", tmpdir);
    int yfd = open_log(path);
    if (write(yfd, "y\n", 2) != 2)
        BENCH_FAIL("write %s: %s", path, strerror(errno));
    close(yfd);
    env_init();

    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &chld, NULL) != 0 ||
        (sigfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC)) < 0)
        BENCH_FAIL("signalfd: %s", strerror(errno));

    if (in_netns)
        printf("# private network namespace: only loopback\n");
    else
        printf("# host network namespace (%s): the clients also see the host's addresses\n", note);
    if (hosts_ok)
        printf("# private mount namespace: /etc/hosts maps %s to 127.0.0.1\n", GO_RELAY_NAME);
    else
        printf("# no private /etc/hosts (%s): the Go sender and the Go relay runs are skipped\n",
               hnote);
    printf("# /proc/loadavg at start (sender and receiver share the %d cpus, with other work): "
           "%s\n",
           bench_ncpus(), bench_loadavg(load, sizeof(load)));
    printf("# MB = 10^6 bytes; MB/s = payload bytes / seconds from the sender's start to the "
           "receiver's exit (start-up, PAKE and transit setup included)\n");
    fflush(stdout);

    anchors_run();
    payload_make();
    wb_probe();
    clients_warm();

    /* Servers. */
    uint16_t mport = in_netns ? MAILBOX_PORT : bench_free_port();
    snprintf(mb_log, sizeof(mb_log), "%s/mailbox.log", tmpdir);
    snprintf(relay_log, sizeof(relay_log), "%s/relay.log", tmpdir);
    snprintf(mailbox_url, sizeof(mailbox_url), "ws://127.0.0.1:%u/v1", mport);
    snprintf(helper, sizeof(helper), "tcp:127.0.0.1:%u", RELAY_PORT);
    pid_t mb = server_start(0, mport, mb_log, why, sizeof(why));
    if (mb < 0) {
        printf("transfer: not available (waybill mailbox-server: %s)\n", why);
        return 0;
    }
    pid_t tr = server_start(1, RELAY_PORT, relay_log, why, sizeof(why));
    relay_ok = tr > 0;
    if (!relay_ok)
        printf("# waybill transit-relay on 127.0.0.1:%u: %s\n", RELAY_PORT, why);
    printf("# mailbox: waybill mailbox-server pid %d on %s; relay: %s\n", (int)mb, mailbox_url,
           relay_ok ? "waybill transit-relay on 127.0.0.1:4001 (log at info)" : "none");
    printf("# %d run(s) per pair, rounds over the pairs in turn; a run times out after %.0f s\n",
           runs, RUN_TIMEOUT_NS / 1e9);
    fflush(stdout);

    pairs_init();
    t_start = bench_now_ns();
    int budget_noted = 0;
    for (int round = 0; round < runs; round++)
        for (int r = 0; r < 2; r++)
            for (int i = 0; i < NPAIR; i++) {
                pair_t *p = &pairs[r][i];
                if (p->skip != NULL || p->broken)
                    continue;
                if (bench_now_ns() - t_start >= BUDGET_NS) {
                    if (!budget_noted)
                        printf("# the budget of %.0f s of transfers is spent: the runs left are "
                               "skipped\n",
                               BUDGET_NS / 1e9);
                    budget_noted = 1;
                    continue;
                }
                run_one(p, round);
            }

    bench_proc_stop(mb);
    if (relay_ok)
        bench_proc_stop(tr);
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < NPAIR; i++)
            print_pair(&pairs[r][i]);
    print_ratios(0);
    print_ratios(1);
    return 0;
}
