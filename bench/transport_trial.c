/* `sluice bench transport`'s measuring machinery (bench/transport.c is the command): the two
 * sides under test, raw libzmq and sluice, behind one send/receive/check; the ranks' two threads;
 * a trial on fresh links, its phases and their failures; and the statistics over rounds. */
#define _GNU_SOURCE /* pthread_setaffinity_np */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "bench/transport_impl.h"
#include "core/core.h"
#include "transport/transport.h"

#define IN_FLIGHT 8
#define HWM       (IN_FLIGHT + 4) /* as sluice sizes its own from in_flight */
/* The untimed part moves at least this many messages: enough to fill both high-water marks once,
 * so that the timed part meets no payload buffer its link has not used yet (faulting a fresh
 * 16 MiB buffer in can double a trial's time). The 16 MiB rows of `sluice bench transport` show
 * it; bench/transport.md has the runs. */
#define WARM_MESSAGES (2 * HWM)

/* ------------------------------------------------------------------------------------------------
 * The two sides under test */

struct side {
    int raw;
    int framed;          /* raw: DEALER to ROUTER, a header frame before each payload */
    void *push, *pull;   /* raw: this side's sockets (pull may be NULL) */
    sl_transport *t;     /* sluice */
    int dir_out, dir_in; /* sluice: link directions for sending and receiving */
    int zc;              /* zero-copy: hand the buffer over / read the message in place */
    void *ctx;           /* raw: this side's context */
    zmq_msg_t held;      /* raw, zc: the last message received */
    int holding;
    const void *last; /* zc: where the last payload received lies */
};

static void meta_for(sl_tensor_meta *m, size_t bytes)
{
    memset(m, 0, sizeof *m);
    m->type = SL_MSG_ACTIVATION;
    m->dtype = SL_DTYPE_U8;
    m->ndim = 1;
    m->shape[0] = (int64_t)bytes;
}

static void no_free(void *data, void *hint)
{
    (void)data, (void)hint;
}

static int side_send(struct side *s, const void *buf, size_t n)
{
    static const uint8_t header[SL_WIRE_HEADER_SIZE];
    if (s->framed && zmq_send(s->push, header, sizeof header, ZMQ_SNDMORE) != sizeof header)
        return -1;
    if (s->raw && !s->zc) return zmq_send(s->push, buf, n, 0) == (int)n ? 0 : -1;
    if (s->raw) {
        zmq_msg_t m;
        zmq_msg_init_data(&m, (void *)buf, n, no_free, NULL);
        if (zmq_msg_send(&m, s->push, 0) == (int)n) return 0;
        zmq_msg_close(&m);
        return -1;
    }
    sl_tensor_meta m;
    meta_for(&m, n);
    if (s->zc) return sl_transport_send_owned(s->t, s->dir_out, &m, (void *)buf, n, no_free, NULL);
    return sl_transport_send(s->t, s->dir_out, &m, buf, n);
}

static int side_recv(struct side *s, void *buf, size_t n)
{
    uint8_t frame[SL_WIRE_HEADER_SIZE]; /* a framed link's routing id and header */
    if (s->framed && (zmq_recv(s->pull, frame, sizeof frame, 0) < 0 ||
                      zmq_recv(s->pull, frame, sizeof frame, 0) != sizeof frame))
        return -1;
    if (s->raw && !s->zc) return zmq_recv(s->pull, buf, n, 0) == (int)n ? 0 : -1;
    if (s->raw) {
        if (s->holding) zmq_msg_close(&s->held);
        zmq_msg_init(&s->held);
        s->holding = 1;
        if (zmq_msg_recv(&s->held, s->pull, 0) != (int)n) return -1;
        s->last = zmq_msg_data(&s->held);
        return 0;
    }
    sl_tensor_meta m;
    meta_for(&m, n);
    if (s->zc) {
        size_t got = 0;
        int st = sl_transport_recv_borrow(s->t, s->dir_in, &m, &s->last, &got, NULL);
        return st ? st : got == n ? 0 : -1;
    }
    return sl_transport_recv(s->t, s->dir_in, &m, buf, n, NULL, NULL);
}

