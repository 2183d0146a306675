/* delay:MS and delay:MS:WIDTH, a synthetic layer for benchmarks: each forward takes MS
 * milliseconds, each backward twice that (zero-bubble's split: the input pass MS, the weight pass
 * MS), on any device, so that the runtime's own overhead can be measured against a schedule's
 * ideal makespan on a machine with fewer cores than ranks (the time is slept, not computed, but
 * for its last SPIN_US, waited out awake so that the pass ends on time).
 *
 * Its output has WIDTH elements per sample (default: its input's width), so a benchmark chooses
 * the size of the activations the pipeline moves. The layer is the identity when the widths are
 * equal (y = x, dx = dy) and gives zeros otherwise, so it can sit between real layers; that copy
 * or fill is part of the MS, not added to it (the pass sleeps until MS after it started).
 *
 * It owns no parameters but counts as a unit of the partition (its params() lists none), so a
 * model of delay layers can be cut into stages like one of linear layers. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#include "core/core.h"
#include "runtime/model/layers/layers_impl.h"

#define DELAY_MAX_MS    60000.0
#define DELAY_MAX_WIDTH (1L << 24)

/* Reads a whole positive number in (0, max] from [text, text + len); 0 when it is not one. */
static double parse_number(const char *text, size_t len, double max, int whole)
{
    char buf[32];
    if (len == 0 || len >= sizeof buf || text[0] == '+' || text[0] == '-' || text[0] == ' ')
        return 0;
    for (size_t i = 0; i < len; i++) buf[i] = text[i];
    buf[len] = '\0';
    char *end;
    errno = 0;
    double v = whole ? (double)strtol(buf, &end, 10) : strtod(buf, &end);
    if (end == buf || *end || errno || !(v > 0) || v > max) return 0;
    return v;
}

static int delay_parse(const sl_layer_kind *kind, const char *arg, sl_layer *l)
{
    (void)kind;
    if (arg) {
        const char *colon = strchr(arg, ':');
        size_t ms_len = colon ? (size_t)(colon - arg) : strlen(arg);
        double ms = parse_number(arg, ms_len, DELAY_MAX_MS, 0);
        double width = colon ? parse_number(colon + 1, strlen(colon + 1), DELAY_MAX_WIDTH, 1) : -1;
        /* Microseconds: a whole number is enough resolution for a sleep. */
        if (ms * 1000.0 >= 1.0 && width != 0) {
            l->arg = (int)(ms * 1000.0 + 0.5);
            l->out = width > 0 ? (int)width : 0; /* shape() fills 0 in with the input width */
            return SL_OK;
        }
    }
    return sl_fail(SL_EINVAL,
                   "delay needs milliseconds in (0, %.0f] (at least 0.001) and optionally a width "
                   "1..%ld: delay:MS or delay:MS:WIDTH",
                   DELAY_MAX_MS, DELAY_MAX_WIDTH);
}

static int delay_shape(sl_layer *l)
{
    if (l->out == 0) l->out = l->in;
    return SL_OK;
}

static int delay_params(const sl_layer *l, sl_param_spec *out)
{
    (void)l;
    (void)out;
    return 0;
}

/* Sleeps until `us` microseconds after `start` (CLOCK_MONOTONIC), whatever signals interrupt.
 * A sleeping thread wakes late: Linux lets a sleep run 50 us over by default (the thread's timer
 * slack, here set to 1 us), and a VM's timer and the scheduler add tens of microseconds more,
 * a few per cent of a 2 ms layer that the benchmark would count as the runtime's. So the pass
 * sleeps until SPIN_US before its end and waits out the rest awake, as a computing layer would
 * end: on time. */
#define SPIN_US 150

static void add_us(struct timespec *t, long us)
{
    t->tv_sec += us / 1000000;
    t->tv_nsec += (us % 1000000) * 1000L;
    if (t->tv_nsec >= 1000000000L) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000L;
    }
}

static bool before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static void sleep_until(const struct timespec *start, int us)
{
    static _Thread_local bool slack_set;
    if (!slack_set) {
        prctl(PR_SET_TIMERSLACK, 1000UL, 0UL, 0UL, 0UL);
        slack_set = true;
    }
    struct timespec end = *start, wake = *start, now;
    add_us(&end, us);
    if (us > SPIN_US) {
        add_us(&wake, us - SPIN_US);
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &wake, NULL) == EINTR) {
        }
    }
    do clock_gettime(CLOCK_MONOTONIC, &now);
    while (before(&now, &end));
}

/* dst = src when the widths match, else zeros: the layer's map (and its transpose). */
static int pass_through(const sl_layer_pass *p, sl_buffer *src, sl_buffer *dst, int dst_width)
{
    size_t n = p->rows * (size_t)dst_width;
    if (p->layer->in == p->layer->out) return sl_buffer_copy(dst, 0, src, 0, n * sizeof(float));
    return sl_fill(p->dev, n, 0.0f, dst);
}

/* One pass: dst from src (when there is a dst), then the rest of the layer's MS asleep. */
static int timed_pass(const sl_layer_pass *p, sl_buffer *src, sl_buffer *dst, int dst_width)
{
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    if (dst) {
        SL_TRY(pass_through(p, src, dst, dst_width));
        SL_TRY(sl_device_finish(p->dev));
    }
    sleep_until(&start, p->layer->arg);
    return SL_OK;
}

static int delay_forward(const sl_layer_pass *p)
{
    return timed_pass(p, p->x, p->y, p->layer->out);
}

static int delay_backward_input(const sl_layer_pass *p)
{
    return timed_pass(p, p->dy, p->dx, p->layer->in);
}

static int delay_backward_weight(const sl_layer_pass *p)
{
    return timed_pass(p, NULL, NULL, 0);
}

static double delay_flops(const sl_layer *l, enum sl_layer_phase phase)
{
    (void)l;
    (void)phase;
    return 0.0; /* it computes nothing: its cost is time, which `time` partitions measure */
}

const sl_layer_kind sl__layer_delay = {
    .name = "delay",
    .syntax = "delay:MS[:WIDTH]",
    .parse = delay_parse,
    .shape = delay_shape,
    .params = delay_params,
    .keep = NULL,
    .forward = delay_forward,
    .backward_input = delay_backward_input,
    .backward_weight = delay_backward_weight,
    .flops = delay_flops,
};
