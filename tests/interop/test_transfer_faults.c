/*
 * test_transfer_faults.c - `waybill send` and `waybill receive` (the real
 * command, a child process) against a misbehaving peer made in this
 * process from the wormhole and transit APIs, through an in-process
 * mailbox server on loopback:
 *
 *   bad-hash     the receiver's ack carries another sha256: the sender
 *                says "bad remote hash", exit 10
 *   no-hash      an ack without sha256: refused, exit 10
 *   ack-failed   {"ack": "failed: ..."}: "remote says", exit 8
 *   recv-gone    the receiver hangs up after 1 MiB: exit 10, "lost"
 *   too-much     the sender offers 1000 bytes and sends 3000: the receiver
 *                stops, exit 10, nothing under the name, no temporary file
 *   send-gone    the sender hangs up after 1 MiB of 8: exit 10 "Connection
 *                dropped", nothing left behind
 *   dir-escape   a directory offer whose zip holds "../escape.txt": the
 *                receiver refuses to unpack it (exit 8), tells the sender
 *                in its ack, and nothing is written outside or left behind
 *
 * Transit runs direct on 127.0.0.1 (the peer advertises only that).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "apps/mailbox/server.h"
#include "apps/wormhole/keys.h"
#include "apps/wormhole/transit.h"
#include "apps/wormhole/wormhole.h"
#include "runtime/error.h"
#include "runtime/rt.h"

#ifndef WAYBILL_BIN
#error "WAYBILL_BIN must name the waybill command"
#endif

typedef enum { BAD_HASH, NO_HASH, ACK_FAILED, RECV_GONE, TOO_MUCH, SEND_GONE, DIR_ESCAPE } fault_t;

/* The fake peer; everything below runs on the actor lane. */
static struct {
    wb_rt_t *rt;
    _Atomic uint16_t port;
    fault_t fault;
    int sender; /* the fake peer's role */
    uint64_t wh, tr;
    uint8_t key[32];
    char *peer_transit;
    uint64_t got, total;
    int acked, transit_open, hints_sent, answer_pending;
    const uint8_t *payload; /* sender: what to send */
    size_t payload_len;
    uint64_t offered;
    const char *dirname;
} P;

static void wsend(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    wb_wormhole_send(P.rt, P.wh, s, strlen(s));
    free(s);
}

static void tsend(const void *p, size_t n)
{
    wb_event_t *e = wb_event_new_copy(WB_EV_USER, p, n);
    if (e != NULL)
        wb_transit_send(P.rt, P.tr, e);
}

static void on_transit(uint64_t id, wb_transit_event_t *ev, void *user)
{
    switch (ev->type) {
    case WB_TRANSIT_EV_HINTS:
        wsend(json_pack("{s:o}", "transit", json_loads(ev->text, 0, NULL)));
        P.hints_sent = 1;
        if (P.answer_pending) { /* our transit goes before our answer, as a real receiver's */
            wsend(json_pack("{s:{s:s}}", "answer", "file_ack", "ok"));
            wb_transit_connect(P.rt, P.tr, P.peer_transit ? P.peer_transit : "{}");
        }
        if (P.sender) {
            if (P.fault == DIR_ESCAPE)
                wsend(json_pack("{s:{s:{s:s,s:s,s:I,s:i,s:i}}}", "offer", "directory", "mode",
                                "zipfile/deflated", "dirname", P.dirname, "zipsize",
                                (json_int_t)P.offered, "numbytes", 20, "numfiles", 1));
            else
                wsend(json_pack("{s:{s:{s:s,s:I}}}", "offer", "file", "filename", "fault.bin",
                                "filesize", (json_int_t)P.offered));
        }
        break;
    case WB_TRANSIT_EV_CONNECTED:
        if (P.sender) {
            size_t n = P.fault == SEND_GONE ? (1u << 20) : P.payload_len;
            for (size_t off = 0; off < n; off += 65536)
                tsend(P.payload + off, n - off < 65536 ? n - off : 65536);
            if (P.fault == SEND_GONE)
                wb_transit_close(P.rt, P.tr);
        }
        break;
    case WB_TRANSIT_EV_DATA:
        P.got += ev->len;
        wb_transit_consumed(P.rt, P.tr, ev->len);
        if (!P.sender && P.fault == RECV_GONE && P.got >= (1u << 20) && !P.acked) {
            P.acked = 1;
            wb_transit_close(P.rt, P.tr);
        } else if (!P.sender && P.got >= P.total && !P.acked) {
            P.acked = 1;
            const char *ack =
                P.fault == BAD_HASH
                    ? "{\"ack\":\"ok\",\"sha256\":"
                      "\"0000000000000000000000000000000000000000000000000000000000000000\"}"
                : P.fault == NO_HASH ? "{\"ack\":\"ok\"}"
                                     : "{\"ack\":\"failed: the disk is on fire\"}";
            tsend(ack, strlen(ack));
        }
        break;
    case WB_TRANSIT_EV_SENT:
        break;
    case WB_TRANSIT_EV_CLOSED:
        wb_wormhole_close(P.rt, P.wh);
        break;
    }
}