/* Checks the last payload received against `want` and gives back a borrowed message. */
static int side_check(struct side *s, const void *want, const void *buf, size_t n)
{
    int bad = memcmp(s->zc ? s->last : buf, want, n) != 0;
    if (s->raw && s->holding) zmq_msg_close(&s->held);
    s->holding = 0;
    if (!s->raw) sl_transport_release(s->t, s->dir_in);
    return bad;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Context switches of every thread of this process so far: each is a thread that went to sleep
 * (or was preempted) and was woken again, which costs far more than a system call on a VM. */
static double switches_now(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_nvcsw + (double)u.ru_nivcsw;
}

static int by_value(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* ------------------------------------------------------------------------------------------------
 * A trial. The two ranks are two threads that live for the whole benchmark: rank 0 is the main
 * thread, rank 1 a peer thread. In every trial each opens its own end of fresh links (a context
 * of its own, as a rank process has), moves as many messages untimed as it then moves timed, and
 * closes its end, the way a rank's process opens its transport and then uses it; raw libzmq and
 * sluice are treated alike. Fresh links per trial, over many rounds, measure the links and not the
 * luck a connection keeps (which core its I/O thread landed on, the kernel's socket buffer sizes);
 * the untimed half is there because fresh threads start in a faster regime than a link in use
 * runs in. The raw/raw column of `sluice bench transport` shows how much luck is left; what the
 * trials measured before and after each of these choices is in bench/transport.md. */

/* --pin binds each rank to a CPU of its own, the way a launcher binding one rank per core places
 * them: both ranks' threads are bound before the first trial, and the threads each trial's ZeroMQ
 * contexts start (the I/O thread, the reaper) inherit the binding. Without it the kernel places the
 * four busy threads (two ranks, two I/O threads), and on a machine with two cores a trial's figure
 * depends on where they landed. Compare `sluice bench transport` with and without --pin; the
 * figures are in bench/transport.md. */
int sl__bench_pin(pthread_t thread, int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(thread, sizeof set, &set);
}

int sl__bench_two_cpus(int cpu[2])
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set)) return -1;
    int n = 0;
    for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
        if (CPU_ISSET(c, &set)) cpu[n++] = c;
    return n == 2 ? 0 : -1;
}

struct sl__bench_trial {
    const struct sl__bench_setting *set;
    int who, zc, pingpong, count;
    size_t bytes;
    char ep[2][128];         /* rank r binds ep[r] and connects to ep[1 - r] */
    void *ctx[2];            /* raw: each end's ZeroMQ context, from its open to its close */
    pthread_barrier_t phase; /* both ends between the phases of the trial */
    atomic_int failed;
    double seconds, cpu, switches; /* the timed transfer: rank 0's clock, every thread's CPU
                                    * seconds and context switches */
    double *rtt;                   /* pingpong: each round trip */
};

static void *raw_socket(void *ctx, int type)
{
    void *s = zmq_socket(ctx, type);
    int hwm = HWM, linger = 0;
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    return s;
}

static void close_end(struct side *s)
{
    if (!s->raw) {
        sl_transport_close(s->t);
        s->t = NULL;
        return;
    }
    if (s->holding) zmq_msg_close(&s->held);
    zmq_close(s->push);
    zmq_close(s->pull);
    zmq_ctx_term(s->ctx);
}

/* Opens rank r's end. Raw: a context of its own (as a rank would have), its PULL (framed: ROUTER)
 * bound here and its PUSH (DEALER) connected once both are bound. sluice: a two-rank world in
 * which rank 0 sends on its next link and rank 1 answers on its prev link; the open waits for the
 * other end's HELLO. */
