/*
 * cmd_wormhole.c - `waybill send` and `waybill receive`: Magic Wormhole
 * text, file and directory transfer, speaking with `wormhole` (Python) and
 * `wormhole-william` (Go) as their own CLIs do (shared notes, wormhole.md
 * sections 3 and 4).
 *
 *   text       phase 0 {"offer": {"message": TEXT}}, answered with
 *              {"answer": {"message_ack": "ok"}}.
 *   file, dir  phase 0 {"transit": ...} (apps/wormhole/transit.h), phase 1
 *              the offer ({"file": {filename, filesize}} or {"directory":
 *              {mode "zipfile/deflated", dirname, zipsize, numbytes,
 *              numfiles}}); the receiver answers with its transit and
 *              {"answer": {"file_ack": "ok"}} (or {"error": ...}); then the
 *              transit race, the bytes as records, and the receiver's final
 *              record {"ack": "ok", "sha256": HEX}, always sent and checked.
 *   several    `waybill send a b/ c` offers one directory holding them (a
 *              zip built by apps/wormhole/ziptree.h), which stock receivers
 *              unpack as any directory.
 *
 * Threads. The wormhole and the transit run in their actors; their events
 * are copied (data blobs handed over, not copied) into a queue this thread
 * waits on. This thread does the prompts, the disk and the hashing
 * (OpenSSL's SHA-256); the actor lane seals and opens records; the network
 * lane moves the bytes: a transfer keeps three threads busy. The sender
 * keeps at most SEND_WINDOW bytes handed to the transit and not yet passed
 * to the network lane; the receiver acknowledges what it has written, and
 * the transit stops reading above its window.
 *
 * Files are received under a temporary name in the target directory and
 * renamed when complete; directories are extracted into a temporary
 * directory and renamed; nothing is ever left under the final name when a
 * transfer fails.
 *
 * `waybill receive` without a code on a terminal reads it with libedit's
 * readline() and completes it on Tab (apps/wormhole/complete.h): readline
 * runs on the main thread; the completion callback asks the actor for the
 * nameplate list and waits a little for the answer, which on_event keeps
 * aside (the actor lane never waits for anyone).
 */
#define _GNU_SOURCE
#include <editline/readline.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <malloc.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "apps/cli/cli.h"
#include "apps/cli/progress.h"
#include "apps/wormhole/complete.h"
#include "apps/wormhole/keys.h"
#include "apps/wormhole/transit.h"
#include "apps/wormhole/wormhole.h"
#include "apps/wormhole/ziptree.h"
#include "dispatch/json.h"
#include "runtime/error.h"
#include "runtime/rt.h"
#include "sockets/tcp.h"

/* Exit statuses (docs/send-receive.md). */
enum {
    X_DONE = 0,
    X_ERROR = 1,       /* anything else: a protocol error, out of memory */
    X_USAGE = 2,       /* bad arguments */
    X_WRONG_CODE = 3,  /* key confirmation failed (scary) */
    X_CROWDED = 4,     /* the nameplate has two other clients */
    X_SERVER = 5,      /* the server sent an error, or an error in its welcome */
    X_UNREACHABLE = 6, /* no connection to the mailbox server */
    X_PEER_GONE = 7,   /* the peer stopped answering (--timeout after the key) */
    X_TRANSFER = 8,    /* the transfer was refused or abandoned (by the peer or here) */
    X_TIMEOUT = 9,     /* --timeout before the peer showed up */
    X_TRANSIT = 10,    /* the transfer failed on the way: no connection, connection
                          lost, a corrupt record, a wrong sha256 */
    X_LOCAL = 11,      /* a local file problem: target exists, no space, read or
                          write failed */
};

#define SEND_CHUNK  (1u << 20) /* bytes read from the file at a time */
#define SEND_WINDOW (8u << 20) /* bytes handed to the transit, not yet sent */
#define ACK_WAIT_MS 5000       /* receiver: wait for the sender to hang up */

#define WRONG_CODE_TEXT                                                                            \
    "ERROR:  Key confirmation failed. Either you or your correspondent\n"                          \
    "typed the code wrong, or a would-be man-in-the-middle attacker guessed\n"                     \
    "incorrectly. You could try again, giving both your correspondent and\n"                       \
    "the attacker another chance.\n"
#define WELCOME_TEXT                                                                               \
    "ERROR:  The relay server told us to signal an error, probably because\n"                      \
    "our version is too old to possibly work. The server said:\n"
#define CONNECT_TEXT "ERROR: We had a problem connecting to the relay server:\n"

/* ---- events from the actor lane ------------------------------------------------------ */

typedef struct qev_s {
    struct qev_s *next;
    int transit; /* tev, not ev */
    wh_event_t ev;
    wb_transit_event_t tev;
    char *text, *text2;
    uint8_t *data;
} qev_t;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    qev_t *head, *tail;
} q = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL};

