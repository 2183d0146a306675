/* Schedules as data: building, the text form, and the communication pass. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "runtime/schedule/schedule_internal.h"

/* ------------------------------------------------------------------------------------------ */
/* Building */

int sl_schedule_create(const sl_schedule_params *p, bool split_backward, sl_schedule **out)
{
    if (!p || !out) return sl_fail(SL_EINVAL, "sl_schedule_create: null argument");
    *out = NULL;
    int v = p->chunks ? p->chunks : 1;
    if (p->ranks < 1 || p->microbatches < 1 || v < 1)
        return sl_fail(SL_EINVAL,
                       "a schedule needs ranks, micro-batches and chunks >= 1 "
                       "(got %d, %d, %d)",
                       p->ranks, p->microbatches, v);
    if (p->ranks > SL_SCHEDULE_MAX_RANKS || p->microbatches > SL_SCHEDULE_MAX_MICROBATCHES ||
        v > SL_SCHEDULE_MAX_CHUNKS)
        return sl_fail(SL_EINVAL,
                       "schedule too large: at most %d ranks, %d micro-batches and %d chunks "
                       "(got %d, %d, %d)",
                       SL_SCHEDULE_MAX_RANKS, SL_SCHEDULE_MAX_MICROBATCHES, SL_SCHEDULE_MAX_CHUNKS,
                       p->ranks, p->microbatches, v);
    if ((long)p->ranks * v * p->microbatches > SL_SCHEDULE_MAX_WORK)
        return sl_fail(SL_EINVAL,
                       "schedule too large: stages x chunks x micro-batches = %ld, at "
                       "most %d",
                       (long)p->ranks * v * p->microbatches, SL_SCHEDULE_MAX_WORK);
    if (p->placement == SL_PLACE_V && v != 2)
        return sl_fail(SL_EINVAL,
                       "the V placement holds two stages per rank (rank r: stages r and 2D-1-r); "
                       "got chunks=%d",
                       v);
    const int *tied = p->tied_stages;
    if (tied[0] != tied[1] && (tied[0] < 0 || tied[0] >= tied[1] || tied[1] >= p->ranks * v))
        return sl_fail(SL_EINVAL,
                       "tied stages %d and %d: they must be two stages of the %d, the first "
                       "before the last",
                       tied[0], tied[1], p->ranks * v);
    if (tied[0] != tied[1]) {
        int a = sl_placement_rank(p->placement, p->ranks, tied[0]);
        int b = sl_placement_rank(p->placement, p->ranks, tied[1]);
        if (a != b && (a - b + p->ranks) % p->ranks != 1 && (b - a + p->ranks) % p->ranks != 1)
            return sl_fail(SL_EINVAL,
                           "tied stages %d and %d run on ranks %d and %d, which are not "
                           "neighbours on the ring: their gradients cannot be summed over a link",
                           tied[0], tied[1], a, b);
    }
    sl_schedule *s = sl_alloc(sizeof *s);
    if (!s) return SL_ENOMEM;
    snprintf(s->name, sizeof s->name, "%s", p->name ? p->name : "custom");
    s->ranks = p->ranks;
    s->microbatches = p->microbatches;
    s->chunks = v;
    s->stages = p->ranks * v;
    s->recompute = p->recompute;
    s->split_backward = split_backward;
    s->tied_stages[0] = tied[0];
    s->tied_stages[1] = tied[0] != tied[1] ? tied[1] : tied[0];
    s->forward_only = p->forward_only;
    s->norm = p->norm && p->ranks > 1 && !s->forward_only;
    if (s->forward_only) s->tied_stages[1] = s->tied_stages[0];
    s->placement = p->placement;
    s->chains = 1;
    s->count = sl_alloc(sizeof *s->count * (size_t)s->ranks);
    s->cap = sl_alloc(sizeof *s->cap * (size_t)s->ranks);
    s->actions = sl_alloc(sizeof *s->actions * (size_t)s->ranks);
    s->stage_rank = sl_alloc(sizeof *s->stage_rank * (size_t)s->stages);
    if (!s->count || !s->cap || !s->actions || !s->stage_rank) {
        sl_schedule_free(s);
        return SL_ENOMEM;
    }
    for (int st = 0; st < s->stages; st++)
        s->stage_rank[st] = sl_placement_rank(s->placement, s->ranks, st);
    *out = s;
    return SL_OK;
}

