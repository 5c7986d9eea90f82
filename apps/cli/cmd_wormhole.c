/*
 * cmd_wormhole.c - `waybill send --text` and `waybill receive`: the Magic
 * Wormhole text transfer, speaking with `wormhole` (Python) and
 * `wormhole-william` (Go) as their own CLIs do (shared notes, wormhole.md
 * section 4: phase 0 {"offer": {"message": TEXT}}, answered with
 * {"answer": {"message_ack": "ok"}}).
 *
 * The wormhole runs in its actor (apps/wormhole/wormhole.h); its events are
 * copied into a queue this thread waits on, so the prompts (the code, the
 * verifier) block only the main thread. What users see follows the Python
 * CLI (cli/cmd_send.py, cmd_receive.py, cli.py): the same lines on the same
 * streams, the same error texts where there is one.
 *
 * `waybill receive` without a code on a terminal reads it with libedit's
 * readline() and completes it on Tab (apps/wormhole/complete.h): readline
 * runs on the main thread; the completion callback asks the actor for the
 * nameplate list and waits a little for the answer, which on_event keeps
 * aside (the actor lane never waits for anyone).
 */
#include <editline/readline.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "apps/cli/cli.h"
#include "apps/wormhole/complete.h"
#include "apps/wormhole/keys.h"
#include "apps/wormhole/wormhole.h"
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
    X_TRANSFER = 8,    /* the peer refused or abandoned the transfer */
    X_TIMEOUT = 9,     /* --timeout before the peer showed up */
};

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
    wh_event_t ev;
    char *text;
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
    if (ev->type == WH_EV_WELCOME && ev->text != NULL) /* the motd, for later */
        e->ev.text = e->text;
    pthread_mutex_lock(&q.mu);
    if (q.tail)
        q.tail->next = e;
    else
        q.head = e;
    q.tail = e;
    pthread_cond_signal(&q.cv);
    pthread_mutex_unlock(&q.mu);
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
    free(e->data);
    free(e);
}

/* ---- shared ---------------------------------------------------------------------------- */

typedef struct {
    int sender;
    const char *relay_url, *appid, *code, *text;
    unsigned code_length;
    int zeromode, verify;
    long timeout_s;
} opts_t;

typedef struct {
    opts_t *o;
    wb_rt_t *rt;
    uint64_t id;
    int have_key, have_verifier, closing, exit_code;
    char *err; /* what to print when CLOSED comes, decided earlier */
} run_t;

