/*
 * test_kv.c - a real `waybill kv-server` process on loopback, driven by real
 * `waybill kv` client processes and by raw sockets playing bad or greedy
 * peers.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "apps/kv/proto.h"
#include "dispatch/envelope.h"

#ifndef WAYBILL_BIN
#error "WAYBILL_BIN must name the waybill executable"
#endif

static char dir[] = "/tmp/waybill-kv-test-XXXXXX";
static char db[256];
static pid_t server_pid;
static int server_port;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *server_extra; /* one more argument for the next server_start */

/* Start the server on port (0: any) and read the port it tells. */
static void server_start(int port)
{
    int out[2];
    char portarg[16];
    assert_int_equal(pipe(out), 0);
    snprintf(portarg, sizeof(portarg), "%d", port);
    server_pid = fork();
    assert_true(server_pid >= 0);
    if (server_pid == 0) {
        dup2(out[1], 1);
        close(out[0]);
        close(out[1]);
        if (server_extra != NULL)
            execl(WAYBILL_BIN, WAYBILL_BIN, "kv-server", "--port", portarg, "--db", db,
                  "--max-value-size", "1048576", server_extra, (char *)NULL);
        else
            execl(WAYBILL_BIN, WAYBILL_BIN, "kv-server", "--port", portarg, "--db", db,
                  "--max-value-size", "1048576", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    FILE *f = fdopen(out[0], "r");
    char line[256];
    server_port = 0;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "kv-server: listening on port %d", &server_port) == 1)
            break;
    fclose(f);
    assert_true(server_port > 0);
}

static void server_stop(int sig)
{
    int st;
    kill(server_pid, sig);
    assert_int_equal(waitpid(server_pid, &st, 0), server_pid);
    if (sig == SIGTERM)
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* Run `waybill kv ARGS...`; its stdout goes to out (NUL-terminated). */
static int kv(char *out, size_t cap, ...)
{
    char *argv[16];
    char port[16];
    int n = 0, p[2];
    va_list ap;
    snprintf(port, sizeof(port), "%d", server_port);
    argv[n++] = WAYBILL_BIN;
    argv[n++] = "kv";
    argv[n++] = "--port";
    argv[n++] = port;
    va_start(ap, cap);
    char *a;
    while ((a = va_arg(ap, char *)) != NULL && n < 15)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execv(WAYBILL_BIN, argv);
        _exit(127);
    }
    close(p[1]);
    size_t len = 0;
    ssize_t r;
    while ((r = read(p[0], out + len, cap - 1 - len)) > 0)
        len += (size_t)r;
    out[len] = 0;
    close(p[0]);
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* ---- raw peers ---------------------------------------------------------------------------- */

static int raw_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)server_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static void write_all(int fd, const void *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        assert_true(w > 0);
        p = (const char *)p + w;
        n -= (size_t)w;
    }
}

/* One framed envelope. */
static void raw_send(int fd, uint32_t type, uint64_t id, const void *body, size_t len)
{
    uint8_t buf[4 + 256 + 4096];
    size_t n;
    wb_envelope_t env = {type, id, 0, 0, body, len};
    assert_int_equal(wb_codec_msgpack.encode(&env, buf + 4, sizeof(buf) - 4, &n), 0);
    buf[0] = (uint8_t)(n >> 24);
    buf[1] = (uint8_t)(n >> 16);
    buf[2] = (uint8_t)(n >> 8);
    buf[3] = (uint8_t)n;
    write_all(fd, buf, 4 + n);
}

/* Is fd closed by the peer within ms? */
static int closed_within(int fd, int ms)
{
    uint8_t buf[4096];
    uint64_t end = now_ms() + (uint64_t)ms;
    while (now_ms() < end) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 50) > 0) {
            ssize_t r = read(fd, buf, sizeof(buf));
            if (r <= 0)
                return 1;
        }
    }
    return 0;
}

/* ---- the tests ----------------------------------------------------------------------------------
 */

