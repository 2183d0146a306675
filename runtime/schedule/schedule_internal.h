/* Internals shared by the schedule module's sources. Not part of the interface. */
#ifndef SL_SCHEDULE_INTERNAL_H
#define SL_SCHEDULE_INTERNAL_H

#include "runtime/schedule/schedule.h"

/* Bounds that keep every index and product well inside int and size_t. */
#define SL_SCHEDULE_MAX_RANKS        1024
#define SL_SCHEDULE_MAX_MICROBATCHES 65536
#define SL_SCHEDULE_MAX_CHUNKS       64
#define SL_SCHEDULE_MAX_WORK         (1 << 22) /* stages x micro-batches */

bool sl__is_compute(enum sl_action_type t);

/* TIED, NORM or SYNC: the reductions before OPT, each a few messages (sl_action_exchanges). */
bool sl__is_reduction(enum sl_action_type t);

/* Chains (see sl_schedule.chains): whether `stage` starts or ends its pipeline, and whether
 * micro-batch mb goes through the chain of `stage`. */
bool sl__chain_first(const sl_schedule *s, int stage);
bool sl__chain_last(const sl_schedule *s, int stage);
bool sl__chain_has(const sl_schedule *s, int stage, int mb);

/* The chimera generator (generate_v.c). */
int sl__gen_chimera(sl_schedule *s);

/* Appends the compute action (t, stage, mb) to rank's list. */
int sl__add(sl_schedule *s, int rank, enum sl_action_type t, int stage, int mb);

/* Generators of generate_v.c (see there). */
int sl__gen_looped_bfs(sl_schedule *s);
int sl__gen_zbv(sl_schedule *s);
int sl__gen_dualpipev(sl_schedule *s);

/* Runs every rank's list with links of `depth` messages, in causal order. With `costs` non-NULL
 * it also times every action into `sim` (allocated by the caller's helper). Fails with
 * SL_EINVAL on a mismatched receive and SL_EDEADLOCK when no rank can move. */
int sl__schedule_run(const sl_schedule *s, int depth, const sl_schedule_costs *costs,
                     sl_schedule_sim *sim);

/* The time action `a` takes under `c` (whose zeros are already replaced by the defaults). */
double sl__cost_of(const sl_schedule *s, const sl_schedule_costs *c, int rank, const sl_action *a);

#endif