static void open_transit(void)
{
    if (P.transit_open)
        return;
    P.transit_open = 1;
    static const char *const lo[] = {"127.0.0.1"};
    wb_transit_config_t c;
    wb_transit_config_init(&c);
    c.sender = P.sender;
    wb_wh_transit_key(P.key, WB_WH_APPID_XFER, c.key);
    c.listen_host = "127.0.0.1";
    c.advertise = lo;
    c.nadvertise = 1;
    c.connect_timeout_ms = 20000;
    c.on_event = on_transit;
    if (wb_transit_open(P.rt, &c, &P.tr) != 0)
        fprintf(stderr, "fake peer: cannot open the transit\n");
}

static void on_wh(uint64_t id, const wh_event_t *ev, void *user)
{
    switch (ev->type) {
    case WH_EV_KEY:
        memcpy(P.key, ev->data, 32);
        break;
    case WH_EV_VERIFIER:
        if (P.sender)
            open_transit();
        break;
    case WH_EV_MESSAGE: {
        json_t *o = json_loadb((const char *)ev->data, ev->len, 0, NULL);
        json_t *t = json_object_get(o, "transit"), *offer = json_object_get(o, "offer"),
               *answer = json_object_get(o, "answer");
        if (t != NULL) {
            free(P.peer_transit);
            P.peer_transit = json_dumps(t, JSON_COMPACT);
            if (!P.sender)
                open_transit();
        } else if (offer != NULL && !P.sender) {
            P.total = (uint64_t)json_integer_value(
                json_object_get(json_object_get(offer, "file"), "filesize"));
            if (P.hints_sent) {
                wsend(json_pack("{s:{s:s}}", "answer", "file_ack", "ok"));
                wb_transit_connect(P.rt, P.tr, P.peer_transit ? P.peer_transit : "{}");
            } else {
                P.answer_pending = 1;
            }
        } else if (answer != NULL && P.sender) {
            wb_transit_connect(P.rt, P.tr, P.peer_transit ? P.peer_transit : "{}");
        }
        json_decref(o);
        break;
    }
    case WH_EV_CLOSED:
        wb_rt_request_stop(P.rt);
        break;
    default:
        break;
    }
}

static void on_listening(int status, uint16_t port, void *user)
{
    atomic_store(&P.port, port);
}

