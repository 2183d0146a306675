/* PyTorch pipelining's schedule CSV (torch.distributed.pipelining.schedules, _dump_csv and
 * _load_csv): one row per rank, one cell per action, "<stage><type><mb>" as `0F0`, `1I2`, `2W1`,
 * `3B0`, and in the with-communication form `3SEND_F1`, `1RECV_B0`, ... An empty cell is PyTorch's
 * None (an idle slot). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "runtime/schedule/schedule_internal.h"

/* PyTorch's names of our action types; R, TIED, NORM and OPT have none. */
static const char *torch_name(enum sl_action_type t)
{
    switch (t) {
    case SL_ACTION_F:
    case SL_ACTION_B:
    case SL_ACTION_I:
    case SL_ACTION_W:
    case SL_ACTION_SEND_F:
    case SL_ACTION_RECV_F:
    case SL_ACTION_SEND_B:
    case SL_ACTION_RECV_B:
        return sl_action_type_name(t);
    default:
        return NULL;
    }
}

int sl_schedule_write_pytorch(FILE *f, const sl_schedule *s, bool with_comms)
{
    if (!f || !s) return sl_fail(SL_EINVAL, "sl_schedule_write_pytorch: null argument");
    if (s->recompute)
        return sl_fail(SL_EINVAL,
                       "PyTorch's schedule format has no recompute action (R): write the "
                       "schedule without recompute");
    if (s->chains > 1)
        return sl_fail(SL_EINVAL,
                       "PyTorch's schedule format has one pipeline per schedule: %s's %d replicas "
                       "(each its own micro-batches) and their SYNC have no form in it; draw it "
                       "with --format text, json or svg",
                       s->name, s->chains);
    for (int r = 0; r < s->ranks; r++) {
        bool first = true;
        for (size_t i = 0; i < s->count[r]; i++) {
            const sl_action *a = &s->actions[r][i];
            const char *name = torch_name(a->type);
            if (!name || (!with_comms && !sl__is_compute(a->type))) continue;
            fprintf(f, "%s%d%s%d", first ? "" : ",", a->stage, name, a->mb);
            first = false;
        }
        fputc('\n', f);
    }
    return ferror(f) ? sl_fail(SL_EIO, "writing the schedule failed") : SL_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Reading */

typedef struct cell {
    int rank, col; /* where it was, for messages */
    sl_action a;
} cell;

typedef struct cells {
    cell *v;
    size_t n, cap;
} cells;

static int push(cells *c, cell x)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 256;
        cell *v = realloc(c->v, sizeof *v * cap);
        if (!v) return sl_fail(SL_ENOMEM, "out of memory reading a schedule");
        c->v = v;
        c->cap = cap;
    }
    c->v[c->n++] = x;
    return SL_OK;
}

/* One action "<stage><TYPE><mb>"; *skip for PyTorch's actions without a pipeline dependency
 * (UNSHARD, RESHARD: FSDP; REDUCE_GRAD: data parallel). */
static int parse_cell(const char *t, int rank, int col, sl_action *out, bool *skip)
{
    static const struct {
        const char *name;
        enum sl_action_type type;
    } types[] = {{"SEND_F", SL_ACTION_SEND_F}, {"RECV_F", SL_ACTION_RECV_F},
                 {"SEND_B", SL_ACTION_SEND_B}, {"RECV_B", SL_ACTION_RECV_B},
                 {"F", SL_ACTION_F},           {"I", SL_ACTION_I},
                 {"W", SL_ACTION_W},           {"B", SL_ACTION_B}};
    static const char *const ignored[] = {"UNSHARD", "RESHARD", "REDUCE_GRAD"};
    *skip = false;
    const char *p = t;
    long stage = 0, mb = 0;
    if (!isdigit((unsigned char)*p)) goto bad;
    while (isdigit((unsigned char)*p) && stage < 1000000) stage = stage * 10 + (*p++ - '0');
    for (size_t k = 0; k < SL_ARRAY_LEN(ignored); k++)
        if (!strncmp(p, ignored[k], strlen(ignored[k])) &&
            !isalpha((unsigned char)p[strlen(ignored[k])])) {
            *skip = true;
            return SL_OK;
        }
    for (size_t k = 0; k < SL_ARRAY_LEN(types); k++) {
        size_t len = strlen(types[k].name);
        if (strncmp(p, types[k].name, len) || !isdigit((unsigned char)p[len])) continue;
        p += len;
        while (isdigit((unsigned char)*p) && mb < 1000000) mb = mb * 10 + (*p++ - '0');
        if (*p) goto bad;
        *out = (sl_action){types[k].type, (int)stage, (int)mb, -1};
        return SL_OK;
    }
bad:
    return sl_fail(SL_EFORMAT,
                   "rank %d, action %d: '%s' is not a PyTorch pipelining action: write "
                   "<stage><F|I|W|B><mb> (0F0, 1I2) or <stage><SEND_F|RECV_F|SEND_B|RECV_B><mb> "
                   "(3SEND_F1)",
                   rank, col, t);
}

/* Splits `text` into rows and cells; OVERLAP_F_B pairs "(0F1;3B0)OVERLAP_F_B" become their
 * sub-actions in order. */