static int open_end(struct sl__bench_trial *tr, int r, struct side *s)
{
    if (tr->who != SL__BENCH_SLUICE && tr->who != SL__BENCH_SLUICE_CURVE &&
        tr->who != SL__BENCH_SLUICE_RING) {
        int framed = tr->who == SL__BENCH_FRAMED;
        void *ctx = zmq_ctx_new();
        *s = (struct side){.raw = 1,
                           .framed = framed,
                           .ctx = ctx,
                           .push = raw_socket(ctx, framed ? ZMQ_DEALER : ZMQ_PUSH),
                           .pull = raw_socket(ctx, framed ? ZMQ_ROUTER : ZMQ_PULL)};
        tr->ctx[r] = ctx;
        if (!zmq_bind(s->pull, tr->ep[r])) return 0;
        fprintf(stderr, "sluice bench transport: raw libzmq cannot bind '%s': %s\n", tr->ep[r],
                zmq_strerror(zmq_errno()));
        close_end(s);
        return -1;
    }
    sl_transport_options o;
    sl_transport_options_init(&o);
    o.run_id = 0xbe7c4;
    o.rank = r;
    o.world = 2;
    o.bind_endpoint = tr->ep[r];
    o.next_endpoint = tr->ep[1 - r];
    o.in_flight = IN_FLIGHT;
    o.max_tensor_bytes = SL__BENCH_MAX_BYTES;
    o.connect_timeout_ms = 10000;
    o.curve = tr->who == SL__BENCH_SLUICE_CURVE ? &tr->set->curve[r] : NULL;
    if (tr->who == SL__BENCH_SLUICE_RING) o.ring_bytes = 4 * SL__BENCH_MAX_BYTES;
    int dir = r ? SL_LINK_PREV : SL_LINK_NEXT;
    *s = (struct side){.dir_out = dir, .dir_in = dir};
    if (!sl_transport_open(&o, &s->t)) return 0;
    fprintf(stderr, "sluice bench transport: %s\n", sl_last_error());
    return -1;
}

/* This end's part in moving `count` messages from rank 0 to rank 1 (pingpong: and back, rank 0
 * timing each round trip into rtt). */
static int transfer(const struct sl__bench_trial *tr, struct side *s, int rank, int count,
                    double *rtt)
{
    size_t n = tr->bytes;
    uint8_t *buf = rank ? tr->set->rbuf : tr->set->sbuf; /* rank 0 gets the same bytes back */
    for (int i = 0; i < count; i++) {
        double t0 = rtt ? sl_now() : 0;
        if (rank == 0 && side_send(s, buf, n)) return -1;
        if ((rank || tr->pingpong) && side_recv(s, buf, n)) return -1;
        if (rank && tr->pingpong && side_send(s, buf, n)) return -1;
        if (rtt) rtt[i] = sl_now() - t0;
    }
    return 0;
}

/* Records that this end failed in phase `phase` (1: open, 2: link, 3: untimed part, 4: timed
 * part); returns whether it was the trial's first failure. */
static int fail_at(struct sl__bench_trial *tr, int phase)
{
    int none = 0;
    return atomic_compare_exchange_strong(&tr->failed, &none, phase);
}

/* Ends this end's phase: waits for the other end and returns whether either failed in this phase
 * or an earlier one. Both ends get the same answer: a failure the other end meets after the
 * barrier belongs to the next phase. */
static int next_phase(struct sl__bench_trial *tr, int *phase, int ok)
{
    ++*phase;
    if (!ok) fail_at(tr, *phase);
    pthread_barrier_wait(&tr->phase);
    int failed = atomic_load(&tr->failed);
    return failed && failed <= *phase;
}

static const char *const contender_name[SL__BENCH_CONTENDERS] = {"sluice",
                                                                 "raw libzmq",
                                                                 "the raw control",
                                                                 "framed raw libzmq",
                                                                 "sluice with CURVE",
                                                                 "sluice over shared memory"};

/* One transfer phase of this end: the untimed part, then the timed one. The end that fails first
 * says why and releases the other end from a send or receive that would wait forever: a raw end's
 * wait ends only with its context, which the failing end shuts down; a sluice end waits as long
 * as its peer's heartbeats come, so the failing end closes its own transport and the other one
 * sees its peer leave. The other end then fails quietly. */