/* The latest nameplate list (WH_EV_NAMEPLATES), for the completer; gen
 * counts the answers. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t gen;
    char **ids;
    size_t n;
} nps = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, NULL, 0};

static void nameplates_free(char **ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
}

static void on_nameplates(const char *text)
{
    json_t *a = json_loads(text, 0, NULL);
    size_t n = json_is_array(a) ? json_array_size(a) : 0, k = 0;
    char **ids = calloc(n + 1, sizeof(*ids));
    for (size_t i = 0; ids != NULL && i < n; i++) {
        const char *v = json_string_value(json_array_get(a, i));
        if (v != NULL && (ids[k] = strdup(v)) != NULL)
            k++;
    }
    json_decref(a);
    pthread_mutex_lock(&nps.mu);
    if (ids != NULL) {
        nameplates_free(nps.ids, nps.n);
        nps.ids = ids;
        nps.n = k;
    }
    nps.gen++;
    pthread_cond_broadcast(&nps.cv);
    pthread_mutex_unlock(&nps.mu);
}

static void enqueue(qev_t *e)
{
    pthread_mutex_lock(&q.mu);
    if (q.tail)
        q.tail->next = e;
    else
        q.head = e;
    q.tail = e;
    pthread_cond_signal(&q.cv);
    pthread_mutex_unlock(&q.mu);
}

static void on_event(uint64_t id, const wh_event_t *ev, void *user)
{
    if (ev->type == WH_EV_NAMEPLATES) {
        if (ev->text != NULL)
            on_nameplates(ev->text);
        return;
    }
    qev_t *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return;
    e->ev = *ev;
    e->text = ev->text ? strdup(ev->text) : NULL;
    e->ev.text = e->text;
    e->ev.text2 = NULL;
    if (ev->data != NULL) {
        e->data = malloc(ev->len + 1);
        if (e->data != NULL) {
            memcpy(e->data, ev->data, ev->len);
            e->data[ev->len] = 0;
        }
        e->ev.data = e->data;
    }
    enqueue(e);
}

/* Transit events: data blobs are taken, not copied. */
static void on_transit_event(uint64_t id, wb_transit_event_t *ev, void *user)
{
    qev_t *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return; /* a lost DATA shows as a short count, a lost CLOSED as a hang: both unlikely */
    e->transit = 1;
    e->tev = *ev;
    e->text = ev->text ? strdup(ev->text) : NULL;
    e->text2 = ev->text2 ? strdup(ev->text2) : NULL;
    e->tev.text = e->text;
    e->tev.text2 = e->text2;
    ev->blob = NULL;
    enqueue(e);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The next event, or NULL when deadline_ms (wall clock, 0: none) passed. */
static qev_t *next_event(uint64_t deadline_ms)
{
    pthread_mutex_lock(&q.mu);
    while (q.head == NULL) {
        if (deadline_ms == 0) {
            pthread_cond_wait(&q.cv, &q.mu);
            continue;
        }
        struct timespec ts = {(time_t)(deadline_ms / 1000), (long)(deadline_ms % 1000) * 1000000};
        if (pthread_cond_timedwait(&q.cv, &q.mu, &ts) == ETIMEDOUT && q.head == NULL) {
            pthread_mutex_unlock(&q.mu);
            return NULL;
        }
    }
    qev_t *e = q.head;
    q.head = e->next;
    if (q.head == NULL)
        q.tail = NULL;
    pthread_mutex_unlock(&q.mu);
    return e;
}

static void qev_free(qev_t *e)
{
    free(e->text);
    free(e->text2);
    if (e->data != NULL)
        sodium_memzero(e->data, e->ev.len);
    free(e->data);
    if (e->tev.blob != NULL)
        wb_event_free(e->tev.blob);
    free(e);
}

/* ---- temporary files, removed on ^C too ------------------------------------------------- */

/* Paths this process made and must not leave behind: a file being received,
 * a zip being sent or received. The signal handler unlinks them. */
static char tmp_paths[3][PATH_MAX];

static void tmp_forget(int slot)
{
    tmp_paths[slot][0] = 0;
}

static void tmp_remove(int slot)
{
    if (tmp_paths[slot][0] != 0)
        unlink(tmp_paths[slot]);
    tmp_forget(slot);
}

enum { TMP_RECV = 0, TMP_ZIP = 1, TMP_ZIPDIR = 2 };

static void on_signal(int sig)
{
    for (int i = 0; i < 2; i++)
        if (tmp_paths[i][0] != 0)
            unlink(tmp_paths[i]);
    if (tmp_paths[TMP_ZIPDIR][0] != 0)
        rmdir(tmp_paths[TMP_ZIPDIR]);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* ---- shared ---------------------------------------------------------------------------- */

typedef struct {
    int sender;
    const char *relay_url, *appid, *code, *text;
    unsigned code_length;
    int zeromode, verify;
    long timeout_s;
    /* files */
    char **paths;
    size_t npaths;
    int no_listen, hide_progress, json, ignore_unsendable, accept_file;
    const char *transit_helper, *output_file;
} opts_t;

typedef struct {
    opts_t *o;
    wb_rt_t *rt;
    uint64_t id;
    int have_key, have_verifier, closing, exit_code;
    char *err; /* what to print when CLOSED comes, decided earlier */
    uint8_t key[WB_WH_KEY_LEN];
    int have_key_bytes;
    /* transit */
    uint64_t tid;
    int transit_open, transit_done, hints_sent, answer_pending, answered, connected;
    char *peer_transit; /* the peer's "transit" value, JSON */
    /* what is sent or received */
    int is_file, is_dir;
    char name[PATH_MAX]; /* offered name (basename or dirname) */
    uint64_t total, numbytes, numfiles;
    int fd;
    EVP_MD_CTX *md;
    char hash_hex[65];
    wb_progress_t prog;
    uint64_t last_json_ns;
    /* sender */
    uint64_t queued, sent;
    int reading_done, waiting_ack, got_ack;
    char zip_dir[PATH_MAX];
    /* receiver */
    uint64_t received;
    int complete;
    int await_hangup;         /* the ack is queued: let the sender hang up first */
    uint64_t hangup_deadline; /* ... until then (set once connected) */
    char final[PATH_MAX], tmp[PATH_MAX];
} run_t;

/* humanize.naturalsize: "1 Byte", "14 Bytes", "1.0 kB", "100.0 kB". */
static void naturalsize(uint64_t n, char *out, size_t cap)
{
    static const char *suffix[] = {"kB", "MB", "GB", "TB", "PB"};
    if (n == 1) {
        snprintf(out, cap, "1 Byte");
        return;
    }
    if (n < 1000) {
        snprintf(out, cap, "%llu Bytes", (unsigned long long)n);
        return;
    }
    double unit = 1000.0;
    for (int i = 0; i < 5; i++) {
        unit *= 1000.0;
        if ((double)n < unit || i == 4) {
            snprintf(out, cap, "%.1f %s", 1000.0 * (double)n / unit, suffix[i]);
            return;
        }
    }
}

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            n++;
    return n;
}

/* One --json event line on stdout (when --json). o is taken. */
static void jev(run_t *r, json_t *o)
{
    if (r->o->json && o != NULL) {
        char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
        if (s != NULL) {
            fputs(s, stdout);
            fputc('\n', stdout);
            fflush(stdout);
            free(s);
        }
    }
    json_decref(o);
}

static int send_json(run_t *r, json_t *o)
{
    size_t len;
    char *s = o ? wb_json_encode(o, &len) : NULL;
    json_decref(o);
    if (s == NULL)
        return WB_ENOMEM;
    int rc = wb_wormhole_send(r->rt, r->id, s, len);
    free(s);
    return rc;
}

static void fail_later(run_t *r, int code, const char *msg)
{
    if (r->err == NULL) {
        r->exit_code = code;
        r->err = strdup(msg);
    }
}

static void start_close(run_t *r)
{
    if (!r->closing) {
        r->closing = 1;
        wb_wormhole_close(r->rt, r->id);
    }
    if (r->transit_open && !r->transit_done && !r->await_hangup)
        wb_transit_close(r->rt, r->tid);
}

/* The exit status for the end of the wormhole; what went wrong goes to out. */
static int finish(run_t *r, const wh_event_t *ev, FILE *out)
{
    if (r->err != NULL) {
        fputs(r->err, out);
        return r->exit_code;
    }
    switch (ev->result) {
    case WH_RESULT_HAPPY:
        return r->exit_code;
    case WH_RESULT_SCARY:
        fputs(WRONG_CODE_TEXT, out);
        return X_WRONG_CODE;
    case WH_RESULT_ERRORY:
        if (ev->text != NULL && strcmp(ev->text, "crowded") == 0) {
            fprintf(out, "ERROR: crowded: two other clients are already using this code's "
                         "nameplate.\nGet a new code and try again.\n");
            return X_CROWDED;
        }
        fprintf(out, "ERROR: the relay server reported an error: %s\n", ev->text ? ev->text : "?");
        return X_SERVER;
    case WH_RESULT_UNWELCOME:
        fprintf(out, "%s\n%s\n", WELCOME_TEXT, ev->text ? ev->text : "");
        return X_SERVER;
    case WH_RESULT_UNREACHABLE:
        fprintf(out, "%s(relay URL was %s)\n%s\n", CONNECT_TEXT, r->o->relay_url,
                ev->text ? ev->text : "");
        return X_UNREACHABLE;
    case WH_RESULT_LONELY:
        if (r->complete || r->got_ack)
            return r->exit_code; /* the transfer was done; the mailbox close raced */
        fprintf(out, "ERROR: closed before the other side connected\n");
        return X_ERROR;
    case WH_RESULT_PROTOCOL:
        fprintf(out, "ERROR: %s\n", ev->text ? ev->text : "protocol error");
        return X_ERROR;
    }
    return X_ERROR;
}

static int read_line(char *buf, size_t cap)
{
    if (fgets(buf, (int)cap, stdin) == NULL)
        return -1;
    buf[strcspn(buf, "\r\n")] = 0;
    return 0;
}

/* The text messages we send are bounded: the mailbox servers take a
 * message of 1 MiB (ours by default) and the hex body doubles it. */
#define MAX_STDIN_TEXT (1u << 20)

/* All of stdin as a NUL-terminated string; NULL with *why set when it
 * cannot be read, is larger than MAX_STDIN_TEXT or holds a NUL byte (which
 * would silently cut the text short). */
static char *read_all_stdin(const char **why)
{
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    *why = "out of memory";
    while (buf != NULL) {
        if (len + 1 >= cap) {
            if (cap > MAX_STDIN_TEXT) {
                *why = "the text is larger than 1 MiB (send a file instead)";
                break;
            }
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL)
                break;
            buf = nb;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, stdin);
        len += n;
        if (n == 0) {
            if (ferror(stdin)) {
                *why = "cannot read stdin";
                break;
            }
            if (len > MAX_STDIN_TEXT) {
                *why = "the text is larger than 1 MiB (send a file instead)";
                break;
            }
            if (memchr(buf, 0, len) != NULL) {
                *why = "the text holds a NUL byte";
                break;
            }
            buf[len] = 0;
            return buf;
        }
    }
    free(buf);
    return NULL;
}

/* ---- interactive code entry ------------------------------------------------------------ */

#define LIST_WAIT_MS 1000 /* how long a Tab waits for the server's list */

/* readline's callbacks take no context: the one code being typed. */
static struct {
    wb_rt_t *rt;
    uint64_t id;
    wb_wh_entry_t entry;
    wb_wh_completions_t c;
    int used;
} ent;

/* Ask the actor for the nameplates and wait (main thread) up to
 * LIST_WAIT_MS for its answer; then a copy of the latest list, fresh or
 * not. */
static char **fetch_nameplates(size_t *n)
{
    pthread_mutex_lock(&nps.mu);
    uint64_t gen = nps.gen;
    pthread_mutex_unlock(&nps.mu);
    int posted = wb_wormhole_list(ent.rt, ent.id) == 0;
    uint64_t deadline = now_ms() + LIST_WAIT_MS;
    struct timespec ts = {(time_t)(deadline / 1000), (long)(deadline % 1000) * 1000000};
    pthread_mutex_lock(&nps.mu);
    while (posted && nps.gen == gen)
        if (pthread_cond_timedwait(&nps.cv, &nps.mu, &ts) == ETIMEDOUT)
            break;
    char **ids = calloc(nps.n + 1, sizeof(*ids));
    size_t k = 0;
    for (size_t i = 0; ids != NULL && i < nps.n; i++)
        if ((ids[k] = strdup(nps.ids[i])) != NULL)
            k++;
    pthread_mutex_unlock(&nps.mu);
    *n = k;
    return ids;
}

static char *completion_item(const char *text, int state)
{
    return (size_t)state < ent.c.n ? strdup(ent.c.items[state]) : NULL;
}

