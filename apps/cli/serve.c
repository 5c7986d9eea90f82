/*
 * serve.c - what every server subcommand shares: number flags, and running
 * a runtime until SIGINT or SIGTERM.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "apps/cli/cli.h"
#include "runtime/error.h"
#include "runtime/log.h"

long long wb_cli_parse_num(const char *s, long long min, long long max)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < min || v > max)
        return -1;
    return v;
}

int wb_cli_parse_port(const char *s, uint16_t *port, const char **host)
{
    long long v;
    if (strncmp(s, "tcp:", 4) != 0) {
        if ((v = wb_cli_parse_num(s, 0, 65535)) < 0)
            return -1;
        *port = (uint16_t)v;
        return 0;
    }
    char num[8];
    const char *colon = strchr(s + 4, ':');
    size_t n = colon != NULL ? (size_t)(colon - (s + 4)) : strlen(s + 4);
    if (n == 0 || n >= sizeof(num))
        return -1;
    memcpy(num, s + 4, n);
    num[n] = 0;
    if (colon != NULL) {
        if (strncmp(colon + 1, "interface=", 10) != 0 || colon[11] == 0)
            return -1;
        *host = colon + 11; /* inside s: argv lives as long as the process */
    }
    if ((v = wb_cli_parse_num(num, 0, 65535)) < 0)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

void wb_cli_block_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

void wb_cli_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

typedef struct {
    wb_rt_t *rt;
    const char *name;
} sigwait_t;

static void *sig_main(void *arg)
{
    sigwait_t *w = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    int sig;
    if (sigwait(&set, &sig) == 0 && sig != SIGUSR1) {
        wb_info(w->name, "signal %d: stopping", sig);
        wb_rt_request_stop(w->rt);
    }
    return NULL;
}

int wb_cli_serve(wb_rt_t *rt, const char *name)
{
    int rc = wb_rt_start(rt);
    if (rc != 0) {
        fprintf(stderr, "waybill %s: cannot start: %s\n", name, wb_strerror(rc));
        wb_rt_free(rt);
        return 1;
    }
    sigwait_t sw = {rt, name};
    pthread_t t;
    pthread_create(&t, NULL, sig_main, &sw);
    wb_rt_wait(rt);
    wb_rt_stop(rt);
    wb_info(name, "stopped");
    wb_rt_free(rt);
    pthread_kill(t, SIGUSR1);
    pthread_join(t, NULL);
    return 0;
}
