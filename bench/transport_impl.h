/* The internals of `sluice bench transport`, shared by its two files and by nothing else:
 *
 *   transport.c        the command: options, the run's directory and its cleanup on a signal,
 *                      CURVE keys, the rows, the summary and the JSON
 *   transport_trial.c  the measuring: the two sides under test, the ranks' threads, trials on
 *                      fresh links, and the statistics over rounds
 *
 * Names shared between the two files are sl__bench_* (SL__BENCH_* for constants); the rest are
 * static. */
#ifndef SL_BENCH_TRANSPORT_IMPL_H
#define SL_BENCH_TRANSPORT_IMPL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "transport/transport.h"

#define SL__BENCH_MAX_BYTES ((size_t)16 << 20)

enum sl__bench_contender {
    SL__BENCH_SLUICE,
    SL__BENCH_RAW,
    SL__BENCH_CONTROL,
    SL__BENCH_FRAMED,
    SL__BENCH_SLUICE_CURVE,
    SL__BENCH_SLUICE_RING, /* over ipc, large payloads through a shared-memory ring */
    SL__BENCH_CONTENDERS
};

struct sl__bench_trial;

/* Rank 1's thread. */
struct sl__bench_peer {
    pthread_t thread;
    pthread_barrier_t go;       /* it and the main thread: a trial starts, a trial ends */
    struct sl__bench_trial *tr; /* the trial to run; NULL: stop */
};

struct sl__bench_setting {
    const char *dir;                 /* for ipc endpoints */
    const sl_transport_curve *curve; /* keys for SL__BENCH_SLUICE_CURVE */
    uint8_t *sbuf, *rbuf;
    struct sl__bench_peer *peer;
    int fault_who, fault_rank; /* SLUICE_BENCH_FAULT: this end fails its timed part (-1: none) */
};

/* Binds `thread` to CPU `cpu` (--pin; why, at its definition). */
int sl__bench_pin(pthread_t thread, int cpu);
/* The first two CPUs this process may use; -1 if it may use fewer. */
int sl__bench_two_cpus(int cpu[2]);
/* Starts rank 1's thread, which runs each trial `measure` hands it; stops it. */
int sl__bench_peer_start(struct sl__bench_peer *p);
void sl__bench_peer_stop(struct sl__bench_peer *p);

/* What a signal that ends the run (Ctrl-C, kill) removes, as every other end of a run does: the
 * temp dir and the ipc socket files in it. libzmq leaves a bound ipc endpoint's file behind, so
 * each trial's files are removed as the trial ends, and only the trial then running has any. */
struct sl__bench_leftovers {
    char dir[256];
    char ipc[2][128]; /* the running trial's socket files ("" over tcp) */
};
extern struct sl__bench_leftovers sl__bench_leftovers;

/* Removes the running trial's socket files. Async-signal-safe, as remove_leftovers needs. */
void sl__bench_remove_socket_files(void);

/* Every figure comes from `rounds` rounds. In each round every contender in `who` (n of them)
 * runs one trial on fresh links, the order rotating from round to round. A ratio between two
 * contenders is the median over rounds of the ratio within each round: the trials of a round run
 * back to back, so whatever the shared machine was doing then weighs on both, and the median
 * drops the rounds where it hit one of them only. 45 rounds by default because the headline is the
 * worst of six rows' medians, and with fewer rounds that worst falls below the target by chance
 * even between two identical raw links (`control_ratio_headline_min` in `sluice bench transport
 * --json`; the runs behind the choice are in bench/transport.md). */
#define SL__BENCH_MAX_ROUNDS     99
#define SL__BENCH_DEFAULT_ROUNDS 45

struct sl__bench_rounds {
    int n;
    double t[SL__BENCH_CONTENDERS][SL__BENCH_MAX_ROUNDS];   /* seconds of each round's trial */
    double cpu[SL__BENCH_CONTENDERS][SL__BENCH_MAX_ROUNDS]; /* CPU seconds of every thread in it */
    double sw[SL__BENCH_CONTENDERS]
             [SL__BENCH_MAX_ROUNDS]; /* context switches of every thread in it */
};

/* Runs `rounds` rounds of the n contenders in `who` (at most SL__BENCH_CONTENDERS) into r, each
 * trial on fresh links moving `count` messages of `bytes` (pingpong: round trips); -1 as soon as a
 * trial fails (it has said why). */
int sl__bench_compare(const struct sl__bench_setting *set, const int *who, int n, int rounds,
                      int tcp, int zc, size_t bytes, int count, int pingpong,
                      struct sl__bench_rounds *r);

struct sl__bench_quartiles {
    double q1, median, q3;
};

/* The quartiles over rounds of num[k] / den[k]. */
struct sl__bench_quartiles sl__bench_ratio_quartiles(const double *num, const double *den, int n);
/* How much faster x ran than the baseline b (b's time over x's), the median over rounds. */
double sl__bench_speed_ratio(const struct sl__bench_rounds *r, int x, int b);
/* A contender's median time over the rounds. */
double sl__bench_median_time(const struct sl__bench_rounds *r, int x);
/* A contender's context switches per message (per round trip), the median over the rounds. */
double sl__bench_switches_per(const struct sl__bench_rounds *r, int x, int count);

#endif