static char **complete_code(const char *text, int start, int end)
{
    rl_attempted_completion_over = 1; /* never file names */
    ent.used = 1;
    wb_wh_completions_fini(&ent.c);
    size_t n = 0;
    char **ids = strchr(text, '-') == NULL ? fetch_nameplates(&n) : NULL;
    char commit[WB_WH_NAMEPLATE_CAP], err[160];
    int rc = wb_wh_entry_complete(&ent.entry, text, strlen(text), (const char *const *)ids, n,
                                  &ent.c, commit, sizeof(commit), err, sizeof(err));
    nameplates_free(ids, n);
    if (rc != 0)
        return NULL; /* a beep; Enter says what is wrong */
    if (commit[0] != 0)
        wb_wormhole_input_nameplate(ent.rt, ent.id, commit);
    return ent.c.n > 0 ? rl_completion_matches(text, completion_item) : NULL;
}

/* The code, typed on a terminal with Tab completion, handed to the wormhole
 * in two steps. Returns 0; -1 with the message in err. */
static int input_code_tty(run_t *r, char *err, size_t errlen)
{
    ent.rt = r->rt;
    ent.id = r->id;
    wb_wh_entry_init(&ent.entry);
    ent.used = 0;
    rl_readline_name = "waybill";
    rl_instream = stdin;
    rl_outstream = stderr; /* stdout carries only the message */
    rl_attempted_completion_function = complete_code;
    rl_basic_word_break_characters = " \t\n";
    rl_completer_word_break_characters = " \t\n";
    rl_completion_append_character = 0;
    wb_wormhole_list(r->rt, r->id); /* a list ready for the first Tab */
    char *line = readline("Enter receive wormhole code: ");
    wb_wh_completions_fini(&ent.c);
    rl_attempted_completion_function = NULL;
    if (line == NULL || line[strspn(line, " \t")] == 0) {
        free(line);
        snprintf(err, errlen, "\nERROR: no code given\n");
        return -1;
    }
    char *code = line + strspn(line, " \t");
    size_t len = strlen(code);
    while (len > 0 && (code[len - 1] == ' ' || code[len - 1] == '\t'))
        code[--len] = 0;
    if (!ent.used)
        fprintf(stderr, " (note: you can use <Tab> to complete words)\n");
    char commit[WB_WH_NAMEPLATE_CAP], why[200];
    int rc = wb_wh_entry_finish(&ent.entry, code, len, commit, sizeof(commit), why, sizeof(why));
    if (rc == 0 && commit[0] != 0)
        rc = wb_wormhole_input_nameplate(r->rt, r->id, commit);
    if (rc == 0)
        rc = wb_wormhole_input_finish(r->rt, r->id, code, why, sizeof(why));
    free(line);
    if (rc != 0) {
        snprintf(err, errlen, "ERROR: %s\n",
                 rc == WB_EINVAL || rc == WB_ESTATE ? why : wb_strerror(rc));
        return -1;
    }
    return 0;
}

/* ---- hashing --------------------------------------------------------------------------- */

static int hash_start(run_t *r)
{
    r->md = EVP_MD_CTX_new();
    return r->md != NULL && EVP_DigestInit_ex(r->md, EVP_sha256(), NULL) == 1 ? 0 : WB_ENOMEM;
}

static void hash_add(run_t *r, const void *p, size_t n)
{
    EVP_DigestUpdate(r->md, p, n);
}

static void hash_end(run_t *r)
{
    uint8_t d[32];
    unsigned dl = 0;
    EVP_DigestFinal_ex(r->md, d, &dl);
    for (int i = 0; i < 32; i++)
        snprintf(r->hash_hex + 2 * i, 3, "%02x", d[i]);
}

/* ---- the sender's source ---------------------------------------------------------------- */

static void zip_warn(const char *msg, void *user)
{
    fprintf(stderr, "%s (ignoring error)\n", msg);
}

/* The name a path is offered under: its basename, trailing slashes and
 * "." resolved. */
static void offered_name(const char *path, char *out, size_t cap)
{
    char real[PATH_MAX], copy[PATH_MAX];
    const char *p = path;
    if (realpath(path, real) != NULL)
        p = real;
    snprintf(copy, sizeof(copy), "%s", p);
    snprintf(out, cap, "%s", basename(copy));
}

/* What `waybill send PATH...` offers: one regular file as a file; one
 * directory, or several paths, as a directory (a zip in a private temporary
 * directory). Returns 0 or an exit status, having said why. */
static int prepare_source(run_t *r)
{
    opts_t *o = r->o;
    struct stat st;
    char sz[32];
    if (o->npaths == 1 && stat(o->paths[0], &st) == 0 && S_ISREG(st.st_mode)) {
        r->fd = open(o->paths[0], O_RDONLY | O_CLOEXEC);
        if (r->fd < 0) {
            fprintf(stderr, "ERROR: %s: %s\n", o->paths[0], strerror(errno));
            return X_LOCAL;
        }
        r->is_file = 1;
        r->total = (uint64_t)st.st_size;
        offered_name(o->paths[0], r->name, sizeof(r->name));
        naturalsize(r->total, sz, sizeof(sz));
        fprintf(stderr, "Sending %s file named '%s'\n", sz, r->name);
        return 0;
    }
    for (size_t i = 0; i < o->npaths; i++) {
        if (stat(o->paths[i], &st) != 0) {
            fprintf(stderr, "ERROR: Cannot send: no file/directory named '%s'\n", o->paths[i]);
            return X_LOCAL;
        }
    }
    const char *tmpdir = getenv("TMPDIR");
    snprintf(r->zip_dir, sizeof(r->zip_dir), "%s/waybill-send-XXXXXX",
             tmpdir && *tmpdir ? tmpdir : "/tmp");
    if (mkdtemp(r->zip_dir) == NULL) {
        fprintf(stderr, "ERROR: cannot make a temporary directory: %s\n", strerror(errno));
        r->zip_dir[0] = 0;
        return X_LOCAL;
    }
    snprintf(tmp_paths[TMP_ZIPDIR], PATH_MAX, "%s", r->zip_dir);
    snprintf(tmp_paths[TMP_ZIP], PATH_MAX, "%.3900s/send.zip", r->zip_dir);
    fprintf(stderr, "Building zipfile..\n");
    wb_ziptree_info_t info;
    char err[512];
    int rc = wb_ziptree_build((const char *const *)o->paths, o->npaths, tmp_paths[TMP_ZIP],
                              o->ignore_unsendable, zip_warn, NULL, NULL, &info, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "ERROR: %s\n", err);
        return rc == WB_EINVAL ? X_USAGE : X_LOCAL;
    }
    r->fd = open(tmp_paths[TMP_ZIP], O_RDONLY | O_CLOEXEC);
    /* the open descriptor is all we need: the name goes at once */
    tmp_remove(TMP_ZIP);
    rmdir(r->zip_dir);
    tmp_forget(TMP_ZIPDIR);
    if (r->fd < 0) {
        fprintf(stderr, "ERROR: cannot reopen the zipfile: %s\n", strerror(errno));
        return X_LOCAL;
    }
    r->is_dir = 1;
    r->total = info.zipsize;
    r->numbytes = info.numbytes;
    r->numfiles = info.numfiles;
    if (o->npaths == 1) {
        offered_name(o->paths[0], r->name, sizeof(r->name));
    } else {
        char first[PATH_MAX];
        offered_name(o->paths[0], first, sizeof(first));
        snprintf(r->name, sizeof(r->name), "%.200s-and-%zu-more", first, o->npaths - 1);
    }
    naturalsize(r->total, sz, sizeof(sz));
    fprintf(stderr, "Sending directory (%s compressed) named '%s'\n", sz, r->name);
    return 0;
}

/* ---- transit ----------------------------------------------------------------------------- */

static int open_transit(run_t *r)
{
    if (r->transit_open)
        return 0;
    wb_transit_relay_t relay;
    char err[300];
    const char *helper = r->o->transit_helper;
    wb_transit_config_t c;
    wb_transit_config_init(&c);
    c.sender = r->o->sender;
    wb_wh_transit_key(r->key, WB_WH_APPID_XFER, c.key);
    c.no_listen = r->o->no_listen;
    if (helper != NULL && helper[0] != 0) {
        if (wb_transit_parse_helper(helper, &relay, err, sizeof(err)) != 0) {
            sodium_memzero(c.key, sizeof(c.key));
            fail_later(r, X_USAGE, "ERROR: bad --transit-helper\n");
            return -1;
        }
        c.relays = &relay;
        c.nrelays = 1;
    }
    c.on_event = on_transit_event;
    int rc = wb_transit_open(r->rt, &c, &r->tid);
    sodium_memzero(c.key, sizeof(c.key));
    if (rc != 0) {
        fail_later(r, X_ERROR, "ERROR: cannot start the transit\n");
        return -1;
    }
    r->transit_open = 1;
    return 0;
}

