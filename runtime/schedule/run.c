/* Running every rank's list over links of a given depth, in causal order: what the validator
 * proves completes and what the timed simulator clocks. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "runtime/schedule/schedule_internal.h"

static const char *fmt(const sl_action *a, char *buf, size_t cap)
{
    sl_action_format(a, buf, cap);
    return buf;
}

/* ------------------------------------------------------------------------------------------ */
/* Running all ranks */

/* kind 0: activation, 1: gradient (as in the communication pass), WIRE_TIED (stage: the
 * receiver's tied stage), WIRE_NORM (mb: the round). */
typedef struct wire {
    int kind, stage, mb; /* named by the receiver, as in the communication pass */
} wire;

enum { WIRE_TIED = 2, WIRE_NORM = 3, WIRE_SYNC = 4 };

typedef struct link {
    wire *m;
    double *sent_at, *recv_at;
    size_t cap, sent, recvd;
} link;

double sl__cost_of(const sl_schedule *s, const sl_schedule_costs *c, int rank, const sl_action *a)
{
    if (a->type == SL_ACTION_OPT) return c->rank_opt ? c->rank_opt[rank] : 0;
    if (a->type == SL_ACTION_TIED) return c->tied;
    if (a->type == SL_ACTION_NORM) return s->ranks > 1 ? c->norm : 0;
    if (a->type == SL_ACTION_SYNC) return c->tied;
    if (!sl__is_compute(a->type)) return 0;
    double f = c->stage_f ? c->stage_f[a->stage] : c->f;
    double b = c->stage_b ? c->stage_b[a->stage] : c->b;
    double w = c->stage_w ? c->stage_w[a->stage] : c->w;
    switch (a->type) {
    case SL_ACTION_F:
    case SL_ACTION_R:
        return f;
    case SL_ACTION_B:
        return b;
    case SL_ACTION_I:
        return b - w;
    case SL_ACTION_W:
        return w;
    default:
        return 0;
    }
}

static int wire_kind(enum sl_action_type t)
{
    return t == SL_ACTION_TIED ? WIRE_TIED : t == SL_ACTION_SYNC ? WIRE_SYNC : WIRE_NORM;
}

/* What the sender's action looked like, for messages. */
static const char *wire_text(const wire *w, char *buf, size_t cap)
{
    if (w->kind == WIRE_TIED) {
        snprintf(buf, cap, "the tied gradient for stage %d", w->stage);
        return buf;
    }
    if (w->kind == WIRE_SYNC) {
        snprintf(buf, cap, "the replica gradients");
        return buf;
    }
    if (w->kind == WIRE_NORM) {
        snprintf(buf, cap, "NORM's %s", w->mb ? "total" : "partial sum");
        return buf;
    }
    sl_action a = {w->kind ? SL_ACTION_B : SL_ACTION_F, w->kind ? w->stage + 1 : w->stage - 1,
                   w->mb, -1};
    return fmt(&a, buf, cap);
}

/* A send on L at time *t: false while L holds `depth` messages not yet received; else the message
 * is queued and *t is when it goes (not before the message `depth` places back was received). */
static bool link_send(link *L, int depth, wire w, double *t)
{
    if (L->sent - L->recvd >= (size_t)depth) return false;
    if (L->sent >= (size_t)depth) *t = SL_MAX(*t, L->recv_at[L->sent - depth]);
    L->m[L->sent] = w;
    L->sent_at[L->sent++] = *t;
    return true;
}

/* The receive of `want` from L at time *t: 0 while L is empty, 1 when it came (*t is then when it
 * arrived), -1 when the next message on L is another one. */
static int link_recv(link *L, wire want, double latency, double *t)
{
    if (L->recvd == L->sent) return 0;
    const wire *got = &L->m[L->recvd];
    if (got->kind != want.kind || got->stage != want.stage || got->mb != want.mb) return -1;
    *t = SL_MAX(*t, L->sent_at[L->recvd] + latency);
    L->recv_at[L->recvd++] = *t;
    return 1;
}

