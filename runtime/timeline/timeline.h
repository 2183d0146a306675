/* sluice timeline: a run's measured timeline, read back from its trace.json.
 *
 * `sluice train` writes every rank's actions with their start and duration into the run
 * directory's trace.json (Chrome's trace format: an "X" event per action, "tid" the rank, "name"
 * the action as "3F1", "SEND_F 0F1->r1" or "OPT"). This module reads one step of it back: each
 * rank's computing actions (F, B, I, W, R) in the order they ran, and the step's critical path.
 * `sluice trace` prints and draws them; `sluice bench pipeline` splits its measured step with
 * them. A step is what a rank ran after its step-th OPT up to and including the next one (step 0
 * opens devices and links). */
#ifndef SL_TIMELINE_H
#define SL_TIMELINE_H

#include <stddef.h>

#include "runtime/schedule/schedule.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cJSON;

/* One computing action as it ran: its start and end, microseconds on the trace's clock. */
typedef struct sl_timed_action {
    sl_action a;
    double t0, t1;
} sl_timed_action;

/* Every rank's computing actions of one step: ev[r], n[r] of them, in the order rank r ran them. */
typedef struct sl_timeline_step {
    int ranks;
    sl_timed_action **ev;
    size_t *n;
} sl_timeline_step;

/* Loads step `step` of ranks 0..ranks-1 from a trace's "traceEvents" array. Fails (SL_EINVAL)
 * when a rank's trace holds fewer steps, naming how many it holds. sl_timeline_step_free frees
 * *out, on failure too. */
int sl_timeline_step_load(const struct cJSON *events, int ranks, int step, sl_timeline_step *out);
void sl_timeline_step_free(sl_timeline_step *s);

/* The critical path of one step: from the action that ended last, back through whatever each
 * action waited for last, until an action that waited for nothing. An action waits for the one
 * before it on its rank and for its input from another stage: a forward for the previous stage's
 * forward of its micro-batch, a backward (B or I) for the next stage's. Each wait is a gap
 * between one action's end and the next one's start: on a link when the two ran on different
 * ranks (the transfer, and the wake-up), else on the rank (its sends, its receipts of data that
 * had arrived, the runtime between actions). The simulator's prediction assumes both are zero.
 * Times in microseconds. Fails as sl_timeline_step_load does, or when the step computes nothing. */
typedef struct sl_critical_path {
    double span;    /* from the step's first action to its last */
    double compute; /* in the path's actions */
    double link;    /* waiting on links, over `hops` */
    double rank;    /* between a rank's own actions, over `gaps` */
    double start;   /* from the step's first action to the path's */
    int actions, hops, gaps;
} sl_critical_path;

int sl_timeline_critical_path(const struct cJSON *events, int ranks, int step,
                              sl_critical_path *cp);

#ifdef __cplusplus
}
#endif

#endif