static void send_offer(run_t *r)
{
    json_t *offer;
    if (r->is_file)
        offer = json_pack("{s:{s:{s:s,s:I}}}", "offer", "file", "filename", r->name, "filesize",
                          (json_int_t)r->total);
    else
        offer = json_pack("{s:{s:{s:s,s:s,s:I,s:I,s:I}}}", "offer", "directory", "mode",
                          "zipfile/deflated", "dirname", r->name, "zipsize", (json_int_t)r->total,
                          "numbytes", (json_int_t)r->numbytes, "numfiles", (json_int_t)r->numfiles);
    send_json(r, offer);
}

static void send_answer_and_connect(run_t *r)
{
    r->answer_pending = 0;
    r->answered = 1;
    send_json(r, json_pack("{s:{s:s}}", "answer", "file_ack", "ok"));
    wb_transit_connect(r->rt, r->tid, r->peer_transit ? r->peer_transit : "{}");
}

static void progress_json(run_t *r, int force)
{
    uint64_t now = wb_progress_now_ns();
    if (!r->o->json || (!force && now - r->last_json_ns < 500000000u))
        return;
    r->last_json_ns = now;
    jev(r, json_pack("{s:s,s:I,s:I,s:f}", "event", "progress", "bytes", (json_int_t)r->prog.done,
                     "total", (json_int_t)r->total, "rate", wb_progress_rate(&r->prog)));
}

/* Sender: read, hash and hand over chunks while the window has room. */
static void pump(run_t *r)
{
    while (!r->reading_done && r->queued - r->sent < SEND_WINDOW && r->err == NULL) {
        uint64_t left = r->total - r->queued;
        size_t want = left < SEND_CHUNK ? (size_t)left : SEND_CHUNK;
        if (want == 0) {
            r->reading_done = 1;
            hash_end(r);
            break;
        }
        wb_event_t *e = wb_event_new(WB_EV_USER, want);
        if (e == NULL) {
            fail_later(r, X_ERROR, "ERROR: out of memory\n");
            start_close(r);
            return;
        }
        size_t got = 0;
        while (got < want) {
            ssize_t n = read(r->fd, (uint8_t *)e->data + got, want - got);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                char msg[600];
                snprintf(msg, sizeof(msg), "ERROR: reading '%.300s': %s\n", r->name,
                         n < 0 ? strerror(errno) : "the file shrank while being sent");
                wb_event_free(e);
                fail_later(r, X_LOCAL, msg);
                start_close(r);
                return;
            }
            got += (size_t)n;
        }
        hash_add(r, e->data, want);
        r->queued += want;
        if (wb_transit_send(r->rt, r->tid, e) != 0)
            return; /* CLOSED follows */
    }
}

static void receive_complete(run_t *r);

static void on_transit_connected(run_t *r, const wb_transit_event_t *ev)
{
    r->connected = 1;
    fprintf(stderr, "%s (%s %s)..\n", r->o->sender ? "Sending" : "Receiving", ev->text,
            ev->text2 ? ev->text2 : "");
    jev(r, json_pack("{s:s,s:s,s:s}", "event", "connected", "via", ev->text, "peer",
                     ev->text2 ? ev->text2 : ""));
    if (r->await_hangup && r->hangup_deadline == 0)
        r->hangup_deadline = now_ms() + ACK_WAIT_MS;
    wb_progress_start(&r->prog, stderr, !r->o->hide_progress && !r->o->json && isatty(2), r->total);
    progress_json(r, 1);
    if (!r->o->sender && r->total == 0 && !r->complete)
        receive_complete(r); /* no byte will come; the ack goes now */
    if (r->o->sender) {
        pump(r);
        if (r->reading_done && r->sent == r->total && !r->waiting_ack) {
            wb_progress_finish(&r->prog);
            fprintf(stderr, "File sent.. waiting for confirmation\n");
            r->waiting_ack = 1;
        }
    }
}

/* Receiver: every byte is in. Rename (or extract), then the ack. */
static void receive_complete(run_t *r)
{
    wb_progress_finish(&r->prog);
    progress_json(r, 1);
    hash_end(r);
    int fd = r->fd;
    r->fd = -1;
    const char *ack = "ok";
    char msg[PATH_MAX + 600];
    if (close(fd) != 0) {
        snprintf(msg, sizeof(msg), "ERROR: writing '%s': %s\n", r->tmp, strerror(errno));
        tmp_remove(TMP_RECV);
        fail_later(r, X_LOCAL, msg);
        ack = "failed: the receiver could not write the file";
    } else if (r->is_file) {
        if (rename(r->tmp, r->final) != 0) {
            snprintf(msg, sizeof(msg), "ERROR: cannot rename '%.1000s' to '%.1000s': %s\n", r->tmp,
                     r->final, strerror(errno));
            tmp_remove(TMP_RECV);
            fail_later(r, X_LOCAL, msg);
            ack = "failed: the receiver could not write the file";
        } else {
            tmp_forget(TMP_RECV);
            fprintf(stderr, "Received file written to %s\n", r->name);
        }
    } else {
        /* extract into a fresh directory beside the target, then rename */
        char tdir[PATH_MAX + 32], err[600];
        snprintf(tdir, sizeof(tdir), "%s.waybill-%08x", r->final, randombytes_random());
        uint64_t max_bytes = r->numbytes + (1u << 20);
        uint64_t max_files = r->numfiles * 2 + 1000;
        int rc = wb_ziptree_extract(r->tmp, tdir, max_bytes, max_files, err, sizeof(err));
        tmp_remove(TMP_RECV);
        if (rc == 0 && rename(tdir, r->final) != 0) {
            snprintf(err, sizeof(err), "cannot rename '%.200s' to '%.200s': %s", tdir, r->final,
                     strerror(errno));
            rc = WB_EIO;
        }
        if (rc != 0) {
            snprintf(msg, sizeof(msg), "ERROR: the received directory: %s\n", err);
            fail_later(
                r, rc == WB_EPROTO || rc == WB_ECORRUPT || rc == WB_ETOOBIG ? X_TRANSFER : X_LOCAL,
                msg);
            ack = "failed: the receiver could not unpack the directory";
        } else {
            fprintf(stderr, "Received files written to %s/\n", r->name);
        }
    }
    /* The ack record; the sender hangs up when it has it. */
    json_t *a = json_pack("{s:s,s:s}", "ack", ack, "sha256", r->hash_hex);
    size_t len;
    char *s = a ? wb_json_encode(a, &len) : NULL;
    json_decref(a);
    wb_event_t *e = s ? wb_event_new_copy(WB_EV_USER, s, len) : NULL;
    free(s);
    if (e != NULL)
        wb_transit_send(r->rt, r->tid, e);
    r->complete = 1;
    r->await_hangup = 1;
    if (r->connected)
        r->hangup_deadline = now_ms() + ACK_WAIT_MS;
    if (r->err == NULL)
        jev(r, json_pack("{s:s,s:s,s:I,s:s}", "event", "done", "path", r->name, "bytes",
                         (json_int_t)r->received, "sha256", r->hash_hex));
    start_close(r);
}

static void on_transit_data(run_t *r, wb_transit_event_t *ev)
{
    const uint8_t *p = (const uint8_t *)ev->blob->data + ev->off;
    if (r->o->sender) { /* the receiver's ack */
        json_t *o = json_loadb((const char *)p, ev->len, 0, NULL);
        const char *ack = json_string_value(json_object_get(o, "ack"));
        const char *sha = json_string_value(json_object_get(o, "sha256"));
        char msg[700];
        if (!r->reading_done || r->sent < r->total || r->got_ack) {
            fail_later(r, X_TRANSIT, "ERROR: the receiver sent a record before the end\n");
        } else if (ack == NULL || strcmp(ack, "ok") != 0) {
            char *s = wb_json_encode(o ? o : json_null(), &(size_t){0});
            snprintf(msg, sizeof(msg), "TransferError: Transfer failed (remote says: %.500s)\n",
                     s ? s : "?");
            free(s);
            fail_later(r, X_TRANSFER, msg);
        } else if (sha == NULL || strcasecmp(sha, r->hash_hex) != 0) {
            fail_later(r, X_TRANSIT,
                       sha == NULL ? "TransferError: Transfer failed (the receiver sent no hash)\n"
                                   : "TransferError: Transfer failed (bad remote hash)\n");
        } else {
            r->got_ack = 1;
            fprintf(stderr, "Confirmation received. Transfer complete.\n");
            jev(r, json_pack("{s:s,s:s,s:I,s:s}", "event", "done", "path", r->name, "bytes",
                             (json_int_t)r->total, "sha256", r->hash_hex));
        }
        json_decref(o);
        start_close(r);
        return;
    }
    if (r->complete || r->fd < 0)
        return; /* after the end: ignored */
    if (r->received + ev->len > r->total) {
        fail_later(r, X_TRANSIT, "ERROR: the sender sent more bytes than it offered\n");
        tmp_remove(TMP_RECV);
        start_close(r);
        return;
    }
    size_t done = 0;
    while (done < ev->len) {
        ssize_t n = write(r->fd, p + done, ev->len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            char msg[PATH_MAX + 200];
            snprintf(msg, sizeof(msg), "ERROR: writing '%s': %s\n", r->tmp, strerror(errno));
            close(r->fd);
            r->fd = -1;
            tmp_remove(TMP_RECV);
            fail_later(r, X_LOCAL, msg);
            send_json(r, json_pack("{s:s}", "error", "the receiver could not write the file"));
            start_close(r);
            return;
        }
        done += (size_t)n;
    }
    hash_add(r, p, ev->len);
    r->received += ev->len;
    wb_transit_consumed(r->rt, r->tid, ev->len);
    wb_progress_add(&r->prog, ev->len);
    progress_json(r, 0);
    if (r->received == r->total)
        receive_complete(r);
}