/* Rank r's action `pc` expected `want` from `peer`, but the link held another message first. */
static int wrong_order(int r, size_t pc, const sl_action *a, const wire *want, int peer,
                       const link *L)
{
    char t1[40], t2[40], t3[40];
    return sl_fail(SL_EINVAL,
                   "rank %d: action %zu (%s) expects %s from rank %d, but the next message on "
                   "link r%d->r%d is %s: the two ends send and receive in different orders",
                   r, pc, fmt(a, t1, sizeof t1), wire_text(want, t2, sizeof t2), peer, peer, r,
                   wire_text(&L->m[L->recvd], t3, sizeof t3));
}

/* Processor sharing (costs->cores): the compute actions of the ranks that share the cores run
 * together, as the kernel time-slices their threads: while ranks with T threads in all compute,
 * each runs at min(1, cores / T) of its speed, and an action ends once it has had its cost's worth.
 * A rank that reaches such an action leaves it running; `now` moves from one event to the next (an
 * action ending, or one ready at a later time joining) once no rank can do anything else. */
typedef struct ps_state {
    double now;
    bool *running, *finished; /* [ranks] */
    double *left, *from, *to; /* [ranks]: the work still to do, when it joined, when it ended */
} ps_state;

/* Moves `now` to the next event; false when no action runs. */
static bool ps_advance(ps_state *ps, const sl_schedule_costs *c, int D)
{
    double threads = 0, next = INFINITY;
    bool any = false;
    for (int r = 0; r < D; r++) {
        if (!ps->running[r] || ps->finished[r]) continue;
        any = true;
        if (ps->from[r] <= ps->now)
            threads += c->rank_threads ? c->rank_threads[r] : 1;
        else
            next = SL_MIN(next, ps->from[r]);
    }
    if (!any) return false;
    const double rate = threads > c->cores ? c->cores / threads : 1.0;
    for (int r = 0; r < D; r++)
        if (ps->running[r] && !ps->finished[r] && ps->from[r] <= ps->now)
            next = SL_MIN(next, ps->now + ps->left[r] / rate);
    for (int r = 0; r < D; r++) {
        if (!ps->running[r] || ps->finished[r] || ps->from[r] > ps->now) continue;
        if (ps->now + ps->left[r] / rate <= next) {
            ps->finished[r] = true;
            ps->to[r] = next;
        } else {
            ps->left[r] -= rate * (next - ps->now);
        }
    }
    ps->now = next;
    return true;
}