/* Start the server and the fake peer with code; returns the URL. */
static void start(fault_t fault, int peer_sender, const char *code, char *url, size_t cap)
{
    free(P.peer_transit);
    memset(&P, 0, sizeof(P));
    P.fault = fault;
    P.sender = peer_sender;
    static mb_server_config_t srv;
    mb_server_config_init(&srv);
    srv.host = "127.0.0.1";
    srv.port = 0;
    srv.channel_db = ":memory:";
    srv.on_listening = on_listening;
    assert_int_equal(wb_rt_new(&P.rt, NULL), 0);
    assert_int_equal(mb_server_setup(P.rt, &srv), 0);
    assert_int_equal(wb_rt_start(P.rt), 0);
    for (int i = 0; i < 500 && atomic_load(&P.port) == 0; i++)
        usleep(10000);
    assert_int_not_equal(atomic_load(&P.port), 0);
    snprintf(url, cap, "ws://127.0.0.1:%u/v1", atomic_load(&P.port));
    wb_wormhole_config_t wc;
    wb_wormhole_config_init(&wc);
    wc.url = url;
    wc.appid = WB_WH_APPID_XFER;
    wc.on_event = on_wh;
    char err[200];
    assert_int_equal(wb_wormhole_open(P.rt, &wc, &P.wh, err, sizeof(err)), 0);
    assert_int_equal(wb_wormhole_set_code(P.rt, P.wh, code, err, sizeof(err)), 0);
}

static void stop(void)
{
    wb_rt_stop(P.rt);
    wb_rt_free(P.rt);
    free(P.peer_transit);
    P.peer_transit = NULL;
}

/* Run `waybill ARGS...` in dir with a 60 s bound; its stderr into errbuf. */
static int run_waybill(const char *dir, char *errbuf, size_t cap, ...)
{
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)WAYBILL_BIN;
    va_list ap;
    va_start(ap, cap);
    char *a;
    while ((a = va_arg(ap, char *)) != NULL && n < 31)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    char errpath[512];
    snprintf(errpath, sizeof(errpath), "%s/../stderr.txt", dir);
    pid_t pid = fork();
    if (pid == 0) {
        if (chdir(dir) != 0)
            _exit(126);
        int fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int nul = open("/dev/null", O_RDWR);
        dup2(nul, 0);
        dup2(nul, 1);
        dup2(fd, 2);
        alarm(60);
        execv(argv[0], argv);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    FILE *f = fopen(errpath, "r");
    size_t got = f ? fread(errbuf, 1, cap - 1, f) : 0;
    errbuf[got] = 0;
    if (f)
        fclose(f);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static char *mkdirs(char *root, size_t cap)
{
    snprintf(root, cap, "/tmp/wb-faults-XXXXXX");
    assert_non_null(mkdtemp(root));
    char d[600];
    snprintf(d, sizeof(d), "%s/work", root);
    assert_int_equal(mkdir(d, 0700), 0);
    return root;
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    if (d)
        closedir(d);
    return n;
}

static void rmrf(const char *root)
{
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
}

/* Our sender against a faulty receiver. */
static void sender_case(fault_t fault, int want_status, const char *want_text)
{
    char root[64], url[64], err[8192], work[600], file[700];
    mkdirs(root, sizeof(root));
    snprintf(work, sizeof(work), "%s/work", root);
    snprintf(file, sizeof(file), "%s/data.bin", work);
    FILE *f = fopen(file, "w");
    static uint8_t buf[4u << 20];
    randombytes_buf(buf, sizeof(buf));
    fwrite(buf, 1, sizeof(buf), f);
    fclose(f);
    start(fault, 0, "7-fault-test", url, sizeof(url));
    int st = run_waybill(work, err, sizeof(err), "send", "--relay-url", url, "--no-listen",
                         "--transit-helper", "tcp:127.0.0.1:9", "--hide-progress", "--code",
                         "7-fault-test", file, (char *)NULL);
    stop();
    if (st != want_status || strstr(err, want_text) == NULL)
        fail_msg("status %d (want %d), stderr:\n%s\n(want \"%s\")", st, want_status, err,
                 want_text);
    rmrf(root);
}

static void test_bad_hash(void **s)
{
    sender_case(BAD_HASH, 10, "bad remote hash");
}

static void test_no_hash(void **s)
{
    sender_case(NO_HASH, 10, "sent no hash");
}

static void test_ack_failed(void **s)
{
    sender_case(ACK_FAILED, 8, "remote says");
}

static void test_recv_gone(void **s)
{
    sender_case(RECV_GONE, 10, "lost before it confirmed");
}

/* Our receiver against a faulty sender. */
static void receiver_case(fault_t fault, const uint8_t *payload, size_t len, uint64_t offered,
                          int want_status, const char *want_text)
{
    char root[64], url[64], err[8192], work[600];
    mkdirs(root, sizeof(root));
    snprintf(work, sizeof(work), "%s/work", root);
    start(fault, 1, "8-fault-test", url, sizeof(url));
    P.payload = payload;
    P.payload_len = len;
    P.offered = offered;
    P.dirname = "escape";
    int st = run_waybill(work, err, sizeof(err), "receive", "--relay-url", url, "--no-listen",
                         "--transit-helper", "tcp:127.0.0.1:9", "--hide-progress", "--accept-file",
                         "8-fault-test", (char *)NULL);
    stop();
    if (st != want_status || strstr(err, want_text) == NULL)
        fail_msg("status %d (want %d), stderr:\n%s\n(want \"%s\")", st, want_status, err,
                 want_text);
    /* nothing under the final name, no temporary file, nothing outside */
    if (count_entries(work) != 0) {
        char cmd[700];
        snprintf(cmd, sizeof(cmd), "ls -la '%s' >&2", work);
        (void)system(cmd);
        fail_msg("the receiver left files behind");
    }
    assert_int_equal(count_entries(root), 2); /* work/ and stderr.txt */
    rmrf(root);
}

static void test_too_much(void **s)
{
    static uint8_t buf[3000];
    randombytes_buf(buf, sizeof(buf));
    receiver_case(TOO_MUCH, buf, sizeof(buf), 1000, 10, "more bytes than it offered");
}

static void test_send_gone(void **s)
{
    static uint8_t buf[8u << 20];
    randombytes_buf(buf, sizeof(buf));
    receiver_case(SEND_GONE, buf, sizeof(buf), sizeof(buf), 10, "Connection dropped");
}

/* A zip with one entry "../escape.txt" (stored), made by Python's zipfile
 * here at test time would need python; this is its bytes, built below. */
static size_t escape_zip(uint8_t *out)
{
    const char *name = "../escape.txt", *data = "you should not see me";
    size_t nl = strlen(name), dl = strlen(data), k = 0;
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < dl; i++) {
        crc ^= (uint8_t)data[i];
        for (int j = 0; j < 8; j++)
            crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1)));
    }
    crc = ~crc;