static int setup(void **state)
{
    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(db, sizeof(db), "%s/kv.db", dir);
    server_start(0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    server_stop(SIGTERM);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static void test_put_get_delete_list(void **state)
{
    (void)state;
    char out[65536];
    assert_int_equal(kv(out, sizeof(out), "put", "fruit/apple", "red", NULL), 0);
    unsigned long long r1, r2;
    assert_int_equal(sscanf(out, "rev %llu", &r1), 1);
    assert_int_equal(kv(out, sizeof(out), "put", "fruit/banana", "yellow", NULL), 0);
    assert_int_equal(sscanf(out, "rev %llu", &r2), 1);
    assert_true(r2 > r1);
    assert_int_equal(kv(out, sizeof(out), "get", "fruit/apple", NULL), 0);
    assert_string_equal(out, "red\n");
    assert_int_equal(kv(out, sizeof(out), "--json", "get", "fruit/banana", NULL), 0);
    char want[128];
    snprintf(want, sizeof(want), "{\"key\":\"fruit/banana\",\"value\":\"yellow\",\"rev\":%llu}\n",
             r2);
    assert_string_equal(out, want);
    assert_int_equal(kv(out, sizeof(out), "put", "veg/leek", "green", NULL), 0);
    assert_int_equal(kv(out, sizeof(out), "list", "fruit/", NULL), 0);
    assert_non_null(strstr(out, "fruit/apple = red"));
    assert_non_null(strstr(out, "fruit/banana = yellow"));
    assert_null(strstr(out, "veg/leek"));
    assert_int_equal(kv(out, sizeof(out), "delete", "fruit/apple", NULL), 0);
    assert_int_equal(kv(out, sizeof(out), "get", "fruit/apple", NULL), 1);
    assert_int_equal(kv(out, sizeof(out), "delete", "fruit/apple", NULL), 1);
}

static void test_list_pages(void **state)
{
    (void)state;
    /* More keys than one answer carries: the client pages through them. */
    int fd = raw_connect();
    kv_buf_t b;
    kv_buf_init(&b);
    for (int i = 0; i < 2500; i++) {
        char k[32];
        snprintf(k, sizeof(k), "page/%05d", i);
        kv_buf_reset(&b);
        kv_enc_key_value(&b, (kv_bytes_t){(const uint8_t *)k, strlen(k)},
                         (kv_bytes_t){(const uint8_t *)"v", 1});
        raw_send(fd, KV_PUT, (uint64_t)(2 * i + 1), b.p, b.len);
    }
    kv_buf_fini(&b);
    static char out[1 << 20];
    /* Wait for the writes: a get of the last key. */
    for (int tries = 0; tries < 100; tries++) {
        if (kv(out, sizeof(out), "get", "page/02499", NULL) == 0)
            break;
        usleep(50000);
    }
    assert_int_equal(kv(out, sizeof(out), "list", "page/", NULL), 0);
    int lines = 0;
    for (char *p = out; (p = strchr(p, '\n')) != NULL; p++)
        lines++;
    assert_int_equal(lines, 2500);
    close(fd);
}

static void test_value_limits(void **state)
{
    (void)state;
    char out[4096];
    /* 1 MiB is accepted; one byte more is refused with a clear error. */
    static char big[(1 << 20) + 2];
    memset(big, 'x', sizeof(big) - 1);
    big[1 << 20] = 0;
    char path[300];
    snprintf(path, sizeof(path), "%s/big", dir);
    FILE *f = fopen(path, "w");
    fwrite(big, 1, 1 << 20, f);
    fclose(f);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "%s kv --port %d put big - < %s > /dev/null", WAYBILL_BIN,
             server_port, path);
    assert_int_equal(system(cmd), 0);
    f = fopen(path, "a");
    fputc('x', f);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "%s kv --port %d put big - < %s 2>/dev/null >/dev/null", WAYBILL_BIN,
             server_port, path);
    assert_int_not_equal(system(cmd), 0);
    /* The server still serves. */
    assert_int_equal(kv(out, sizeof(out), "put", "after", "ok", NULL), 0);
}