static void on_transit_closed(run_t *r, const wb_transit_event_t *ev)
{
    r->transit_done = 1;
    char msg[1600];
    if (r->o->sender && r->transit_open && !r->got_ack && r->connected && r->err == NULL) {
        snprintf(msg, sizeof(msg),
                 "\nERROR: the connection to the receiver was lost before it confirmed the "
                 "transfer (%s)\n",
                 ev->text ? ev->text : "closed");
        fail_later(r, X_TRANSIT, msg);
    } else if (!r->o->sender && (r->is_file || r->is_dir) && r->answered && !r->complete &&
               r->err == NULL) {
        if (r->fd >= 0) {
            close(r->fd);
            r->fd = -1;
        }
        tmp_remove(TMP_RECV);
        if (ev->status == WB_ECLOSED || ev->status == WB_EIO)
            snprintf(msg, sizeof(msg),
                     "\nERROR: Connection dropped before full file received\n"
                     "got %llu bytes, wanted %llu (%s)\n",
                     (unsigned long long)r->received, (unsigned long long)r->total,
                     ev->text ? ev->text : "closed");
        else /* a corrupt, out-of-order or oversized record, ... */
            snprintf(msg, sizeof(msg),
                     "\nERROR: the transfer failed after %llu of %llu bytes: %s\n",
                     (unsigned long long)r->received, (unsigned long long)r->total,
                     ev->text ? ev->text : "transit error");
        fail_later(r, X_TRANSIT, msg);
    } else if (!r->connected && ev->status != 0 && ev->status != WB_ECANCELED && r->err == NULL &&
               r->answered) {
        snprintf(msg, sizeof(msg), "ERROR: %s\n", ev->text ? ev->text : "transit failed");
        fail_later(r, X_TRANSIT, msg);
    }
    start_close(r);
}

/* ---- the receiver's decision --------------------------------------------------------------- */

static int ask_yes(const char *prompt, int default_yes)
{
    char line[64];
    fprintf(stderr, "%s", prompt);
    fflush(stderr);
    if (fgets(line, sizeof(line), stdin) == NULL)
        return 0;
    line[strcspn(line, "\r\n")] = 0;
    if (line[0] == 0)
        return default_yes;
    return line[0] == 'y' || line[0] == 'Y';
}

static void reject(run_t *r, int code, const char *msg, const char *why)
{
    send_json(r, json_pack("{s:s}", "error", why));
    fail_later(r, code, msg);
    start_close(r);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

/* What -o with --accept-file replaces: a file, or a directory with
 * everything in it (links are removed, not followed). */
static int remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return 0;
    if (!S_ISDIR(st.st_mode))
        return unlink(path);
    return nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS);
}

/* A file or directory offer: decide, then answer (once our transit hints
 * are out) and start the race. */
static void on_file_offer(run_t *r, json_t *offer)
{
    json_t *f = json_object_get(offer, "file"), *d = json_object_get(offer, "directory");
    const char *name;
    char msg[PATH_MAX * 2 + 200], sz[32], sz2[32];
    if (f != NULL) {
        name = json_string_value(json_object_get(f, "filename"));
        json_t *n = json_object_get(f, "filesize");
        if (name == NULL || !json_is_integer(n) || json_integer_value(n) < 0) {
            reject(r, X_TRANSFER, "ERROR: the sender's file offer is malformed\n",
                   "transfer rejected");
            return;
        }
        r->is_file = 1;
        r->total = (uint64_t)json_integer_value(n);
        r->numbytes = r->total;
        r->numfiles = 1;
    } else {
        const char *mode = json_string_value(json_object_get(d, "mode"));
        if (mode == NULL || strcmp(mode, "zipfile/deflated") != 0) {
            snprintf(msg, sizeof(msg), "Error: unknown directory-transfer mode '%s'\n",
                     mode ? mode : "?");
            reject(r, X_TRANSFER, msg, "unknown mode");
            return;
        }
        name = json_string_value(json_object_get(d, "dirname"));
        json_t *z = json_object_get(d, "zipsize"), *nb = json_object_get(d, "numbytes"),
               *nf = json_object_get(d, "numfiles");
        if (name == NULL || !json_is_integer(z) || json_integer_value(z) < 0 ||
            !json_is_integer(nb) || json_integer_value(nb) < 0 || !json_is_integer(nf) ||
            json_integer_value(nf) < 0) {
            reject(r, X_TRANSFER, "ERROR: the sender's directory offer is malformed\n",
                   "transfer rejected");
            return;
        }
        r->is_dir = 1;
        r->total = (uint64_t)json_integer_value(z);
        r->numbytes = (uint64_t)json_integer_value(nb);
        r->numfiles = (uint64_t)json_integer_value(nf);
    }
    /* the basename protects against "~/.ssh/authorized_keys" and the like */
    char copy[PATH_MAX];
    snprintf(copy, sizeof(copy), "%s", name);
    const char *base = basename(copy);
    if (r->o->output_file != NULL)
        base = r->o->output_file;
    if (base[0] == 0 || strcmp(base, ".") == 0 || strcmp(base, "..") == 0 ||
        strcmp(base, "/") == 0) {
        reject(r, X_TRANSFER, "ERROR: the sender offers no usable name\n", "transfer rejected");
        return;
    }
    snprintf(r->name, sizeof(r->name), "%s", base);
    snprintf(r->final, sizeof(r->final), "%s", base);
    jev(r,
        json_pack("{s:s,s:s,s:s,s:I,s:I,s:I}", "event", "offer", "kind",
                  r->is_file ? "file" : "directory", "name", r->name, "size", (json_int_t)r->total,
                  "numbytes", (json_int_t)r->numbytes, "numfiles", (json_int_t)r->numfiles));
    struct stat st;
    int exists = lstat(r->final, &st) == 0;
    if (exists && r->o->output_file == NULL) {
        snprintf(msg, sizeof(msg), "Error: refusing to overwrite existing '%s'\n", r->name);
        reject(r, X_LOCAL, msg, "transfer rejected");
        return;
    }
    if (exists)
        fprintf(stderr, "Overwriting '%s'\n", r->name);
    /* free space where it will land */
    char dir[PATH_MAX];
    snprintf(copy, sizeof(copy), "%s", r->final);
    snprintf(dir, sizeof(dir), "%s", dirname(copy));
    struct statvfs vfs;
    if (statvfs(dir, &vfs) == 0) {
        uint64_t free_b = (uint64_t)vfs.f_frsize * (uint64_t)vfs.f_bavail;
        uint64_t need = r->is_file ? r->total : r->numbytes + r->total;
        if (free_b < need) {
            snprintf(msg, sizeof(msg), "Error: insufficient free space (%lluB) for %s (%lluB)\n",
                     (unsigned long long)free_b, r->is_file ? "file" : "directory",
                     (unsigned long long)need);
            reject(r, X_LOCAL, msg, "transfer rejected");
            return;
        }
    }
    naturalsize(r->total, sz, sizeof(sz));
    if (r->is_file) {
        fprintf(stderr, "Receiving file (%s) into: %s\n", sz, r->name);
    } else {
        naturalsize(r->numbytes, sz2, sizeof(sz2));
        fprintf(stderr, "Receiving directory (%s) into: %s/\n", sz, r->name);
        fprintf(stderr, "%llu files, %s (uncompressed)\n", (unsigned long long)r->numfiles, sz2);
    }
    if (!r->o->accept_file && !ask_yes("ok? (Y/n): ", 1)) {
        fprintf(stderr, "transfer rejected\n");
        reject(r, X_TRANSFER, "", "transfer rejected");
        return;
    }
    if (exists && remove_tree(r->final) != 0) {
        snprintf(msg, sizeof(msg), "ERROR: cannot remove the existing '%s'\n", r->name);
        reject(r, X_LOCAL, msg, "transfer rejected");
        return;
    }
    /* the temporary file, beside the target */
    snprintf(r->tmp, sizeof(r->tmp), "%.3900s.waybill-XXXXXX.tmp", r->final);
    r->fd = mkostemps(r->tmp, 4, O_CLOEXEC);
    if (r->fd < 0) {
        snprintf(msg, sizeof(msg), "ERROR: cannot create '%s': %s\n", r->tmp, strerror(errno));
        reject(r, X_LOCAL, msg, "transfer rejected");
        return;
    }
    snprintf(tmp_paths[TMP_RECV], PATH_MAX, "%s", r->tmp);
    if (r->is_file) { /* mkstemp made it 0600; a received file gets the usual mode */
        mode_t um = umask(0);
        umask(um);
        fchmod(r->fd, 0666 & ~um);
    }
    if (hash_start(r) != 0) {
        reject(r, X_ERROR, "ERROR: out of memory\n", "transfer rejected");
        return;
    }
    if (!r->transit_open && open_transit(r) != 0) {
        start_close(r);
        return;
    }
    if (r->hints_sent)
        send_answer_and_connect(r);
    else
        r->answer_pending = 1;
}

