/* A run's measured timeline from its trace.json: one step's actions and its critical path. */
#include "runtime/timeline/timeline.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

static bool computes(enum sl_action_type t)
{
    return t == SL_ACTION_F || t == SL_ACTION_B || t == SL_ACTION_I || t == SL_ACTION_W ||
           t == SL_ACTION_R;
}

/* Rank r's computing actions of step `step`, from the trace's events in time order. */
static int step_events(const cJSON *events, int rank, int step, sl_timed_action **out, size_t *n)
{
    size_t cap = 64;
    *n = 0;
    *out = malloc(cap * sizeof **out);
    if (!*out) return SL_ENOMEM;
    int seen_opt = 0;
    const cJSON *ev;
    cJSON_ArrayForEach(ev, events)
    {
        const char *ph = cJSON_GetStringValue(cJSON_GetObjectItem(ev, "ph"));
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(ev, "name"));
        int tid = sl_to_int(cJSON_GetNumberValue(cJSON_GetObjectItem(ev, "tid")), -1);
        if (!ph || strcmp(ph, "X") || !name || tid != rank) continue;
        bool opt = !strcmp(name, "OPT");
        sl_action a;
        size_t used;
        if (seen_opt == step && name[0] >= '0' && name[0] <= '9' &&
            sl_action_parse(name, &a, &used) == SL_OK && computes(a.type)) {
            if (*n == cap) {
                sl_timed_action *grown = realloc(*out, 2 * cap * sizeof **out);
                if (!grown) return SL_ENOMEM;
                *out = grown;
                cap *= 2;
            }
            double ts = cJSON_GetNumberValue(cJSON_GetObjectItem(ev, "ts"));
            double dur = cJSON_GetNumberValue(cJSON_GetObjectItem(ev, "dur"));
            (*out)[(*n)++] = (sl_timed_action){a, ts, ts + dur};
        }
        sl_clear_error();
        if (opt && ++seen_opt > step) break;
    }
    if (seen_opt <= step)
        return sl_fail(SL_EINVAL, "the trace of rank %d has no step %d (it holds %d)", rank, step,
                       seen_opt);
    return SL_OK;
}

int sl_timeline_step_load(const cJSON *events, int ranks, int step, sl_timeline_step *out)
{
    *out = (sl_timeline_step){.ranks = ranks};
    out->ev = calloc((size_t)ranks, sizeof *out->ev);
    out->n = calloc((size_t)ranks, sizeof *out->n);
    int rc = out->ev && out->n ? SL_OK : SL_ENOMEM;
    for (int r = 0; r < ranks && rc == SL_OK; r++)
        rc = step_events(events, r, step, &out->ev[r], &out->n[r]);
    return rc;
}

void sl_timeline_step_free(sl_timeline_step *s)
{
    for (int r = 0; s->ev && r < s->ranks; r++) free(s->ev[r]);
    free(s->ev);
    free(s->n);
    *s = (sl_timeline_step){0};
}

/* The forward (or with `backward`, the B or I) of (stage, mb) that ended last before `before`
 * + 1 us, or NULL; its rank in *rank. */
static const sl_timed_action *ran(const sl_timeline_step *s, int stage, int mb, bool backward,
                                  double before, int *rank)
{
    const sl_timed_action *best = NULL;
    for (int r = 0; r < s->ranks; r++)
        for (size_t i = 0; i < s->n[r]; i++) {
            const sl_timed_action *t = &s->ev[r][i];
            bool type = backward ? t->a.type == SL_ACTION_B || t->a.type == SL_ACTION_I
                                 : t->a.type == SL_ACTION_F;
            if (!type || t->a.stage != stage || t->a.mb != mb || t->t1 > before + 1) continue;
            if (!best || t->t1 > best->t1) best = t, *rank = r;
        }
    return best;
}

static int follow(const sl_timeline_step *s, int step, sl_critical_path *cp)
{
    double first = INFINITY;
    int r = -1, left = 0;
    const sl_timed_action *cur = NULL;
    for (int q = 0; q < s->ranks; q++)
        for (size_t i = 0; i < s->n[q]; i++) {
            left++;
            first = SL_MIN(first, s->ev[q][i].t0);
            if (!cur || s->ev[q][i].t1 > cur->t1) cur = &s->ev[q][i], r = q;
        }
    if (!cur) return sl_fail(SL_EINVAL, "step %d holds no computation", step);
    cp->span = cur->t1 - first;
    while (cur && left--) { /* `left`: a bound, should actions overlap */
        cp->compute += cur->t1 - cur->t0;
        cp->actions++;
        const sl_timed_action *prev = cur > s->ev[r] ? cur - 1 : NULL;
        int from = r;
        const sl_timed_action *input = NULL;
        if (cur->a.type == SL_ACTION_F)
            input = ran(s, cur->a.stage - 1, cur->a.mb, false, cur->t0, &from);
        else if (cur->a.type == SL_ACTION_B || cur->a.type == SL_ACTION_I)
            input = ran(s, cur->a.stage + 1, cur->a.mb, true, cur->t0, &from);
        const sl_timed_action *next = prev;
        int next_rank = r;
        if (input && (!prev || input->t1 > prev->t1)) next = input, next_rank = from;
        if (!next) {
            cp->start = cur->t0 - first;
            break;
        }
        double gap = SL_MAX(cur->t0 - next->t1, 0.0);
        if (next_rank != r) {
            cp->link += gap;
            cp->hops++;
        } else {
            cp->rank += gap;
            cp->gaps++;
        }
        cur = next;
        r = next_rank;
    }
    return SL_OK;
}

int sl_timeline_critical_path(const cJSON *events, int ranks, int step, sl_critical_path *cp)
{
    *cp = (sl_critical_path){0};
    sl_timeline_step s;
    int rc = sl_timeline_step_load(events, ranks, step, &s);
    if (rc == SL_OK) rc = follow(&s, step, cp);
    sl_timeline_step_free(&s);
    return rc;
}