static void test_bad_input(void **state)
{
    (void)state;
    char out[4096];
    /* Garbage: the frame decodes but the envelope does not: dropped, counted. */
    int fd = raw_connect();
    write_all(fd, "\x00\x00\x00\x05hello", 9);
    /* A huge length prefix: closed. */
    int fd2 = raw_connect();
    write_all(fd2, "\xff\xff\xff\xf0", 4);
    assert_true(closed_within(fd2, 3000));
    /* Truncated frame then close. */
    int fd3 = raw_connect();
    write_all(fd3,
              "\x00\x00\x01\x00"
              "abc",
              7);
    close(fd3);
    /* Unknown type and a reply to nothing: dropped; a malformed body: an error. */
    raw_send(fd, 99, 1, "", 0);
    uint8_t body[] = {0x91, 0xc0}; /* [nil]: a get without a key */
    raw_send(fd, KV_GET, 3, body, sizeof(body));
    close(fd2);
    /* Everyone else is still served. */
    assert_int_equal(kv(out, sizeof(out), "put", "still", "here", NULL), 0);
    assert_int_equal(kv(out, sizeof(out), "get", "still", NULL), 0);
    assert_string_equal(out, "here\n");
    close(fd);
}

/* A client that writes as fast as it can and never reads its answers is held
 * (its socket stops being read), while another client is served quickly. */
static void test_flooder_held(void **state)
{
    (void)state;
    int fd = raw_connect();
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    kv_buf_t b;
    kv_buf_init(&b);
    static uint8_t value[16384];
    memset(value, 'f', sizeof(value));
    kv_enc_key_value(&b, (kv_bytes_t){(const uint8_t *)"flood", 5},
                     (kv_bytes_t){value, sizeof(value)});
    uint8_t frame[4 + 256 + sizeof(value)];
    uint64_t id = 1;
    uint64_t end = now_ms() + 3000;
    int blocked = 0;
    size_t off = 0, flen = 0;
    while (now_ms() < end) {
        if (off == flen) {
            wb_envelope_t env = {KV_PUT, id, 0, 0, b.p, b.len};
            size_t n;
            assert_int_equal(wb_codec_msgpack.encode(&env, frame + 4, sizeof(frame) - 4, &n), 0);
            frame[0] = 0;
            frame[1] = (uint8_t)(n >> 16);
            frame[2] = (uint8_t)(n >> 8);
            frame[3] = (uint8_t)n;
            flen = n + 4;
            off = 0;
            id += 2;
        }
        ssize_t w = write(fd, frame + off, flen - off);
        if (w > 0) {
            off += (size_t)w;
        } else if (errno == EAGAIN) {
            blocked = 1;
            break;
        }
    }
    kv_buf_fini(&b);
    /* The server stopped reading: the flooder's socket filled up. */
    assert_true(blocked);
    /* Others are served, and fast. */
    char out[4096];
    uint64_t t0 = now_ms();
    for (int i = 0; i < 5; i++) {
        assert_int_equal(kv(out, sizeof(out), "put", "calm", "ok", NULL), 0);
        assert_int_equal(kv(out, sizeof(out), "get", "calm", NULL), 0);
    }
    assert_true(now_ms() - t0 < 5000);
    close(fd);
}