int sl__schedule_run(const sl_schedule *s, int depth, const sl_schedule_costs *costs,
                     sl_schedule_sim *sim)
{
    const int D = s->ranks;
    int st = SL_OK;
    link *links = sl_alloc(sizeof *links * (size_t)D * (size_t)D); /* [src * D + dst] */
    size_t *pc = sl_alloc(sizeof *pc * (size_t)D);
    int *sub = sl_alloc(sizeof *sub * (size_t)D); /* messages of a TIED/NORM already done */
    double *clock = sl_alloc(sizeof *clock * (size_t)D);
    double *began = sl_alloc(sizeof *began * (size_t)D); /* when the TIED/NORM in progress began */
    const bool sharing = costs && costs->cores > 0;
    ps_state ps = {0};
    if (sharing) {
        ps.running = sl_alloc(sizeof(bool) * 2 * (size_t)D);
        ps.left = sl_alloc(sizeof(double) * 3 * (size_t)D);
        ps.finished = ps.running ? ps.running + D : NULL;
        ps.from = ps.left ? ps.left + D : NULL;
        ps.to = ps.left ? ps.left + 2 * D : NULL;
    }
    if (!links || !pc || !sub || !clock || !began || (sharing && (!ps.running || !ps.left))) {
        st = SL_ENOMEM;
        goto out;
    }
    for (int r = 0; r < D; r++)
        for (size_t i = 0; i < s->count[r]; i++) {
            const sl_action *a = &s->actions[r][i];
            if ((a->type == SL_ACTION_SEND_F || a->type == SL_ACTION_SEND_B) && a->peer >= 0 &&
                a->peer < D)
                links[r * D + a->peer].cap++;
            sl_exchange ex[SL_EXCHANGES_MAX];
            int n = sl_action_exchanges(s, r, a, ex);
            for (int k = 0; k < n; k++)
                if (ex[k].send) links[r * D + ex[k].peer].cap++;
        }
    for (int l = 0; l < D * D; l++) {
        size_t n = links[l].cap ? links[l].cap : 1;
        links[l].m = malloc(sizeof(wire) * n);
        links[l].sent_at = malloc(sizeof(double) * n);
        links[l].recv_at = malloc(sizeof(double) * n);
        if (!links[l].m || !links[l].sent_at || !links[l].recv_at) {
            st = sl_fail(SL_ENOMEM, "out of memory simulating the schedule");
            goto out;
        }
    }
    const double latency = costs ? costs->latency : 0;
    char t1[40], t2[40];
    bool progress = true;
    while (progress) {
        progress = false;
        for (int r = 0; r < D; r++) {
            while (pc[r] < s->count[r]) {
                const sl_action *a = &s->actions[r][pc[r]];
                double start = clock[r], end;
                if (sl__is_reduction(a->type)) {
                    /* The action's messages one by one; it ends once they are all done. */
                    sl_exchange ex[SL_EXCHANGES_MAX];
                    int n = sl_action_exchanges(s, r, a, ex);
                    if (n < 0) {
                        st = sl_fail(SL_EINVAL, "rank %d: action %zu (%s) cannot run on this rank",
                                     r, pc[r], fmt(a, t1, sizeof t1));
                        goto out;
                    }
                    if (sub[r] == 0) began[r] = clock[r];
                    bool blocked = false;
                    while (sub[r] < n && !blocked) {
                        const sl_exchange *x = &ex[sub[r]];
                        wire w = {wire_kind(a->type), -1, x->round};
                        if (a->type == SL_ACTION_TIED)
                            w.stage = x->send ? s->tied_stages[0] + s->tied_stages[1] - a->stage
                                              : a->stage;
                        double t = clock[r];
                        int got = x->send ? link_send(&links[r * D + x->peer], depth, w, &t)
                                          : link_recv(&links[x->peer * D + r], w, latency, &t);
                        if (got < 0) {
                            st = wrong_order(r, pc[r], a, &w, x->peer, &links[x->peer * D + r]);
                            goto out;
                        }
                        if (!got) {
                            blocked = true;
                            break;
                        }
                        clock[r] = t;
                        sub[r]++;
                        progress = true;
                    }
                    if (blocked) break;
                    start = began[r];
                    end = clock[r] + (costs ? sl__cost_of(s, costs, r, a) : 0);
                    sub[r] = 0;
                } else if (a->peer < -1 || a->peer >= D) {
                    st = sl_fail(SL_EINVAL,
                                 "rank %d: action %zu (%s) names rank %d, outside "
                                 "0..%d",
                                 r, pc[r], fmt(a, t1, sizeof t1), a->peer, D - 1);
                    goto out;
                } else if (a->type == SL_ACTION_SEND_F || a->type == SL_ACTION_SEND_B) {
                    bool fw = a->type == SL_ACTION_SEND_F;
                    wire w = {fw ? 0 : 1, fw ? a->stage + 1 : a->stage - 1, a->mb};
                    if (!link_send(&links[r * D + a->peer], depth, w, &start)) break;
                    end = start;
                } else if (a->type == SL_ACTION_RECV_F || a->type == SL_ACTION_RECV_B) {
                    wire want = {a->type == SL_ACTION_RECV_F ? 0 : 1, a->stage, a->mb};
                    int got = link_recv(&links[a->peer * D + r], want, latency, &start);
                    if (got < 0) {
                        st = wrong_order(r, pc[r], a, &want, a->peer, &links[a->peer * D + r]);
                        goto out;
                    }
                    if (!got) break;
                    end = start;
                } else {
                    double d = costs ? sl__cost_of(s, costs, r, a) : 0;
                    end = start + d;
                    if (sharing && sl__is_compute(a->type) &&
                        (!costs->rank_threads || costs->rank_threads[r] > 0)) {
                        if (!ps.running[r]) {
                            ps.running[r] = true;
                            ps.finished[r] = false;
                            ps.left[r] = d;
                            ps.from[r] = SL_MAX(start, ps.now);
                        }
                        if (!ps.finished[r]) break; /* running: ps_advance clocks it */
                        ps.running[r] = false;
                        start = ps.from[r];
                        end = ps.to[r];
                    }
                }
                if (sim) {
                    sim->start[r][pc[r]] = start;
                    sim->end[r][pc[r]] = end;
                }
                clock[r] = end;
                pc[r]++;
                progress = true;
            }
        }
        if (!progress && sharing) progress = ps_advance(&ps, costs, D);
    }
    /* Anything left is blocked for good: say who waits for what. */
    char why[2048];
    size_t len = 0;
    for (int r = 0; r < D && len < sizeof why - 1; r++) {
        if (pc[r] == s->count[r]) continue;
        const sl_action *a = &s->actions[r][pc[r]];
        int n;
        sl_exchange ex[SL_EXCHANGES_MAX];
        int nex = sl_action_exchanges(s, r, a, ex);
        if (sl__is_reduction(a->type) && sub[r] < nex) {
            const sl_exchange *x = &ex[sub[r]];
            wire w = {wire_kind(a->type), a->stage, x->round};
            if (x->send)
                n = snprintf(why + len, sizeof why - len,
                             "%srank %d is blocked on action %zu (%s), waiting for rank %d to "
                             "receive (the link holds %d messages)",
                             len ? "; " : "", r, pc[r], fmt(a, t1, sizeof t1), x->peer, depth);
            else
                n = snprintf(why + len, sizeof why - len,
                             "%srank %d is blocked on action %zu (%s), waiting for rank %d to "
                             "send %s",
                             len ? "; " : "", r, pc[r], fmt(a, t1, sizeof t1), x->peer,
                             wire_text(&w, t2, sizeof t2));
        } else if (a->type == SL_ACTION_RECV_F || a->type == SL_ACTION_RECV_B) {
            wire want = {a->type == SL_ACTION_RECV_F ? 0 : 1, a->stage, a->mb};
            n = snprintf(why + len, sizeof why - len,
                         "%srank %d is blocked on action %zu (%s), "
                         "waiting for rank %d to send %s",
                         len ? "; " : "", r, pc[r], fmt(a, t1, sizeof t1), a->peer,
                         wire_text(&want, t2, sizeof t2));
        } else {
            n = snprintf(why + len, sizeof why - len,
                         "%srank %d is blocked on action %zu (%s), "
                         "waiting for rank %d to receive (the link holds %d messages)",
                         len ? "; " : "", r, pc[r], fmt(a, t1, sizeof t1), a->peer, depth);
        }
        len = n > 0 ? SL_MIN(len + (size_t)n, sizeof why - 1) : len;
    }
    if (len) {
        st = sl_fail(SL_EDEADLOCK, "the schedule cannot complete with queue depth %d: %s", depth,
                     why);
        goto out;
    }
    for (int l = 0; l < D * D; l++)
        if (links[l].recvd != links[l].sent) {
            wire *w = &links[l].m[links[l].recvd];
            st = sl_fail(SL_EINVAL, "rank %d sends %s to rank %d, which never receives it", l / D,
                         wire_text(w, t1, sizeof t1), l % D);
            goto out;
        }
out:
    if (links)
        for (int l = 0; l < D * D; l++) {
            free(links[l].m);
            free(links[l].sent_at);
            free(links[l].recv_at);
        }
    free(links);
    free(pc);
    free(sub);
    free(clock);
    free(began);
    free(ps.running);
    free(ps.left);
    return st;
}