/* humanize.naturalsize: "1 Byte", "14 Bytes", "1.0 kB", "100.0 kB". */
static void naturalsize(size_t n, char *out, size_t cap)
{
    static const char *suffix[] = {"kB", "MB", "GB", "TB", "PB"};
    if (n == 1) {
        snprintf(out, cap, "1 Byte");
        return;
    }
    if (n < 1000) {
        snprintf(out, cap, "%zu Bytes", n);
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
}

/* The exit status and message for the end of the wormhole. */
static int finish(run_t *r, const wh_event_t *ev)
{
    if (r->err != NULL) {
        fputs(r->err, stderr);
        return r->exit_code;
    }
    switch (ev->result) {
    case WH_RESULT_HAPPY:
        return r->exit_code;
    case WH_RESULT_SCARY:
        fputs(WRONG_CODE_TEXT, stderr);
        return X_WRONG_CODE;
    case WH_RESULT_ERRORY:
        if (ev->text != NULL && strcmp(ev->text, "crowded") == 0) {
            fprintf(stderr, "ERROR: crowded: two other clients are already using this code's "
                            "nameplate.\nGet a new code and try again.\n");
            return X_CROWDED;
        }
        fprintf(stderr, "ERROR: the relay server reported an error: %s\n",
                ev->text ? ev->text : "?");
        return X_SERVER;
    case WH_RESULT_UNWELCOME:
        fprintf(stderr, "%s\n%s\n", WELCOME_TEXT, ev->text ? ev->text : "");
        return X_SERVER;
    case WH_RESULT_UNREACHABLE:
        fprintf(stderr, "%s(relay URL was %s)\n%s\n", CONNECT_TEXT, r->o->relay_url,
                ev->text ? ev->text : "");
        return X_UNREACHABLE;
    case WH_RESULT_LONELY:
        fprintf(stderr, "ERROR: closed before the other side connected\n");
        return X_ERROR;
    case WH_RESULT_PROTOCOL:
        fprintf(stderr, "ERROR: %s\n", ev->text ? ev->text : "protocol error");
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
    } else if (r->o->sender) {
        json_t *a = json_object_get(o, "answer");
        if (a != NULL) {
            json_t *ack = json_object_get(a, "message_ack");
            if (json_is_string(ack) && strcmp(json_string_value(ack), "ok") == 0) {
                fprintf(stderr, "text message sent\n");
            } else {
                char *s = wb_json_encode(a, &(size_t){0});
                snprintf(msg, sizeof(msg), "TransferError: error sending text: %s\n", s ? s : "?");
                free(s);
                fail_later(r, X_TRANSFER, msg);
            }
            start_close(r);
        }
        /* "transit" and the unknown: not for a text transfer */
    } else {
        json_t *offer = json_object_get(o, "offer");
        if (offer != NULL) {
            json_t *m = json_object_get(offer, "message");
            if (json_is_string(m)) {
                fwrite(json_string_value(m), 1, json_string_length(m), stdout);
                fputc('\n', stdout);
                fflush(stdout);
                send_json(r, json_pack("{s:{s:s}}", "answer", "message_ack", "ok"));
            } else if (json_object_get(offer, "file") != NULL ||
                       json_object_get(offer, "directory") != NULL) {
                send_json(r, json_pack("{s:s}", "error", "transfer rejected"));
                fail_later(r, X_TRANSFER,
                           "ERROR: the other side offers a file or directory; waybill receives "
                           "text only so far\n");
            } else {
                fprintf(stderr, "I don't know what they're offering\n\n");
                send_json(r, json_pack("{s:s}", "error", "unknown offer type"));
                fail_later(r, X_TRANSFER, "TransferError: unknown offer type\n");
            }
            start_close(r);
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
    if (!r->o->sender) {
        if (r->o->verify)
            fprintf(stderr, "Verifier %s.\n", hex);
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
    return send_json(r, json_pack("{s:{s:s}}", "offer", "message", r->o->text));
}

static int run_wormhole(opts_t *o)
{
    /* SIGINT and SIGTERM keep their default: the user ends a wait with ^C.
     * Nothing is left behind that the mailbox server would not prune. */
    signal(SIGPIPE, SIG_IGN);
    run_t r = {.o = o};
    wb_rt_config_t rtc;
    wb_rt_config_init(&rtc);
    int rc = wb_rt_new(&r.rt, &rtc);
    if (rc == 0)
        rc = wb_sockets_attach(r.rt, NULL);
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
        return rc == WB_EINVAL ? X_USAGE : X_ERROR;
    }
    char codebuf[512];
    const char *code = o->zeromode ? "0-" : o->code;
    if (o->sender) {
        char size[32];
        naturalsize(utf8_chars(o->text), size, sizeof(size));
        fprintf(stderr, "Sending text message (%s)\n", size);
    }
    if (code != NULL) {
        if (wb_wormhole_set_code(r.rt, r.id, code, err, sizeof(err)) != 0) {
            fprintf(stderr, "ERROR: %s\n", err);
            wb_rt_free(r.rt);
            return X_USAGE;
        }
    } else if (o->sender) {
        wb_wormhole_allocate(r.rt, r.id, o->code_length);
    }
    uint64_t start = now_ms(), key_at = 0;
    uint64_t deadline = o->timeout_s > 0 ? start + (uint64_t)o->timeout_s * 1000 : 0;
    int said_waiting = 0, said_key = 0, asked_code = code != NULL || o->sender;
    int status = -1;
    while (status < 0) {
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
        /* the 1 s notes of the Python CLI, and --timeout */
        uint64_t now = now_ms(), wake = deadline;
        uint64_t note = !r.have_key ? start + 1000 : key_at + 1000;
        int note_due = !r.closing && ((!r.have_key && !o->sender && !said_waiting) ||
                                      (r.have_key && !r.have_verifier && !said_key));
        if (note_due && (wake == 0 || note < wake))
            wake = note;
        qev_t *e = next_event(wake);
        if (e == NULL) {
            now = now_ms();
            if (deadline != 0 && now >= deadline && !r.closing) {
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
            if (o->sender) {
                if (!o->zeromode)
                    fprintf(stderr, "Wormhole code is: %s\n", ev->text);
                fprintf(stderr,
                        "On the other computer, please run:\n\nwormhole receive%s%s%s%s\n\n",
                        o->verify ? " --verify" : "", o->zeromode ? " -0" : "",
                        o->zeromode ? "" : " ", o->zeromode ? "" : ev->text);
                fflush(stderr);
            }
            break;
        case WH_EV_KEY:
            r.have_key = 1;
            key_at = now_ms();
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
            status = finish(&r, ev);
            break;
        }
        qev_free(e);
    }
    fflush(stdout);
    wb_rt_stop(r.rt);
    wb_rt_free(r.rt);
    qev_t *e;
    while ((e = next_event(1)) != NULL)
        qev_free(e);
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
        fprintf(f, "usage: waybill send --text TEXT [OPTIONS]\n\n"
                   "Send a text message through a Magic Wormhole: prints a code for the\n"
                   "other side to type into `wormhole receive` (or `waybill receive`).\n\n"
                   "  --text TEXT          the message (\"-\": read it from stdin)\n"
                   "  --code CODE          use this code instead of asking the server for one\n");
    else
        fprintf(f, "usage: waybill receive [OPTIONS] [CODE]\n\n"
                   "Receive a text message through a Magic Wormhole; it is printed on stdout.\n"
                   "Without CODE the code is typed, with Tab completion on a terminal,\n"
                   "or read as one line from stdin.\n\n"
                   "  --code CODE          the code (same as the argument)\n");
    fprintf(f,
            "  -c, --code-length N  words in an allocated code (default 2)\n"
            "  -0                   zero mode: the code is \"0-\" (no secrecy at all)\n"
            "  -v, --verify         show the verifier (the sender asks before sending)\n"
            "  --hide-progress      accepted, for compatibility\n"
            "  --relay-url URL      mailbox server (env WORMHOLE_RELAY_URL; default\n"
            "                       %s)\n"
            "  --appid APPID        application id (default %s)\n"
            "  --timeout SECONDS    give up after this long (default: wait forever)\n\n"
            "Exit status: 0 done, 1 error, 2 usage, 3 wrong code, 4 crowded, 5 server\n"
            "error, 6 server unreachable, 7 peer went away, 8 transfer refused by the\n"
            "peer, 9 timed out before the peer came.\n",
            WB_WORMHOLE_RELAY_URL, WB_WH_APPID_XFER);
}

static int command(int argc, char **argv, int sender)
{
    enum { O_TEXT = 256, O_CODE, O_HIDE, O_RELAY, O_APPID, O_TIMEOUT };
    static const struct option lopts[] = {
        {"text", required_argument, NULL, O_TEXT},
        {"code", required_argument, NULL, O_CODE},
        {"code-length", required_argument, NULL, 'c'},
        {"verify", no_argument, NULL, 'v'},
        {"hide-progress", no_argument, NULL, O_HIDE},
        {"relay-url", required_argument, NULL, O_RELAY},
        {"appid", required_argument, NULL, O_APPID},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    opts_t o = {.sender = sender, .appid = WB_WH_APPID_XFER, .code_length = 2};
    o.relay_url = getenv("WORMHOLE_RELAY_URL");
    if (o.relay_url == NULL || o.relay_url[0] == 0)
        o.relay_url = WB_WORMHOLE_RELAY_URL;
    long long v;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:v0h", lopts, NULL)) != -1) {
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
    if (optind != argc)
        goto bad;
    if (o.zeromode && o.code != NULL) {
        fprintf(stderr, "waybill %s: -0 and a code cannot go together\n",
                sender ? "send" : "receive");
        return X_USAGE;
    }
    char *stdin_text = NULL;
    if (sender) {
        if (o.text == NULL) {
            fprintf(stderr, "waybill send: only text can be sent so far: use --text TEXT "
                            "(\"-\" reads stdin)\n");
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