/* A watcher sees every change in order, across a server restart. */
static void test_watch_resumes(void **state)
{
    (void)state;
    char out[4096];
    char path[300], port[16];
    snprintf(path, sizeof(path), "%s/watch.out", dir);
    snprintf(port, sizeof(port), "%d", server_port);
    pid_t w = fork();
    if (w == 0) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        execl(WAYBILL_BIN, WAYBILL_BIN, "kv", "--port", port, "--json", "watch", "w/", "--from",
              "0", "--max-events", "100", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 50; i++) {
        char k[16], v[16];
        snprintf(k, sizeof(k), "w/%03d", i);
        snprintf(v, sizeof(v), "v%d", i);
        assert_int_equal(kv(out, sizeof(out), "put", k, v, NULL), 0);
        if (i == 10)
            assert_int_equal(kv(out, sizeof(out), "put", "other/x", "not watched", NULL), 0);
    }
    /* The server goes away and comes back on the same port and database. */
    int p = server_port;
    server_stop(SIGKILL);
    server_start(p);
    for (int i = 50; i < 100; i++) {
        char k[16], v[16];
        snprintf(k, sizeof(k), "w/%03d", i);
        snprintf(v, sizeof(v), "v%d", i);
        assert_int_equal(kv(out, sizeof(out), "put", k, v, NULL), 0);
    }
    int st;
    uint64_t end = now_ms() + 20000;
    pid_t r;
    while ((r = waitpid(w, &st, WNOHANG)) == 0 && now_ms() < end)
        usleep(20000);
    if (r == 0) {
        kill(w, SIGKILL);
        waitpid(w, &st, 0);
    }
    assert_int_equal(r, w);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    FILE *f = fopen(path, "r");
    char line[256];
    int next = 0;
    unsigned long long last = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        int i;
        unsigned long long rev;
        if (strncmp(line, "{\"synced\"", 9) == 0)
            continue;
        assert_int_equal(sscanf(line,
                                "{\"op\":\"put\",\"key\":\"w/%d\",\"value\":\"v%*d\",\"rev\":%llu}",
                                &i, &rev),
                         2);
        assert_int_equal(i, next); /* each once, in order */
        assert_true(rev > last);
        last = rev;
        next++;
    }
    fclose(f);
    assert_int_equal(next, 100);
}

/* A durable cursor (rule 5: keyed by its rowid, served on the database
 * thread): repeats what was not acknowledged, survives a server SIGKILL. */
static void test_cursor(void **state)
{
    (void)state;
    char out[65536];
    unsigned long long cur, r;
    assert_int_equal(kv(out, sizeof(out), "put", "q/0", "zero", NULL), 0);
    assert_int_equal(kv(out, sizeof(out), "cursor", "q/", "--from", "0", NULL), 0);
    assert_int_equal(sscanf(out, "cursor %llu", &cur), 1);
    char curs[32];
    snprintf(curs, sizeof(curs), "%llu", cur);
    assert_int_equal(kv(out, sizeof(out), "put", "q/1", "one", NULL), 0);
    assert_int_equal(kv(out, sizeof(out), "put", "elsewhere", "x", NULL), 0);
    /* Everything after 0 under q/, twice: nothing was acknowledged. */
    assert_int_equal(kv(out, sizeof(out), "next", curs, NULL), 0);
    assert_non_null(strstr(out, "put q/0 = zero"));
    assert_non_null(strstr(out, "put q/1 = one"));
    assert_null(strstr(out, "elsewhere"));
    char again[65536];
    assert_int_equal(kv(again, sizeof(again), "next", curs, NULL), 0);
    assert_string_equal(out, again);
    /* Acknowledge the first; the server dies; the cursor is still there. */
    char *l2 = strstr(out, "rev ");
    assert_int_equal(sscanf(l2, "rev %llu", &r), 1);
    char ack[32];
    snprintf(ack, sizeof(ack), "%llu", r);
    assert_int_equal(kv(out, sizeof(out), "--json", "next", curs, "--ack", ack, NULL), 0);
    assert_null(strstr(out, "\"q/0\""));
    assert_non_null(strstr(out, "\"q/1\""));
    int p = server_port;
    server_stop(SIGKILL);
    server_start(p);
    assert_int_equal(kv(out, sizeof(out), "put", "q/2", "two", NULL), 0);
    assert_int_equal(kv(out, sizeof(out), "next", curs, NULL), 0);
    assert_null(strstr(out, "q/0"));
    assert_non_null(strstr(out, "put q/1 = one"));
    assert_non_null(strstr(out, "put q/2 = two"));
    /* Bounded batches; unknown and dropped cursors are errors. */
    assert_int_equal(kv(out, sizeof(out), "next", curs, "--max", "1", NULL), 0);
    assert_null(strstr(out, "q/2"));
    assert_int_equal(kv(out, sizeof(out), "next", "999999", NULL), 1);
    assert_int_equal(kv(out, sizeof(out), "drop", curs, NULL), 0);
    assert_int_equal(kv(out, sizeof(out), "next", curs, NULL), 1);
}