/* An application message from the peer. */
static void on_message(run_t *r, const wh_event_t *ev)
{
    json_t *o = json_loadb((const char *)ev->data, ev->len, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        fail_later(r, X_ERROR, "ERROR: the other side sent a message that is not a JSON object\n");
        start_close(r);
        return;
    }
    json_t *e = json_object_get(o, "error");
    json_t *transit = json_object_get(o, "transit");
    char msg[1200];
    if (e != NULL) {
        char *s =
            json_is_string(e) ? strdup(json_string_value(e)) : wb_json_encode(e, &(size_t){0});
        if (r->o->sender)
            snprintf(msg, sizeof(msg), "TransferError: remote error, transfer abandoned: %s\n",
                     s ? s : "?");
        else
            snprintf(msg, sizeof(msg), "TransferError: %s\n", s ? s : "?");
        free(s);
        fail_later(r, X_TRANSFER, msg);
        start_close(r);
    } else if (transit != NULL) {
        if (r->peer_transit == NULL) /* only the first one counts */
            r->peer_transit = json_dumps(transit, JSON_COMPACT);
        if (!r->o->sender && !r->transit_open && r->have_key_bytes)
            open_transit(r); /* our hints go back as soon as we have them */
    } else if (r->o->sender) {
        json_t *a = json_object_get(o, "answer");
        if (a != NULL && r->answered) {
            fail_later(r, X_TRANSFER, "TransferError: duplicate answer\n");
            start_close(r);
        } else if (a != NULL && r->o->text != NULL) {
            r->answered = 1;
            json_t *ack = json_object_get(a, "message_ack");
            if (json_is_string(ack) && strcmp(json_string_value(ack), "ok") == 0) {
                fprintf(stderr, "text message sent\n");
                jev(r, json_pack("{s:s}", "event", "done"));
            } else {
                char *s = wb_json_encode(a, &(size_t){0});
                snprintf(msg, sizeof(msg), "TransferError: error sending text: %s\n", s ? s : "?");
                free(s);
                fail_later(r, X_TRANSFER, msg);
            }
            start_close(r);
        } else if (a != NULL) {
            r->answered = 1;
            json_t *ack = json_object_get(a, "file_ack");
            if (json_is_string(ack) && strcmp(json_string_value(ack), "ok") == 0) {
                wb_transit_connect(r->rt, r->tid, r->peer_transit ? r->peer_transit : "{}");
            } else {
                char *s = wb_json_encode(a, &(size_t){0});
                snprintf(msg, sizeof(msg), "TransferError: ambiguous response from remote: %s\n",
                         s ? s : "?");
                free(s);
                fail_later(r, X_TRANSFER, msg);
                start_close(r);
            }
        }
    } else {
        json_t *offer = json_object_get(o, "offer");
        if (offer != NULL && r->answered) {
            fail_later(r, X_TRANSFER, "TransferError: duplicate offer\n");
            start_close(r);
        } else if (offer != NULL) {
            json_t *m = json_object_get(offer, "message");
            if (json_is_string(m)) {
                r->answered = 1;
                if (r->o->json) {
                    jev(r, json_pack("{s:s,s:s}", "event", "done", "text", json_string_value(m)));
                } else {
                    fwrite(json_string_value(m), 1, json_string_length(m), stdout);
                    fputc('\n', stdout);
                    fflush(stdout);
                }
                send_json(r, json_pack("{s:{s:s}}", "answer", "message_ack", "ok"));
                start_close(r);
            } else if (json_is_object(json_object_get(offer, "file")) ||
                       json_is_object(json_object_get(offer, "directory"))) {
                on_file_offer(r, offer);
            } else {
                fprintf(stderr, "I don't know what they're offering\n\n");
                send_json(r, json_pack("{s:s}", "error", "unknown offer type"));
                fail_later(r, X_TRANSFER, "TransferError: unknown offer type\n");
                start_close(r);
            }
        }
    }
    json_decref(o);
}

/* The verifier came: print it, and the sender asks before offering. */
static int on_verifier(run_t *r, const wh_event_t *ev)
{
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", ev->data[i]);
    jev(r, json_pack("{s:s,s:s}", "event", "verifier", "verifier", hex));
    if (!r->o->sender) {
        if (r->o->verify)
            fprintf(stderr, "Verifier %s.\n", hex);
        if (r->peer_transit != NULL && !r->transit_open)
            open_transit(r);
        return 0;
    }
    if (r->o->verify) {
        for (;;) {
            char line[64];
            printf("Verifier %s. ok? (yes/no): ", hex);
            fflush(stdout);
            if (read_line(line, sizeof(line)) != 0)
                strcpy(line, "no");
            for (char *p = line; *p; p++)
                if (*p >= 'A' && *p <= 'Z')
                    *p = (char)(*p - 'A' + 'a');
            if (strcmp(line, "yes") == 0)
                break;
            if (strcmp(line, "no") == 0) {
                const char *why = "sender rejected verification check, abandoned transfer";
                send_json(r, json_pack("{s:s}", "error", why));
                char msg[128];
                snprintf(msg, sizeof(msg), "TransferError: %s\n", why);
                fail_later(r, X_TRANSFER, msg);
                start_close(r);
                return 0;
            }
        }
    }
    if (r->o->text != NULL)
        return send_json(r, json_pack("{s:{s:s}}", "offer", "message", r->o->text));
    /* a file or directory: our transit hints first (phase 0), then the offer */
    if (hash_start(r) != 0)
        return WB_ENOMEM;
    if (open_transit(r) != 0)
        start_close(r);
    return 0;
}

static void on_transit(run_t *r, qev_t *e)
{
    wb_transit_event_t *ev = &e->tev;
    switch (ev->type) {
    case WB_TRANSIT_EV_HINTS:
        if (r->closing)
            break;
        {
            json_t *h = json_loads(ev->text, 0, NULL);
            send_json(r, json_pack("{s:o}", "transit", h));
        }
        r->hints_sent = 1;
        if (r->o->sender)
            send_offer(r);
        else if (r->answer_pending)
            send_answer_and_connect(r);
        break;
    case WB_TRANSIT_EV_CONNECTED:
        on_transit_connected(r, ev);
        break;
    case WB_TRANSIT_EV_DATA:
        on_transit_data(r, ev);
        break;
    case WB_TRANSIT_EV_SENT:
        r->sent += ev->n;
        wb_progress_add(&r->prog, ev->n);
        progress_json(r, 0);
        pump(r);
        if (r->reading_done && r->sent == r->total && !r->waiting_ack) {
            wb_progress_finish(&r->prog);
            progress_json(r, 1);
            fprintf(stderr, "File sent.. waiting for confirmation\n");
            r->waiting_ack = 1;
        }
        break;
    case WB_TRANSIT_EV_CLOSED:
        on_transit_closed(r, ev);
        break;
    }
}