static int transfer_phase(struct sl__bench_trial *tr, struct side *s, int rank, int *phase)
{
    const struct sl__bench_setting *set = tr->set;
    int timed = *phase == 3;
    int injected = timed && tr->who == set->fault_who && rank == set->fault_rank;
    int count = timed ? tr->count : SL_MAX(tr->count, WARM_MESSAGES);
    if (!injected && !transfer(tr, s, rank, count, timed && !rank ? tr->rtt : NULL))
        return next_phase(tr, phase, 1);
    const char *why = injected ? "failure injected by SLUICE_BENCH_FAULT"
                      : s->raw ? zmq_strerror(zmq_errno())
                               : sl_last_error();
    if (fail_at(tr, *phase + 1)) {
        fprintf(stderr, "sluice bench transport: %s, rank %d: a transfer failed: %s\n",
                contender_name[tr->who], rank, why);
        if (s->raw)
            zmq_ctx_shutdown(tr->ctx[1 - rank]);
        else
            close_end(s);
    }
    return next_phase(tr, phase, 0);
}

/* Rank `rank`'s end of a trial, on its own thread. */
static void run_end(struct sl__bench_trial *tr, int rank)
{
    struct side side, *s = &side;
    int opened = open_end(tr, rank, s) == 0, linked = opened, phase = 0;
    s->zc = tr->zc;
    if (!next_phase(tr, &phase, opened) && s->raw && zmq_connect(s->push, tr->ep[1 - rank])) {
        fprintf(stderr, "sluice bench transport: raw libzmq cannot connect to '%s': %s\n",
                tr->ep[1 - rank], zmq_strerror(zmq_errno()));
        linked = 0;
    }
    int failed = next_phase(tr, &phase, linked);
    if (!failed) failed = transfer_phase(tr, s, rank, &phase);
    double t0 = sl_now(), c0 = cpu_now(), w0 = switches_now();
    /* Both ends wait at its end, so rank 0's clock stops once rank 1 has every message. */
    if (!failed) failed = transfer_phase(tr, s, rank, &phase);
    if (!failed && rank == 0) {
        tr->seconds = sl_now() - t0;
        tr->cpu = cpu_now() - c0;
        tr->switches = switches_now() - w0;
    }
    /* The payload is checked after the clock stopped. */
    if (!failed && rank == 1 && side_check(s, tr->set->sbuf, tr->set->rbuf, tr->bytes)) {
        fprintf(stderr, "sluice bench transport: payload corrupted\n");
        fail_at(tr, phase + 1);
    }
    if (opened) close_end(s);
}

static void *peer_main(void *arg)
{
    struct sl__bench_peer *p = arg;
    for (;;) {
        pthread_barrier_wait(&p->go);
        if (!p->tr) return NULL;
        run_end(p->tr, 1);
        pthread_barrier_wait(&p->go);
    }
}

int sl__bench_peer_start(struct sl__bench_peer *p)
{
    p->tr = NULL;
    pthread_barrier_init(&p->go, NULL, 2);
    if (!pthread_create(&p->thread, NULL, peer_main, p)) return 0;
    pthread_barrier_destroy(&p->go);
    return -1;
}

void sl__bench_peer_stop(struct sl__bench_peer *p)
{
    p->tr = NULL;
    pthread_barrier_wait(&p->go);
    pthread_join(p->thread, NULL);
    pthread_barrier_destroy(&p->go);
}

struct sl__bench_leftovers sl__bench_leftovers;

void sl__bench_remove_socket_files(void)
{
    for (int i = 0; i < 2; i++)
        if (sl__bench_leftovers.ipc[i][0]) unlink(sl__bench_leftovers.ipc[i]);
}

/* Fresh endpoints for one trial's link. */
static void endpoints(int tcp, const char *dir, char ep[2][128])
{
    static int port = 0, serial = 0;
    if (!port) port = 20000 + (int)(getpid() % 6000);
    if (port > 31000) port = 20000; /* below the usual ephemeral range (32768..) */
    for (int i = 0; i < 2; i++) {
        if (tcp)
            snprintf(ep[i], 128, "tcp://127.0.0.1:%d", port++);
        else
            snprintf(ep[i], 128, "ipc://%s/s%d", dir, serial++);
        snprintf(sl__bench_leftovers.ipc[i], sizeof sl__bench_leftovers.ipc[i], "%s",
                 tcp ? "" : ep[i] + 6);
    }
}