void sl_schedule_free(sl_schedule *s)
{
    if (!s) return;
    if (s->actions)
        for (int r = 0; r < s->ranks; r++) free(s->actions[r]);
    free(s->actions);
    free(s->count);
    free(s->cap);
    free(s->stage_rank);
    free(s);
}

static int reserve(sl_schedule *s, int rank, size_t n)
{
    if (n <= s->cap[rank]) return SL_OK;
    size_t cap = s->cap[rank] ? s->cap[rank] : 16;
    while (cap < n) cap *= 2;
    sl_action *a = realloc(s->actions[rank], sizeof *a * cap);
    if (!a) return sl_fail(SL_ENOMEM, "out of memory for %zu schedule actions", cap);
    s->actions[rank] = a;
    s->cap[rank] = cap;
    return SL_OK;
}

int sl_schedule_append(sl_schedule *s, int rank, const sl_action *a)
{
    if (!s || !a || rank < 0 || rank >= s->ranks)
        return sl_fail(SL_EINVAL, "sl_schedule_append: bad schedule, rank %d or action", rank);
    SL_TRY(reserve(s, rank, s->count[rank] + 1));
    s->actions[rank][s->count[rank]++] = *a;
    return SL_OK;
}

int sl_schedule_set_actions(sl_schedule *s, int rank, const sl_action *a, size_t n)
{
    if (!s || (!a && n) || rank < 0 || rank >= s->ranks)
        return sl_fail(SL_EINVAL, "sl_schedule_set_actions: bad schedule, rank %d or actions",
                       rank);
    SL_TRY(reserve(s, rank, n));
    if (n) memmove(s->actions[rank], a, sizeof *a * n);
    s->count[rank] = n;
    return SL_OK;
}

const sl_action *sl_schedule_actions(const sl_schedule *s, int rank, size_t *count)
{
    if (!s || rank < 0 || rank >= s->ranks) {
        if (count) *count = 0;
        return NULL;
    }
    if (count) *count = s->count[rank];
    return s->actions[rank];
}

int sl_placement_rank(enum sl_placement placement, int ranks, int stage)
{
    if (placement == SL_PLACE_V) return stage < ranks ? stage : 2 * ranks - 1 - stage;
    return stage % ranks;
}

int sl_schedule_rank_of_stage(const sl_schedule *s, int stage)
{
    if (!s || stage < 0 || stage >= s->stages) return -1;
    return s->stage_rank[stage];
}

int sl_schedule_set_stage_rank(sl_schedule *s, int stage, int rank)
{
    if (!s || stage < 0 || stage >= s->stages || rank < 0 || rank >= s->ranks)
        return sl_fail(SL_EINVAL, "sl_schedule_set_stage_rank: stage %d or rank %d out of range",
                       stage, rank);
    s->stage_rank[stage] = rank;
    s->placement = SL_PLACE_CUSTOM;
    return SL_OK;
}

int sl_schedule_link_dir(const sl_schedule *s, int rank, const sl_action *a)
{
    if (!s || !a || rank < 0 || rank >= s->ranks || s->ranks < 2) return -1;
    bool send = a->type == SL_ACTION_SEND_F || a->type == SL_ACTION_SEND_B;
    bool act = a->type == SL_ACTION_SEND_F || a->type == SL_ACTION_RECV_F;
    if (!send && !act && a->type != SL_ACTION_RECV_B) return -1;
    const int D = s->ranks, next = (rank + 1) % D, prev = (rank - 1 + D) % D;
    if (next == prev) return a->peer == next ? (act == send ? 0 : 1) : -1;
    return a->peer == next ? 0 : a->peer == prev ? 1 : -1;
}