#define U16(v) (out[k++] = (uint8_t)(v), out[k++] = (uint8_t)((v) >> 8))
#define U32(v) (U16((v)&0xffff), U16((uint32_t)(v) >> 16))
    U32(0x04034b50u), U16(20), U16(0), U16(0), U16(0), U16(0), U32(crc), U32(dl), U32(dl), U16(nl),
        U16(0);
    memcpy(out + k, name, nl), k += nl;
    memcpy(out + k, data, dl), k += dl;
    size_t cd = k;
    U32(0x02014b50u), U16(0x031e), U16(20), U16(0), U16(0), U16(0), U16(0), U32(crc), U32(dl),
        U32(dl), U16(nl), U16(0), U16(0), U16(0), U16(0), U32(0100644u << 16), U32(0);
    memcpy(out + k, name, nl), k += nl;
    size_t cdl = k - cd;
    U32(0x06054b50u), U16(0), U16(0), U16(1), U16(1), U32(cdl), U32(cd), U16(0);
#undef U16
#undef U32
    return k;
}

static void test_dir_escape(void **s)
{
    static uint8_t zip[512];
    size_t n = escape_zip(zip);
    receiver_case(DIR_ESCAPE, zip, n, n, 8, "the received directory");
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_hash),   cmocka_unit_test(test_no_hash),
        cmocka_unit_test(test_ack_failed), cmocka_unit_test(test_recv_gone),
        cmocka_unit_test(test_too_much),   cmocka_unit_test(test_send_gone),
        cmocka_unit_test(test_dir_escape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