/* One trial of one contender on fresh links: seconds to move `count` messages of `bytes` from rank
 * 0 to rank 1, and in *cpu and *switches the CPU seconds and context switches of every thread
 * meanwhile; -1 on failure. pingpong (to rank 1 and back): `count` times the median round trip,
 * so that the machine stalling a few round trips (which a shared VM does, for milliseconds) does
 * not count. */
static double measure(const struct sl__bench_setting *set, int who, int tcp, int zc, size_t bytes,
                      int count, int pingpong, double *cpu, double *switches)
{
    struct sl__bench_trial tr = {
        .set = set, .who = who, .zc = zc, .bytes = bytes, .count = count, .pingpong = pingpong};
    endpoints(tcp, set->dir, tr.ep);
    atomic_init(&tr.failed, 0);
    if (pingpong && !(tr.rtt = malloc((size_t)count * sizeof *tr.rtt))) return -1;
    pthread_barrier_init(&tr.phase, NULL, 2);
    set->peer->tr = &tr;
    pthread_barrier_wait(&set->peer->go);
    run_end(&tr, 0);
    pthread_barrier_wait(&set->peer->go);
    pthread_barrier_destroy(&tr.phase);
    sl__bench_remove_socket_files();
    double dt = atomic_load(&tr.failed) ? -1 : tr.seconds;
    if (dt >= 0 && pingpong) {
        qsort(tr.rtt, (size_t)count, sizeof *tr.rtt, by_value);
        dt = tr.rtt[count / 2] * count;
    }
    free(tr.rtt);
    *cpu = tr.cpu;
    *switches = tr.switches;
    return dt;
}

int sl__bench_compare(const struct sl__bench_setting *set, const int *who, int n, int rounds,
                      int tcp, int zc, size_t bytes, int count, int pingpong,
                      struct sl__bench_rounds *r)
{
    r->n = rounds;
    for (int k = 0; k < rounds; k++) {
        for (int i = 0; i < n; i++) {
            int w = who[(i + k) % n];
            r->t[w][k] =
                measure(set, w, tcp, zc, bytes, count, pingpong, &r->cpu[w][k], &r->sw[w][k]);
            if (r->t[w][k] < 0) return -1;
        }
    }
    return 0;
}

/* The q-quantile (0..1) of v[0..n), by the nearest rank; sorts v. */
static double quantile(double *v, int n, double q)
{
    qsort(v, (size_t)n, sizeof *v, by_value);
    return v[(int)lround(q * (n - 1))];
}

struct sl__bench_quartiles sl__bench_ratio_quartiles(const double *num, const double *den, int n)
{
    double v[SL__BENCH_MAX_ROUNDS];
    for (int k = 0; k < n; k++) v[k] = num[k] / den[k];
    double median = quantile(v, n, 0.5); /* sorts v: the other two need no sort of their own */
    return (struct sl__bench_quartiles){v[(int)lround(0.25 * (n - 1))], median,
                                        v[(int)lround(0.75 * (n - 1))]};
}

double sl__bench_speed_ratio(const struct sl__bench_rounds *r, int x, int b)
{
    return sl__bench_ratio_quartiles(r->t[b], r->t[x], r->n).median;
}

static double median_of(const double *x, int n)
{
    double v[SL__BENCH_MAX_ROUNDS];
    memcpy(v, x, (size_t)n * sizeof *v);
    return quantile(v, n, 0.5);
}

double sl__bench_median_time(const struct sl__bench_rounds *r, int x)
{
    return median_of(r->t[x], r->n);
}

double sl__bench_switches_per(const struct sl__bench_rounds *r, int x, int count)
{
    return median_of(r->sw[x], r->n) / count;
}