static int run_wormhole(opts_t *o)
{
    /* SIGINT and SIGTERM end the process as usual, after removing the
     * temporary files of a transfer under way. */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_signal);
    run_t r = {.o = o, .fd = -1};
    /* A transfer allocates and frees buffers of 256 KiB - 1 MiB on three
     * threads; from the heap they are reused, from mmap each one would be
     * fresh zeroed pages (page faults and clearing: a fifth of the CPU). */
    mallopt(M_MMAP_THRESHOLD, 8 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    if (o->sender && o->npaths > 0) {
        int st = prepare_source(&r);
        if (st != 0) {
            if (r.fd >= 0)
                close(r.fd);
            return st;
        }
    }
    wb_rt_config_t rtc;
    wb_rt_config_init(&rtc);
    wb_sockets_config_t sc;
    wb_sockets_config_init(&sc);
    sc.read_buffer = 256u << 10; /* transit data: fewer, larger reads */
    int rc = wb_rt_new(&r.rt, &rtc);
    if (rc == 0)
        rc = wb_sockets_attach(r.rt, &sc);
    wb_wormhole_config_t wc;
    wb_wormhole_config_init(&wc);
    wc.url = o->relay_url;
    wc.appid = o->appid;
    wc.on_event = on_event;
    char err[300] = "";
    if (rc == 0)
        rc = wb_wormhole_open(r.rt, &wc, &r.id, err, sizeof(err));
    if (rc == 0)
        rc = wb_rt_start(r.rt);
    if (rc != 0) {
        fprintf(stderr, "waybill %s: %s\n", o->sender ? "send" : "receive",
                err[0] ? err : wb_strerror(rc));
        if (r.rt != NULL)
            wb_rt_free(r.rt);
        if (r.fd >= 0)
            close(r.fd);
        return rc == WB_EINVAL ? X_USAGE : X_ERROR;
    }
    char codebuf[512];
    const char *code = o->zeromode ? "0-" : o->code;
    if (o->sender && o->text != NULL) {
        char size[32];
        naturalsize(utf8_chars(o->text), size, sizeof(size));
        fprintf(stderr, "Sending text message (%s)\n", size);
    }
    if (code != NULL) {
        if (wb_wormhole_set_code(r.rt, r.id, code, err, sizeof(err)) != 0) {
            fprintf(stderr, "ERROR: %s\n", err);
            wb_rt_free(r.rt);
            if (r.fd >= 0)
                close(r.fd);
            return X_USAGE;
        }
    } else if (o->sender) {
        wb_wormhole_allocate(r.rt, r.id, o->code_length);
    }
    uint64_t start = now_ms(), key_at = 0;
    uint64_t deadline = o->timeout_s > 0 ? start + (uint64_t)o->timeout_s * 1000 : 0;
    int said_waiting = 0, said_key = 0, asked_code = code != NULL || o->sender;
    int status = -1, wh_closed = 0;
    char *final_msg = NULL; /* what finish() said, for --json */
    if (!o->sender && code != NULL)
        jev(&r, json_pack("{s:s}", "event", "waiting"));
    while (!wh_closed || (r.transit_open && !r.transit_done)) {
        if (!asked_code) {
            /* On a terminal with completion; else one line, as typed. */
            asked_code = 1;
            char msg[400];
            if (isatty(STDIN_FILENO)) {
                if (input_code_tty(&r, msg, sizeof(msg)) != 0) {
                    fail_later(&r, X_USAGE, msg);
                    start_close(&r);
                }
                /* the notes and --timeout count from the end of typing */
                start = now_ms();
                deadline = o->timeout_s > 0 ? start + (uint64_t)o->timeout_s * 1000 : 0;
                continue;
            }
            fprintf(stderr, "Enter receive wormhole code: ");
            fflush(stderr);
            if (read_line(codebuf, sizeof(codebuf)) != 0 || codebuf[0] == 0) {
                fprintf(stderr, "\nERROR: no code given\n");
                fail_later(&r, X_USAGE, "");
                start_close(&r);
            } else if (wb_wormhole_set_code(r.rt, r.id, codebuf, err, sizeof(err)) != 0) {
                snprintf(msg, sizeof(msg), "ERROR: %s\n", err);
                fail_later(&r, X_USAGE, msg);
                start_close(&r);
            }
        }
        /* the 1 s notes of the Python CLI, --timeout, the receiver's wait
         * for the sender to hang up after the ack */
        uint64_t now = now_ms(), wake = deadline;
        uint64_t note = !r.have_key ? start + 1000 : key_at + 1000;
        int note_due = !r.closing && ((!r.have_key && !o->sender && !said_waiting) ||
                                      (r.have_key && !r.have_verifier && !said_key));
        if (note_due && (wake == 0 || note < wake))
            wake = note;
        if (r.hangup_deadline != 0 && !r.transit_done && (wake == 0 || r.hangup_deadline < wake))
            wake = r.hangup_deadline;
        if (wh_closed && r.transit_open && !r.transit_done && !r.await_hangup &&
            (wake == 0 || now + 1000 < wake))
            wake = now + 1000;
        qev_t *e = next_event(wake);
        if (e == NULL) {
            now = now_ms();
            if (r.hangup_deadline != 0 && now >= r.hangup_deadline && !r.transit_done) {
                r.hangup_deadline = 0;
                r.await_hangup = 0;
                wb_transit_close(r.rt, r.tid);
            } else if (wh_closed && r.transit_open && !r.transit_done && !r.await_hangup) {
                wb_transit_close(r.rt, r.tid);
            } else if (deadline != 0 && now >= deadline && !r.closing) {
                char msg[200];
                if (!r.have_key)
                    snprintf(msg, sizeof(msg),
                             "ERROR: timed out after %ld s: the other side never showed up\n",
                             o->timeout_s);
                else
                    snprintf(msg, sizeof(msg),
                             "ERROR: timed out after %ld s: the other side went away\n",
                             o->timeout_s);
                fail_later(&r, r.have_key ? X_PEER_GONE : X_TIMEOUT, msg);
                start_close(&r);
                deadline = 0;
            } else if (note_due && now >= note) {
                if (!r.have_key) {
                    fprintf(stderr, "Waiting for sender...\n");
                    said_waiting = 1;
                } else {
                    fprintf(stderr, "Key established, waiting for confirmation...\n");
                    said_key = 1;
                }
            }
            continue;
        }
        if (e->transit) {
            on_transit(&r, e);
            qev_free(e);
            continue;
        }
        const wh_event_t *ev = &e->ev;
        switch (ev->type) {
        case WH_EV_WELCOME:
            if (ev->text != NULL) {
                fprintf(stderr, "Server (at %s) says:\n ", o->relay_url);
                for (const char *p = ev->text; *p; p++) {
                    fputc(*p, stderr);
                    if (*p == '\n' && p[1] != 0)
                        fputc(' ', stderr);
                }
                fputc('\n', stderr);
            }
            break;
        case WH_EV_CODE:
            jev(&r, json_pack("{s:s,s:s}", "event", "code", "code", ev->text));
            if (o->sender) {
                if (!o->zeromode)
                    fprintf(stderr, "Wormhole code is: %s\n", ev->text);
                fprintf(stderr,
                        "On the other computer, please run:\n\nwormhole receive%s%s%s%s\n\n",
                        o->verify ? " --verify" : "", o->zeromode ? " -0" : "",
                        o->zeromode ? "" : " ", o->zeromode ? "" : ev->text);
                fflush(stderr);
                jev(&r, json_pack("{s:s}", "event", "waiting"));
            }
            break;
        case WH_EV_KEY:
            r.have_key = 1;
            key_at = now_ms();
            if (ev->data != NULL && ev->len == WB_WH_KEY_LEN) {
                memcpy(r.key, ev->data, WB_WH_KEY_LEN);
                r.have_key_bytes = 1;
            }
            break;
        case WH_EV_VERIFIER:
            r.have_verifier = 1;
            if (!r.closing && on_verifier(&r, ev) != 0) {
                fail_later(&r, X_ERROR, "ERROR: out of memory\n");
                start_close(&r);
            }
            break;
        case WH_EV_MESSAGE:
            if (!r.closing)
                on_message(&r, ev);
            break;
        case WH_EV_VERSIONS:
        case WH_EV_NAMEPLATES:
            break;
        case WH_EV_CLOSED:
            wh_closed = 1;
            {
                char *mb = NULL;
                size_t ml = 0;
                FILE *m = open_memstream(&mb, &ml);
                status = finish(&r, ev, m != NULL ? m : stderr);
                if (m != NULL) {
                    fclose(m);
                    fputs(mb, stderr);
                    final_msg = mb;
                }
            }
            if (status != 0 && r.err == NULL && r.exit_code == 0)
                r.exit_code = status;
            if (r.transit_open && !r.transit_done && !r.await_hangup)
                wb_transit_close(r.rt, r.tid);
            break;
        }
        qev_free(e);
    }
    if (status != 0) {
        const char *m = final_msg != NULL ? final_msg : "";
        while (*m == '\n')
            m++;
        char *mc = strdup(m);
        size_t ml = mc != NULL ? strlen(mc) : 0;
        while (ml > 0 && mc[ml - 1] == '\n')
            mc[--ml] = 0; /* the human text, without its last newline */
        jev(&r,
            json_pack("{s:s,s:s,s:i}", "event", "error", "message", mc ? mc : "", "exit", status));
        free(mc);
    }
    free(final_msg);
    fflush(stdout);
    wb_rt_stop(r.rt);
    wb_rt_free(r.rt);
    qev_t *e;
    while ((e = next_event(1)) != NULL)
        qev_free(e);
    if (r.fd >= 0)
        close(r.fd);
    tmp_remove(TMP_RECV);
    if (r.md != NULL)
        EVP_MD_CTX_free(r.md);
    sodium_memzero(r.key, sizeof(r.key));
    free(r.peer_transit);
    free(r.err);
    nameplates_free(nps.ids, nps.n);
    nps.ids = NULL;
    nps.n = 0;
    return status;
}

