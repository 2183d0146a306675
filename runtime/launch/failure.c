/* What a failed run's message says (see launch_impl.h). */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/core.h"
#include "runtime/launch/launch_impl.h"
#include "transport/transport.h"

/* The host in "with rank R (tcp://HOST:PORT)" of a link's message, into out ("" if none). */
static void link_host(const char *message, int rank, char *out, size_t cap)
{
    char pat[48];
    snprintf(pat, sizeof pat, "with rank %d (tcp://", rank);
    const char *p = strstr(message, pat);
    if (!p || out[0]) return;
    p += strlen(pat);
    size_t n = strcspn(p, ":)");
    if (*p == '[') n = strcspn(p, "]") + 1; /* an IPv6 address */
    snprintf(out, cap, "%.*s", (int)SL_MIN(n, cap - 1), p);
}

/* The rank an error message says disconnected or stopped answering, or -1. */
static int blamed_in(const char *message)
{
    for (const char *p = message; (p = strstr(p, "rank ")); p++) {
        int r;
        char word[32];
        if (sscanf(p, "rank %d %31s", &r, word) == 2 && !strcmp(word, "disconnected")) return r;
    }
    return -1;
}

void sl__failure_note_report(struct failure *f, const cJSON *j, int rank, const char *message)
{
    if (rank < 0 || rank >= MAX_RANKS) return;
    const char *action = cJSON_GetStringValue(cJSON_GetObjectItem(j, "action"));
    const char *host = cJSON_GetStringValue(cJSON_GetObjectItem(j, "host"));
    f->reported[rank] = 1;
    snprintf(f->action[rank], sizeof f->action[rank], "%s", action ? action : "");
    snprintf(f->host[rank], sizeof f->host[rank], "%s", host ? host : "");
    f->blamed[rank] = blamed_in(message);
    int b = f->blamed[rank];
    if (b >= 0 && b < MAX_RANKS) link_host(message, b, f->peer_host[b], sizeof f->peer_host[b]);
}

void sl__failure_note_error(struct failure *f, int rank, int status, const char *message)
{
    bool have = f->rank >= 0;
    bool consequence = f->status == SL_EPEER || f->status == SL_ETIMEOUT;
    if (have && !(consequence && status != SL_EPEER && status != SL_ETIMEOUT)) return;
    f->rank = rank;
    f->status = status;
    snprintf(f->message, sizeof f->message, "%s", message);
}

void sl__describe_exit(char *buf, size_t cap, int ws)
{
    if (WIFSIGNALED(ws))
        snprintf(buf, cap, "was killed by signal %d (%s)", WTERMSIG(ws), strsignal(WTERMSIG(ws)));
    else
        snprintf(buf, cap, "exited with status %d", WEXITSTATUS(ws));
}

/* The failure of a local run in one message: the rank that caused it (killed without a word, a
 * failure of its own, or silent while its process still exists: stopped or hung), its host, and
 * what every other rank was doing when it noticed. */
int sl__failure_explain(int nranks, bool local, const int *status, struct failure *f,
                        int failed_rank, int failed_ws)
{
    char host[64] = "this host", what[1200];
    gethostname(host, sizeof host);
    int culprit = -1;
    /* killed: it exited without an error report */
    for (int i = 0; i < nranks && culprit < 0; i++)
        if (!f->reported[i] && status[i] != -1 &&
            (!WIFEXITED(status[i]) || WEXITSTATUS(status[i]) != 0))
            culprit = i;
    if (culprit >= 0) {
        char how[128];
        sl__describe_exit(how, sizeof how, status[culprit]);
        snprintf(what, sizeof what, "rank %d (host %s) %s", culprit, host, how);
    } else if (f->rank >= 0 && f->status != SL_EPEER && f->status != SL_ETIMEOUT) {
        culprit = f->rank; /* a failure of its own */
        snprintf(what, sizeof what, "rank %d (host %s) failed: %s", culprit,
                 f->host[culprit][0] ? f->host[culprit] : host, f->message);
    } else {
        /* silent: the rank the others say disconnected, which said nothing itself */
        int votes[MAX_RANKS] = {0};
        for (int i = 0; i < nranks; i++)
            if (f->reported[i] && f->blamed[i] >= 0 && f->blamed[i] < nranks &&
                !f->reported[f->blamed[i]])
                votes[f->blamed[i]]++;
        for (int i = 0; i < nranks; i++)
            if (votes[i] && (culprit < 0 || votes[i] > votes[culprit])) culprit = i;
        if (culprit >= 0 && f->peer_host[culprit][0])
            snprintf(host, sizeof host, "%s", f->peer_host[culprit]);
        else if (culprit >= 0 && !local)
            snprintf(host, sizeof host, "unknown");
        if (culprit >= 0)
            snprintf(what, sizeof what,
                     "rank %d (host %s) stopped answering: no heartbeat from it, %s", culprit, host,
                     local ? "though its process was still there (stopped, as by SIGSTOP, or hung)"
                           : "so it died, or was stopped (as by SIGSTOP) or hung");
    }
    if (culprit < 0) {
        if (f->rank >= 0) return sl_fail(SL_EPEER, "rank %d failed: %s", f->rank, f->message);
        char how[128];
        sl__describe_exit(how, sizeof how, failed_ws);
        return sl_fail(SL_EPEER, "rank %d %s; every other rank was stopped", failed_rank, how);
    }
    size_t n = strlen(what);
    for (int i = 0; i < nranks && n + 200 < sizeof what; i++) {
        if (i == culprit || !f->reported[i] || !f->action[i][0]) continue;
        n += (size_t)snprintf(what + n, sizeof what - n, "; rank %d %s", i, f->action[i]);
    }
    return sl_fail(SL_EPEER, "%s; every other rank was stopped", what);
}