static int read_cells(const char *text, cells *out, int *rows)
{
    *rows = 0;
    const char *p = text;
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        int col = 0;
        const char *q = p, *end = p + len;
        if (len && end[-1] == '\r') end--;
        while (q < end) {
            const char *comma = memchr(q, ',', (size_t)(end - q));
            const char *ce = comma ? comma : end;
            char tok[96];
            size_t n = (size_t)(ce - q);
            while (n && isspace((unsigned char)*q)) q++, n--;
            while (n && isspace((unsigned char)q[n - 1])) n--;
            if (n >= sizeof tok)
                return sl_fail(SL_EFORMAT, "rank %d, action %d: a cell of %zu characters", *rows,
                               col, n);
            memcpy(tok, q, n);
            tok[n] = 0;
            const char *sub = tok;
            char *close = NULL;
            if (tok[0] == '(' && (close = strchr(tok, ')')) && !strcmp(close + 1, "OVERLAP_F_B")) {
                *close = 0;
                sub = tok + 1;
            }
            while (*sub) {
                char part[96];
                const char *semi = close ? strchr(sub, ';') : NULL;
                size_t m = semi ? (size_t)(semi - sub) : strlen(sub);
                memcpy(part, sub, m);
                part[m] = 0;
                sl_action a = {SL_ACTION_F, -1, -1, -1};
                bool skip;
                SL_TRY(parse_cell(part, *rows, col, &a, &skip));
                if (!skip) SL_TRY(push(out, (cell){*rows, col, a}));
                sub += m + (semi ? 1 : 0);
            }
            col++;
            if (!comma) break;
            q = comma + 1;
        }
        (*rows)++;
        if (!eol) break;
        p = eol + 1;
    }
    return SL_OK;
}

int sl_schedule_read_pytorch(const char *text, sl_schedule **out)
{
    if (!text || !out) return sl_fail(SL_EINVAL, "sl_schedule_read_pytorch: null argument");
    *out = NULL;
    cells c = {0};
    int rows, st = read_cells(text, &c, &rows);
    /* A last line without cells (the file's final newline) is not a rank. */
    while (!st && rows > 0) {
        bool any = false;
        for (size_t i = 0; i < c.n; i++) any |= c.v[i].rank == rows - 1;
        if (any) break;
        rows--;
    }
    int S = 0, M = 0;
    bool split = false, comms = false;
    for (size_t i = 0; !st && i < c.n; i++) {
        const sl_action *a = &c.v[i].a;
        S = SL_MAX(S, a->stage + 1);
        M = SL_MAX(M, a->mb + 1);
        split |= a->type == SL_ACTION_I || a->type == SL_ACTION_W;
        comms |= !sl__is_compute(a->type);
    }
    if (!st && (rows < 1 || S < 1))
        st = sl_fail(SL_EFORMAT, "the file holds no actions: one row per rank, one cell per "
                                 "action (0F0,0I0,0W0)");
    if (!st && S % rows)
        st = sl_fail(SL_EINVAL,
                     "%d stages on %d ranks: every rank must hold the same number of stages", S,
                     rows);
    /* Which rank runs each stage: where its compute actions are. */
    int *where = st ? NULL : malloc(sizeof *where * (size_t)S);
    if (!st && !where) st = sl_fail(SL_ENOMEM, "out of memory reading a schedule");
    for (int k = 0; !st && k < S; k++) where[k] = -1;
    for (size_t i = 0; !st && i < c.n; i++) {
        const cell *x = &c.v[i];
        if (!sl__is_compute(x->a.type)) continue;
        int *w = &where[x->a.stage];
        if (*w >= 0 && *w != x->rank)
            st = sl_fail(SL_EINVAL,
                         "rank %d, action %d: stage %d runs on rank %d and on rank %d: a stage "
                         "runs on one rank",
                         x->rank, x->col, x->a.stage, *w, x->rank);
        *w = x->rank;
    }
    int per_rank = S / (rows ? rows : 1);
    for (int k = 0; !st && k < S; k++)
        if (where[k] < 0)
            st = sl_fail(SL_EINVAL,
                         "stage %d has no compute action on any rank: every stage of the model "
                         "runs forward and backward for every micro-batch",
                         k);
    for (int r = 0; !st && r < rows; r++) {
        int n = 0;
        for (int k = 0; k < S; k++) n += where[k] == r;
        if (n != per_rank)
            st = sl_fail(SL_EINVAL,
                         "rank %d holds %d stages, other ranks %d: every rank must hold the same "
                         "number of stages",
                         r, n, per_rank);
    }
    sl_schedule *s = NULL;
    if (!st) {
        sl_schedule_params p = {
            .name = "pytorch", .ranks = rows, .microbatches = M, .chunks = per_rank};
        st = sl_schedule_create(&p, split, &s);
    }
    for (int k = 0; !st && k < S; k++) st = sl_schedule_set_stage_rank(s, k, where[k]);
    for (size_t i = 0; !st && i < c.n; i++) {
        sl_action a = c.v[i].a;
        int r = c.v[i].rank;
        /* A transfer's peer is the rank of the stage on the other end. */
        int other = a.type == SL_ACTION_SEND_F || a.type == SL_ACTION_RECV_B   ? a.stage + 1
                    : a.type == SL_ACTION_RECV_F || a.type == SL_ACTION_SEND_B ? a.stage - 1
                                                                               : -1;
        if (other >= S || (other < 0 && !sl__is_compute(a.type)))
            st = sl_fail(SL_EINVAL,
                         "rank %d, action %d: %d%s%d transfers to or from stage %d, which does "
                         "not exist",
                         r, c.v[i].col, a.stage, sl_action_type_name(a.type), a.mb, other);
        else if (other >= 0)
            a.peer = where[other];
        if (!st) st = sl_schedule_append(s, r, &a);
    }
    if (!st && !comms) st = sl_schedule_insert_comms(s);
    sl_action opt = {SL_ACTION_OPT, -1, -1, -1};
    for (int r = 0; !st && comms && r < rows; r++) st = sl_schedule_append(s, r, &opt);
    free(where);
    free(c.v);
    if (st) {
        sl_schedule_free(s);
        return st;
    }
    *out = s;
    return SL_OK;
}