/* ---- the commands ---------------------------------------------------------------------- */

static void usage(FILE *f, int sender)
{
    if (sender)
        fprintf(f, "usage: waybill send [OPTIONS] PATH...\n"
                   "       waybill send [OPTIONS] --text TEXT\n\n"
                   "Send a file, a directory, several of them (as one directory) or a text\n"
                   "message through a Magic Wormhole: prints a code for the other side to\n"
                   "type into `wormhole receive` (or `waybill receive`).\n\n"
                   "  --text TEXT          a text message (\"-\": read it from stdin)\n"
                   "  --code CODE          use this code instead of asking the server for one\n"
                   "  --ignore-unsendable-files  skip files that cannot be read, instead of "
                   "failing\n");
    else
        fprintf(f, "usage: waybill receive [OPTIONS] [CODE]\n\n"
                   "Receive a text message (printed on stdout), a file or a directory through a\n"
                   "Magic Wormhole. Without CODE the code is typed, with Tab completion on a\n"
                   "terminal, or read as one line from stdin.\n\n"
                   "  --code CODE          the code (same as the argument)\n"
                   "  --accept-file        accept a file or directory without asking\n"
                   "  -o, --output-file PATH  write it there instead of under the offered name\n"
                   "                       (replacing what is there)\n");
    fprintf(f,
            "  -c, --code-length N  words in an allocated code (default 2)\n"
            "  -0                   zero mode: the code is \"0-\" (no secrecy at all)\n"
            "  -v, --verify         show the verifier (the sender asks before sending)\n"
            "  --hide-progress      no progress bar\n"
            "  --json               one JSON event per line on stdout (code, waiting,\n"
            "                       verifier, offer, connected, progress, done, error)\n"
            "  --no-listen          do not listen for direct connections (relay only,\n"
            "                       unless the peer listens)\n"
            "  --transit-helper tcp:HOST:PORT  the transit relay (env\n"
            "                       WORMHOLE_TRANSIT_HELPER; default %s)\n"
            "  --relay-url URL      mailbox server (env WORMHOLE_RELAY_URL; default\n"
            "                       %s)\n"
            "  --appid APPID        application id (default %s)\n"
            "  --timeout SECONDS    give up after this long waiting for the peer\n"
            "                       (default: wait forever)\n\n"
            "Exit status: 0 done, 1 error, 2 usage, 3 wrong code, 4 crowded, 5 server\n"
            "error, 6 server unreachable, 7 peer went away, 8 transfer refused,\n"
            "9 timed out before the peer came, 10 transfer failed on the way (no\n"
            "connection, connection lost, corrupt data), 11 local file problem.\n",
            WB_TRANSIT_DEFAULT_RELAY, WB_WORMHOLE_RELAY_URL, WB_WH_APPID_XFER);
}

static int command(int argc, char **argv, int sender)
{
    enum {
        O_TEXT = 256,
        O_CODE,
        O_HIDE,
        O_RELAY,
        O_APPID,
        O_TIMEOUT,
        O_JSON,
        O_NOLISTEN,
        O_HELPER,
        O_IGNORE,
        O_ACCEPT,
    };
    static const struct option lopts[] = {
        {"text", required_argument, NULL, O_TEXT},
        {"code", required_argument, NULL, O_CODE},
        {"code-length", required_argument, NULL, 'c'},
        {"verify", no_argument, NULL, 'v'},
        {"hide-progress", no_argument, NULL, O_HIDE},
        {"relay-url", required_argument, NULL, O_RELAY},
        {"appid", required_argument, NULL, O_APPID},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"json", no_argument, NULL, O_JSON},
        {"no-listen", no_argument, NULL, O_NOLISTEN},
        {"transit-helper", required_argument, NULL, O_HELPER},
        {"ignore-unsendable-files", no_argument, NULL, O_IGNORE},
        {"accept-file", no_argument, NULL, O_ACCEPT},
        {"output-file", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    opts_t o = {.sender = sender, .appid = WB_WH_APPID_XFER, .code_length = 2};
    o.relay_url = getenv("WORMHOLE_RELAY_URL");
    if (o.relay_url == NULL || o.relay_url[0] == 0)
        o.relay_url = WB_WORMHOLE_RELAY_URL;
    o.transit_helper = getenv("WORMHOLE_TRANSIT_HELPER");
    if (o.transit_helper == NULL || o.transit_helper[0] == 0)
        o.transit_helper = WB_TRANSIT_DEFAULT_RELAY;
    long long v;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:v0ho:", lopts, NULL)) != -1) {
        switch (ch) {
        case O_TEXT:
            if (!sender)
                goto bad;
            o.text = optarg;
            break;
        case O_CODE:
            o.code = optarg;
            break;
        case 'c':
            if ((v = wb_cli_parse_num(optarg, 0, 32)) < 0)
                goto bad;
            o.code_length = (unsigned)v;
            break;
        case 'v':
            o.verify = 1;
            break;
        case '0':
            o.zeromode = 1;
            break;
        case O_HIDE:
            o.hide_progress = 1;
            break;
        case O_RELAY:
            o.relay_url = optarg;
            break;
        case O_APPID:
            o.appid = optarg;
            break;
        case O_TIMEOUT:
            if ((v = wb_cli_parse_num(optarg, 0, 365LL * 86400)) < 0)
                goto bad;
            o.timeout_s = (long)v;
            break;
        case O_JSON:
            o.json = 1;
            break;
        case O_NOLISTEN:
            o.no_listen = 1;
            break;
        case O_HELPER:
            o.transit_helper = optarg;
            break;
        case O_IGNORE:
            if (!sender)
                goto bad;
            o.ignore_unsendable = 1;
            break;
        case O_ACCEPT:
            if (sender)
                goto bad;
            o.accept_file = 1;
            break;
        case 'o':
            if (sender || optarg[0] == 0)
                goto bad;
            o.output_file = optarg;
            break;
        case 'h':
            usage(stdout, sender);
            return X_DONE;
        default:
            usage(stderr, sender);
            return X_USAGE;
        }
    }
    if (!sender && optind < argc) {
        if (o.code != NULL)
            goto bad;
        o.code = argv[optind++];
    }
    if (sender && optind < argc) {
        if (o.text != NULL) {
            fprintf(stderr, "waybill send: give --text or paths, not both\n");
            return X_USAGE;
        }
        o.paths = argv + optind;
        o.npaths = (size_t)(argc - optind);
        optind = argc;
    }
    if (optind != argc)
        goto bad;
    if (o.zeromode && o.code != NULL) {
        fprintf(stderr, "waybill %s: -0 and a code cannot go together\n",
                sender ? "send" : "receive");
        return X_USAGE;
    }
    if (o.transit_helper != NULL) {
        wb_transit_relay_t rel;
        char err[300];
        if (wb_transit_parse_helper(o.transit_helper, &rel, err, sizeof(err)) != 0) {
            fprintf(stderr, "waybill %s: --transit-helper %s\n", sender ? "send" : "receive", err);
            return X_USAGE;
        }
    }
    char *stdin_text = NULL;
    if (sender && o.npaths == 0) {
        if (o.text == NULL) {
            fprintf(stderr, "waybill send: what to send? Give paths, or --text TEXT (\"-\" "
                            "reads stdin)\n\n");
            usage(stderr, 1);
            return X_USAGE;
        }
        if (strcmp(o.text, "-") == 0) {
            fprintf(stderr, "Reading text message from stdin..\n");
            const char *why;
            stdin_text = read_all_stdin(&why);
            if (stdin_text == NULL) {
                fprintf(stderr, "waybill send: %s\n", why);
                return X_ERROR;
            }
            o.text = stdin_text;
        }
        json_t *t = json_string(o.text); /* NULL unless UTF-8 */
        if (t == NULL) {
            fprintf(stderr, "waybill send: the text is not UTF-8\n");
            free(stdin_text);
            return X_USAGE;
        }
        json_decref(t);
    }
    int status = run_wormhole(&o);
    free(stdin_text);
    return status;
bad:
    fprintf(stderr, "waybill %s: bad arguments\n\n", sender ? "send" : "receive");
    usage(stderr, sender);
    return X_USAGE;
}

int wb_cmd_send(int argc, char **argv)
{
    return command(argc, argv, 1);
}

int wb_cmd_receive(int argc, char **argv)
{
    return command(argc, argv, 0);
}