/* Every inbox tiny, many watchers, a burst of writes: sends the network
 * lane refuses are held and resent in order, and every watcher still sees
 * every change exactly once, in order. */
static void test_watchers_under_pressure(void **state)
{
    (void)state;
    enum { WATCHERS = 8, WRITES = 300 };
    char out[4096], port[16], paths[WATCHERS][300], max[16];
    int p = server_port;
    server_stop(SIGTERM);
    server_extra = "--inbox-limit=16";
    server_start(p);
    server_extra = NULL;
    snprintf(port, sizeof(port), "%d", server_port);
    snprintf(max, sizeof(max), "%d", WRITES);
    pid_t w[WATCHERS];
    for (int i = 0; i < WATCHERS; i++) {
        snprintf(paths[i], sizeof(paths[i]), "%s/pressure%d.out", dir, i);
        w[i] = fork();
        if (w[i] == 0) {
            int fd = open(paths[i], O_WRONLY | O_CREAT | O_TRUNC, 0644);
            dup2(fd, 1);
            execl(WAYBILL_BIN, WAYBILL_BIN, "kv", "--port", port, "--json", "watch", "p/", "--from",
                  "0", "--max-events", max, (char *)NULL);
            _exit(127);
        }
    }
    /* All writes at once on one raw connection, answers read afterwards. */
    int fd = raw_connect();
    kv_buf_t b;
    kv_buf_init(&b);
    for (int i = 0; i < WRITES; i++) {
        char k[16], v[600];
        snprintf(k, sizeof(k), "p/%04d", i);
        memset(v, 'a' + i % 26, sizeof(v));
        kv_buf_reset(&b);
        kv_enc_key_value(&b, (kv_bytes_t){(const uint8_t *)k, strlen(k)},
                         (kv_bytes_t){(const uint8_t *)v, sizeof(v)});
        raw_send(fd, KV_PUT, (uint64_t)(2 * i + 1), b.p, b.len);
    }
    kv_buf_fini(&b);
    for (int i = 0; i < WATCHERS; i++) {
        int st;
        uint64_t end = now_ms() + 30000;
        pid_t r;
        while ((r = waitpid(w[i], &st, WNOHANG)) == 0 && now_ms() < end)
            usleep(20000);
        if (r == 0) {
            kill(w[i], SIGKILL);
            waitpid(w[i], &st, 0);
        }
        assert_int_equal(r, w[i]);
        FILE *f = fopen(paths[i], "r");
        static char line[2048];
        int next = 0;
        while (fgets(line, sizeof(line), f) != NULL) {
            int k;
            if (strncmp(line, "{\"synced\"", 9) == 0)
                continue;
            assert_int_equal(sscanf(line, "{\"op\":\"put\",\"key\":\"p/%d\"", &k), 1);
            assert_int_equal(k, next);
            next++;
        }
        fclose(f);
        assert_int_equal(next, WRITES);
    }
    close(fd);
    assert_int_equal(kv(out, sizeof(out), "get", "p/0299", NULL), 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_delete_list),
        cmocka_unit_test(test_list_pages),
        cmocka_unit_test(test_value_limits),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_flooder_held),
        cmocka_unit_test(test_watch_resumes),
        cmocka_unit_test(test_cursor),
        cmocka_unit_test(test_watchers_under_pressure),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
