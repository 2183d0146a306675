/* Helpers shared by the schedule tests: generate, simulate and parse schedules, asserting each
 * step succeeds. */
#ifndef SLUICE_TESTS_SCHEDULE_HELPERS_H
#define SLUICE_TESTS_SCHEDULE_HELPERS_H

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "runtime/schedule/schedule.h"

static const int grid_d[] = {1, 2, 3, 4, 8};
static const char *const one_chunk[] = {"gpipe", "1f1b", "zb-h1"};

static inline sl_schedule *gen(const char *name, int d, int m, int v, bool recompute)
{
    sl_schedule_params p = {
        .name = name, .ranks = d, .microbatches = m, .chunks = v, .recompute = recompute};
    sl_schedule *s = NULL;
    int st = sl_schedule_generate(&p, &s);
    cr_assert_eq(st, SL_OK, "%s D=%d M=%d v=%d: %s", name, d, m, v, sl_last_error());
    return s;
}

static inline sl_schedule_sim sim_of(const sl_schedule *s, double f, double b, double w)
{
    sl_schedule_costs c = {.f = f, .b = b, .w = w};
    sl_schedule_sim sim;
    int st = sl_schedule_simulate(s, &c, &sim);
    cr_assert_eq(st, SL_OK, "%s D=%d M=%d: %s", s->name, s->ranks, s->microbatches,
                 sl_last_error());
    return sim;
}

/* The rank's compute actions in text form, space separated. */
static inline void compute_text(const sl_schedule *s, int rank, char *buf, size_t cap)
{
    size_t n, len = 0;
    const sl_action *a = sl_schedule_actions(s, rank, &n);
    buf[0] = 0;
    for (size_t i = 0; i < n; i++) {
        if (a[i].type > SL_ACTION_R) continue;
        char t[32];
        sl_action_format(&a[i], t, sizeof t);
        len += (size_t)snprintf(buf + len, cap - len, "%s%s", len ? " " : "", t);
    }
}

/* A schedule from one text line per rank (split: backward in B and W). */
static inline sl_schedule *from_text(const char *name, int d, int m, bool split,
                                     const char *const *ranks)
{
    sl_schedule_params p = {.name = name, .ranks = d, .microbatches = m, .chunks = 1};
    sl_schedule *s;
    cr_assert_eq(sl_schedule_create(&p, split, &s), SL_OK);
    for (int r = 0; r < d; r++)
        cr_assert_eq(sl_schedule_parse_rank(s, r, ranks[r]), SL_OK, "%s", sl_last_error());
    return s;
}

static inline void expect_rejected(const sl_schedule *s, int status, const char *says)
{
    int st = sl_schedule_validate(s, 1);
    cr_assert_eq(st, status, "got %d: %s", st, sl_last_error());
    cr_assert(strstr(sl_last_error(), says), "message '%s' lacks '%s'", sl_last_error(), says);
}

#endif