long sl_schedule_upstream_read(const sl_schedule *s, int rank)
{
    size_t n;
    const sl_action *acts = sl_schedule_actions(s, rank, &n);
    for (size_t i = 0; acts && i < n; i++) {
        const sl_action *a = &acts[i];
        switch (a->type) {
        case SL_ACTION_RECV_F:
        case SL_ACTION_RECV_B:
            if (sl_schedule_link_dir(s, rank, a) == 0) return (long)i;
            break;
        case SL_ACTION_SEND_F:
        case SL_ACTION_SEND_B:
            if (sl_schedule_link_dir(s, rank, a) != 0) return -1;
            break;
        case SL_ACTION_TIED:
        case SL_ACTION_NORM:
        case SL_ACTION_SYNC:
            return -1;
        default:
            break;
        }
    }
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* Text form */

static const char *const type_names[] = {
    [SL_ACTION_F] = "F",           [SL_ACTION_B] = "B",           [SL_ACTION_I] = "I",
    [SL_ACTION_W] = "W",           [SL_ACTION_R] = "R",           [SL_ACTION_SEND_F] = "SEND_F",
    [SL_ACTION_RECV_F] = "RECV_F", [SL_ACTION_SEND_B] = "SEND_B", [SL_ACTION_RECV_B] = "RECV_B",
    [SL_ACTION_OPT] = "OPT",       [SL_ACTION_TIED] = "TIED",     [SL_ACTION_NORM] = "NORM",
    [SL_ACTION_SYNC] = "SYNC",
};

const char *sl_action_type_name(enum sl_action_type t)
{
    if ((unsigned)t >= SL_ARRAY_LEN(type_names)) return "?";
    return type_names[t];
}

int sl_action_format(const sl_action *a, char *buf, size_t cap)
{
    if (!a) return snprintf(buf, cap, "?");
    switch (a->type) {
    case SL_ACTION_F:
    case SL_ACTION_B:
    case SL_ACTION_I:
    case SL_ACTION_W:
    case SL_ACTION_R:
        return snprintf(buf, cap, "%d%s%d", a->stage, type_names[a->type], a->mb);
    case SL_ACTION_SEND_F:
        return snprintf(buf, cap, "SEND_F %dF%d->r%d", a->stage, a->mb, a->peer);
    case SL_ACTION_RECV_F:
        return snprintf(buf, cap, "RECV_F %dF%d<-r%d", a->stage, a->mb, a->peer);
    case SL_ACTION_SEND_B:
        return snprintf(buf, cap, "SEND_B %dB%d->r%d", a->stage, a->mb, a->peer);
    case SL_ACTION_RECV_B:
        return snprintf(buf, cap, "RECV_B %dB%d<-r%d", a->stage, a->mb, a->peer);
    case SL_ACTION_OPT:
        return snprintf(buf, cap, "OPT");
    case SL_ACTION_TIED:
        return snprintf(buf, cap, "TIED %d<->r%d", a->stage, a->peer);
    case SL_ACTION_NORM:
        return snprintf(buf, cap, "NORM");
    case SL_ACTION_SYNC:
        return snprintf(buf, cap, "SYNC<->r%d", a->peer);
    }
    return snprintf(buf, cap, "?");
}

/* Reads a non-negative decimal number; returns the number of digits (0 if none or too big). */
static size_t read_int(const char *p, int *out)
{
    size_t n = 0;
    long v = 0;
    while (isdigit((unsigned char)p[n])) {
        v = v * 10 + (p[n] - '0');
        if (v > 1000000000L) return 0;
        n++;
    }
    *out = (int)v;
    return n;
}

/* Copies the token at p (up to whitespace) into buf for error messages. */
static const char *token(const char *p, char *buf, size_t cap)
{
    size_t n = 0;
    while (p[n] && !isspace((unsigned char)p[n]) && n + 1 < cap) n++;
    memcpy(buf, p, n);
    buf[n] = 0;
    return buf;
}

int sl_action_parse(const char *text, sl_action *out, size_t *used)
{
    if (!text || !out) return sl_fail(SL_EINVAL, "sl_action_parse: null argument");
    const char *p = text;
    while (isspace((unsigned char)*p)) p++;
    const char *start = p;
    char tok[48];
    sl_action a = {.type = SL_ACTION_OPT, .stage = -1, .mb = -1, .peer = -1};
    static const struct {
        const char *name;
        enum sl_action_type type;
        char letter;
        int to;
    } comms[] = {
        {"SEND_F", SL_ACTION_SEND_F, 'F', 1},
        {"RECV_F", SL_ACTION_RECV_F, 'F', 0},
        {"SEND_B", SL_ACTION_SEND_B, 'B', 1},
        {"RECV_B", SL_ACTION_RECV_B, 'B', 0},
    };
    if (!strncmp(p, "OPT", 3) && (p[3] == 0 || isspace((unsigned char)p[3]))) {
        p += 3;
        goto done;
    }
    if (!strncmp(p, "NORM", 4) && (p[4] == 0 || isspace((unsigned char)p[4]))) {
        a.type = SL_ACTION_NORM;
        p += 4;
        goto done;
    }
    if (!strncmp(p, "SYNC<->r", 8)) {
        size_t n = read_int(p + 8, &a.peer);
        if (!n) goto bad;
        p += 8 + n;
        a.type = SL_ACTION_SYNC;
        goto done;
    }
    if (!strncmp(p, "TIED", 4)) {
        p += 4;
        while (*p == ' ' || *p == '\t') p++;
        size_t n = read_int(p, &a.stage);
        if (!n || strncmp(p + n, "<->r", 4)) goto bad;
        p += n + 4;
        if (!(n = read_int(p, &a.peer))) goto bad;
        p += n;
        a.type = SL_ACTION_TIED;
        goto done;
    }
    for (size_t i = 0; i < SL_ARRAY_LEN(comms); i++) {
        size_t len = strlen(comms[i].name);
        if (strncmp(p, comms[i].name, len)) continue;
        p += len;
        while (*p == ' ' || *p == '\t') p++;
        size_t n = read_int(p, &a.stage);
        if (!n || p[n] != comms[i].letter) goto bad;
        p += n + 1;
        if (!(n = read_int(p, &a.mb))) goto bad;
        p += n;
        if (strncmp(p, comms[i].to ? "->r" : "<-r", 3)) goto bad;
        p += 3;
        if (!(n = read_int(p, &a.peer))) goto bad;
        p += n;
        a.type = comms[i].type;
        goto done;
    }
    {
        size_t n = read_int(p, &a.stage);
        if (!n) goto bad;
        p += n;
        switch (*p) {
        case 'F':
            a.type = SL_ACTION_F;
            break;
        case 'B':
            a.type = SL_ACTION_B;
            break;
        case 'I':
            a.type = SL_ACTION_I;
            break;
        case 'W':
            a.type = SL_ACTION_W;
            break;
        case 'R':
            a.type = SL_ACTION_R;
            break;
        default:
            goto bad;
        }
        p++;
        if (!(n = read_int(p, &a.mb))) goto bad;
        p += n;
    }
done:
    if (*p && !isspace((unsigned char)*p)) goto bad;
    *out = a;
    if (used) *used = (size_t)(p - text);
    return SL_OK;
bad:
    return sl_fail(SL_EFORMAT,
                   "bad action '%s': write compute actions as <stage><F|B|I|W|R><mb> (5F2), "
                   "transfers as SEND_F 5F2->r1, RECV_F 5F2<-r0, SEND_B 5B2->r0, RECV_B 5B2<-r2, "
                   "reductions as TIED 0<->r3 and NORM, and OPT",
                   token(start, tok, sizeof tok));
}

int sl_schedule_parse_rank(sl_schedule *s, int rank, const char *text)
{
    if (!s || !text || rank < 0 || rank >= s->ranks)
        return sl_fail(SL_EINVAL, "sl_schedule_parse_rank: bad schedule, rank %d or text", rank);
    s->count[rank] = 0;
    const char *p = text;
    for (;;) {
        while (isspace((unsigned char)*p)) p++;
        if (!*p) break;
        sl_action a;
        size_t used;
        int st = sl_action_parse(p, &a, &used);
        if (st) return sl_fail_context(st, "rank %d", rank);
        SL_TRY(sl_schedule_append(s, rank, &a));
        p += used;
    }
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* The communication pass */

bool sl__is_reduction(enum sl_action_type t)
{
    return t == SL_ACTION_TIED || t == SL_ACTION_NORM || t == SL_ACTION_SYNC;
}

bool sl__chain_first(const sl_schedule *s, int stage)
{
    return stage % (s->stages / s->chains) == 0;
}

bool sl__chain_last(const sl_schedule *s, int stage)
{
    return (stage + 1) % (s->stages / s->chains) == 0;
}

bool sl__chain_has(const sl_schedule *s, int stage, int mb)
{
    if (s->chains == 1) return true;
    return (stage < s->stages / 2) == (mb < s->microbatches / 2);
}

bool sl__is_compute(enum sl_action_type t)
{
    return t == SL_ACTION_F || t == SL_ACTION_B || t == SL_ACTION_I || t == SL_ACTION_W ||
           t == SL_ACTION_R;
}

/* A message on a link, named by the receiver: kind 0 = forward activation, 1 = gradient;
 * `stage` is the receiving stage. */
typedef struct msg {
    int kind, stage, mb;
} msg;

typedef struct link_queue {
    msg *m;
    size_t n, cap;
} link_queue;

static int push_msg(link_queue *q, msg m)
{
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 16;
        msg *nm = realloc(q->m, sizeof *nm * cap);
        if (!nm) return sl_fail(SL_ENOMEM, "out of memory in the communication pass");
        q->m = nm;
        q->cap = cap;
    }
    q->m[q->n++] = m;
    return SL_OK;
}

#define RANK(stage) (s->stage_rank[stage])

int sl_schedule_insert_comms(sl_schedule *s)
{
    if (!s) return sl_fail(SL_EINVAL, "sl_schedule_insert_comms: null schedule");
    const int D = s->ranks, S = s->stages, M = s->microbatches;
    int st = SL_OK;
    link_queue *links = sl_alloc(sizeof *links * (size_t)D * (size_t)D); /* [src*D + dst] */
    size_t *next = sl_alloc(sizeof *next * (size_t)D * (size_t)D);       /* receive cursor */
    /* received[kind][stage][mb]: the receiver already pulled this message off its link */
    unsigned char *received = sl_alloc((size_t)2 * (size_t)S * (size_t)M);
    sl_action **compute = sl_alloc(sizeof *compute * (size_t)D);
    size_t *ncompute = sl_alloc(sizeof *ncompute * (size_t)D);
    if (!links || !next || !received || !compute || !ncompute) {
        st = SL_ENOMEM;
        goto out;
    }
    /* Keep only the compute order of every rank. */
    for (int r = 0; r < D; r++) {
        compute[r] = sl_alloc(sizeof(sl_action) * (s->count[r] ? s->count[r] : 1));
        if (!compute[r]) {
            st = SL_ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < s->count[r]; i++) {
            sl_action a = s->actions[r][i];
            if (!sl__is_compute(a.type)) continue;
            if (a.stage < 0 || a.stage >= S || a.mb < 0 || a.mb >= M) {
                char t[32];
                sl_action_format(&a, t, sizeof t);
                st = sl_fail(SL_EINVAL,
                             "rank %d: action %s names a stage or micro-batch outside "
                             "the schedule (%d stages, %d micro-batches)",
                             r, t, S, M);
                goto out;
            }
            if (!sl__chain_has(s, a.stage, a.mb)) {
                char t[32];
                sl_action_format(&a, t, sizeof t);
                st = sl_fail(SL_EINVAL,
                             "rank %d: action %s: micro-batch %d goes through the other replica", r,
                             t, a.mb);
                goto out;
            }
            compute[r][ncompute[r]++] = a;
        }
    }
    /* The order of messages on each link is the sender's compute order. */
    for (int r = 0; r < D; r++) {
        for (size_t i = 0; i < ncompute[r]; i++) {
            sl_action a = compute[r][i];
            if (a.type == SL_ACTION_F && !sl__chain_last(s, a.stage) && RANK(a.stage + 1) != r)
                st = push_msg(&links[r * D + RANK(a.stage + 1)], (msg){0, a.stage + 1, a.mb});
            else if ((a.type == SL_ACTION_B || a.type == SL_ACTION_I) &&
                     !sl__chain_first(s, a.stage) && RANK(a.stage - 1) != r)
                st = push_msg(&links[r * D + RANK(a.stage - 1)], (msg){1, a.stage - 1, a.mb});
            if (st) goto out;
        }
    }
    for (int r = 0; r < D; r++) {
        s->count[r] = 0;
        for (size_t i = 0; i < ncompute[r]; i++) {
            sl_action a = compute[r][i];
            /* Receive what this action needs, and everything queued ahead of it on that link. */
            int kind = -1, src = -1;
            if (a.type == SL_ACTION_F && !sl__chain_first(s, a.stage) && RANK(a.stage - 1) != r)
                kind = 0, src = RANK(a.stage - 1);
            else if ((a.type == SL_ACTION_B || a.type == SL_ACTION_I) &&
                     !sl__chain_last(s, a.stage) && RANK(a.stage + 1) != r)
                kind = 1, src = RANK(a.stage + 1);
            if (kind >= 0 && !received[((size_t)kind * S + a.stage) * M + a.mb]) {
                link_queue *q = &links[src * D + r];
                size_t *cur = &next[src * D + r];
                bool found = false;
                while (!found && *cur < q->n) {
                    msg m = q->m[(*cur)++];
                    received[((size_t)m.kind * S + m.stage) * M + m.mb] = 1;
                    sl_action rv = {m.kind ? SL_ACTION_RECV_B : SL_ACTION_RECV_F, m.stage, m.mb,
                                    src};
                    if ((st = sl_schedule_append(s, r, &rv))) goto out;
                    found = m.kind == kind && m.stage == a.stage && m.mb == a.mb;
                }
                if (!found) {
                    char t[32];
                    sl_action_format(&a, t, sizeof t);
                    st = sl_fail(SL_EINVAL,
                                 "rank %d: %s needs %s from rank %d, which rank %d "
                                 "never produces",
                                 r, t, kind ? "a gradient" : "an input", src, src);
                    goto out;
                }
            }
            if ((st = sl_schedule_append(s, r, &a))) goto out;
            sl_action snd = {SL_ACTION_OPT, a.stage, a.mb, -1};
            if (a.type == SL_ACTION_F && !sl__chain_last(s, a.stage) && RANK(a.stage + 1) != r)
                snd.type = SL_ACTION_SEND_F, snd.peer = RANK(a.stage + 1);
            else if ((a.type == SL_ACTION_B || a.type == SL_ACTION_I) &&
                     !sl__chain_first(s, a.stage) && RANK(a.stage - 1) != r)
                snd.type = SL_ACTION_SEND_B, snd.peer = RANK(a.stage - 1);
            if (snd.type != SL_ACTION_OPT && (st = sl_schedule_append(s, r, &snd))) goto out;
        }
        if (s->forward_only) continue; /* an evaluation: no reductions, no optimizer step */
        /* Chimera sums the replicas first: the ranks of the tied stages then hold both (one of
         * each replica), summed locally. */
        sl_action sync = {SL_ACTION_SYNC, -1, -1, D - 1 - r};
        if (s->chains == 2 && (st = sl_schedule_append(s, r, &sync))) goto out;
        for (int k = 0; k < 2 && s->tied_stages[0] != s->tied_stages[1]; k++) {
            int mine = s->tied_stages[k], other = s->tied_stages[1 - k];
            if (RANK(mine) != r) continue;
            sl_action tied = {SL_ACTION_TIED, mine, -1, s->chains == 2 ? r : RANK(other)};
            if ((st = sl_schedule_append(s, r, &tied))) goto out;
            if (tied.peer == r) break; /* one local sum for both copies */
        }
        sl_action norm = {SL_ACTION_NORM, -1, -1, -1};
        if (s->norm && (st = sl_schedule_append(s, r, &norm))) goto out;
        sl_action opt = {SL_ACTION_OPT, -1, -1, -1};
        if ((st = sl_schedule_append(s, r, &opt))) goto out;
    }
out:
    if (links)
        for (int i = 0; i < D * D; i++) free(links[i].m);
    if (compute)
        for (int r = 0; r < D; r++) free(compute[r]);
    free(links);
    free(next);
    free(received);
    free(compute);
    free(ncompute);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* The messages of the reductions */

/* SYNC's messages on rank r (see schedule.h): its own pair's, then the outer pairs' it relays. */
static int sync_exchanges(int D, int r, sl_exchange *out)
{
    const int next = (r + 1) % D, prev = (r - 1 + D) % D;
    const bool left = r < D / 2;
    const int q = left ? r : D - 1 - r; /* this rank's pair */
    int n = 0;
    /* Pair 0 goes over the ring's wrap, rank 0's previous link and rank D-1's next one, as TIED
     * between the first and the last stage does (with two ranks, the two ends of one of their two
     * links); the other pairs inwards, through the middle. */
    int dir = q == 0 ? (r == 0 ? 1 : 0) : (left ? 0 : 1);
    int peer = dir ? prev : next;
    out[n++] = (sl_exchange){true, false, peer, dir, q};
    out[n++] = (sl_exchange){false, false, peer, dir, q};
    for (int p = q - 1; p >= 1; p--) {
        out[n++] = (sl_exchange){false, true, prev, 1, p}; /* rightwards: from rank p */
        out[n++] = (sl_exchange){true, true, next, 0, p};
        out[n++] = (sl_exchange){false, true, next, 0, p}; /* leftwards: from rank D-1-p */
        out[n++] = (sl_exchange){true, true, prev, 1, p};
    }
    return n;
}

int sl_action_exchanges(const sl_schedule *s, int r, const sl_action *a,
                        sl_exchange out[SL_EXCHANGES_MAX])
{
    if (!s || !a || r < 0 || r >= s->ranks) return -1;
    const int D = s->ranks;
    const int next = (r + 1) % D, prev = (r - 1 + D) % D;
    if (a->type == SL_ACTION_TIED) {
        const int *t = s->tied_stages;
        if (t[0] == t[1]) return -1;
        const int *sr = s->stage_rank;
        int k = sr[t[0]] == r && a->stage == t[0] ? 0 : sr[t[1]] == r && a->stage == t[1] ? 1 : -1;
        if (k < 0) return -1;
        /* Chimera: after SYNC the rank holds both copies, one in each replica's stage. */
        int peer = s->chains == 2 ? r : sr[t[1 - k]];
        if (a->peer != peer) return -1;
        if (peer == r) return 0;
        /* The first stage's rank reaches the last stage's over its previous link when that is the
         * twin's rank (so with two ranks, where both links lead to the twin, too). */
        int dir;
        if (peer == prev && (k == 0 || next != prev))
            dir = 1;
        else if (peer == next)
            dir = 0;
        else
            return -1;
        out[0] = (sl_exchange){true, false, peer, dir, 0};
        out[1] = (sl_exchange){false, false, peer, dir, 0};
        return 2;
    }
    if (a->type == SL_ACTION_SYNC) {
        if (s->chains != 2 || a->peer != D - 1 - r || D > SL_CHIMERA_MAX_RANKS) return -1;
        if (a->peer == r) return 0;
        return sync_exchanges(D, r, out);
    }
    if (a->type != SL_ACTION_NORM) return 0;
    if (D == 1) return 0;
    int n = 0;
    if (r == 0) {
        out[n++] = (sl_exchange){true, false, next, 0, 0};
        out[n++] = (sl_exchange){false, false, prev, 1, 1};
        if (D > 2) out[n++] = (sl_exchange){true, false, next, 0, 1};
    } else if (r < D - 1) {
        out[n++] = (sl_exchange){false, false, prev, 1, 0};
        out[n++] = (sl_exchange){true, false, next, 0, 0};
        out[n++] = (sl_exchange){false, false, prev, 1, 1};
        if (r + 1 < D - 1) out[n++] = (sl_exchange){true, false, next, 0, 1};
    } else {
        out[n++] = (sl_exchange){false, false, prev, 1, 0};
        out[n++] = (sl_exchange){true, false, next, 0, 1};
    }
    return n;
}
