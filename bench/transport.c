/* `sluice bench transport`: link throughput and small-message round trip against raw libzmq
 * PUSH/PULL measured in the same run, over ipc and tcp loopback; CURVE's cost separately.
 *
 * Both sides run as two threads of this process with separate ZeroMQ contexts (as two ranks
 * would), with the same high-water marks, message sizes and counts. Two pairings of APIs:
 *   copy:      sl_transport_send / sl_transport_recv against zmq_send / zmq_recv (the data is
 *              copied in on send and out on receive by both);
 *   zero-copy: sl_transport_send_owned / sl_transport_recv_borrow against zmq_msg_init_data +
 *              zmq_msg_send / zmq_msg_recv (no copy by either). The training executor sends
 *              with send_owned and receives with sl_transport_recv into a buffer's mapping.
 * sluice adds its header frame, the CRC32C of header and payload on both sides and every
 * validation. In the copy pairing the CRC rides in the copy both make anyway; in the zero-copy
 * pairing raw libzmq never reads the payload while sluice reads it once on each side, so the copy
 * pairing is the headline and the zero-copy one is reported beside it. A second raw link measured
 * like the first (the control) shows how far apart two equal links measure on this machine. A
 * third raw link carries sluice's framing without sluice (DEALER to ROUTER, a header frame of the
 * wire format's size before each payload): what libzmq itself charges for the wire format, apart
 * from anything sluice's code does. The round trip (64-byte messages echoed back) uses the copy
 * pairing. */
#define _GNU_SOURCE /* pthread_setaffinity_np */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "bench/bench.h"
#include "core/core.h"
#include "transport/transport.h"

#define IN_FLIGHT 8
#define HWM       (IN_FLIGHT + 4) /* as sluice sizes its own from in_flight */
/* The untimed part moves at least this many messages: enough to fill both high-water marks once,
 * so that the timed part meets no payload buffer its link has not used yet (faulting a fresh
 * 16 MiB buffer in can double a trial's time). The 16 MiB rows of `sluice bench transport` show
 * it; bench/transport.md has the runs. */
#define WARM_MESSAGES (2 * HWM)
#define MAX_BYTES     ((size_t)16 << 20)

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

enum contender { SLUICE, RAW, CONTROL, FRAMED, SLUICE_CURVE, CONTENDERS };

struct trial;

/* Rank 1's thread. */
struct peer {
    pthread_t thread;
    pthread_barrier_t go; /* it and the main thread: a trial starts, a trial ends */
    struct trial *tr;     /* the trial to run; NULL: stop */
};

/* --pin binds each rank to a CPU of its own, the way a launcher binding one rank per core places
 * them: both ranks' threads are bound before the first trial, and the threads each trial's ZeroMQ
 * contexts start (the I/O thread, the reaper) inherit the binding. Without it the kernel places the
 * four busy threads (two ranks, two I/O threads), and on a machine with two cores a trial's figure
 * depends on where they landed. Compare `sluice bench transport` with and without --pin; the
 * figures are in bench/transport.md. */
static int pin(pthread_t thread, int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(thread, sizeof set, &set);
}

/* The first two CPUs this process may use; -1 if it may use fewer. */
static int two_cpus(int cpu[2])
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set)) return -1;
    int n = 0;
    for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
        if (CPU_ISSET(c, &set)) cpu[n++] = c;
    return n == 2 ? 0 : -1;
}

struct setting {
    const char *dir;                 /* for ipc endpoints */
    const sl_transport_curve *curve; /* keys for SLUICE_CURVE */
    uint8_t *sbuf, *rbuf;
    struct peer *peer;
    int fault_who, fault_rank; /* SLUICE_BENCH_FAULT: this end fails its timed part (-1: none) */
};

struct trial {
    const struct setting *set;
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
static int open_end(struct trial *tr, int r, struct side *s)
{
    if (tr->who != SLUICE && tr->who != SLUICE_CURVE) {
        int framed = tr->who == FRAMED;
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
    o.max_tensor_bytes = MAX_BYTES;
    o.connect_timeout_ms = 10000;
    o.curve = tr->who == SLUICE_CURVE ? &tr->set->curve[r] : NULL;
    int dir = r ? SL_LINK_PREV : SL_LINK_NEXT;
    *s = (struct side){.dir_out = dir, .dir_in = dir};
    if (!sl_transport_open(&o, &s->t)) return 0;
    fprintf(stderr, "sluice bench transport: %s\n", sl_last_error());
    return -1;
}

/* This end's part in moving `count` messages from rank 0 to rank 1 (pingpong: and back, rank 0
 * timing each round trip into rtt). */
static int transfer(const struct trial *tr, struct side *s, int rank, int count, double *rtt)
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
static int fail_at(struct trial *tr, int phase)
{
    int none = 0;
    return atomic_compare_exchange_strong(&tr->failed, &none, phase);
}

/* Ends this end's phase: waits for the other end and returns whether either failed in this phase
 * or an earlier one. Both ends get the same answer: a failure the other end meets after the
 * barrier belongs to the next phase. */
static int next_phase(struct trial *tr, int *phase, int ok)
{
    ++*phase;
    if (!ok) fail_at(tr, *phase);
    pthread_barrier_wait(&tr->phase);
    int failed = atomic_load(&tr->failed);
    return failed && failed <= *phase;
}

static const char *const contender_name[CONTENDERS] = {"sluice", "raw libzmq", "the raw control",
                                                       "framed raw libzmq", "sluice with CURVE"};

/* One transfer phase of this end: the untimed part, then the timed one. The end that fails first
 * says why and releases the other end from a send or receive that would wait forever: a raw end's
 * wait ends only with its context, which the failing end shuts down; a sluice end waits as long
 * as its peer's heartbeats come, so the failing end closes its own transport and the other one
 * sees its peer leave. The other end then fails quietly. */
static int transfer_phase(struct trial *tr, struct side *s, int rank, int *phase)
{
    const struct setting *set = tr->set;
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
static void run_end(struct trial *tr, int rank)
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
    struct peer *p = arg;
    for (;;) {
        pthread_barrier_wait(&p->go);
        if (!p->tr) return NULL;
        run_end(p->tr, 1);
        pthread_barrier_wait(&p->go);
    }
}

static int peer_start(struct peer *p)
{
    p->tr = NULL;
    pthread_barrier_init(&p->go, NULL, 2);
    if (!pthread_create(&p->thread, NULL, peer_main, p)) return 0;
    pthread_barrier_destroy(&p->go);
    return -1;
}

static void peer_stop(struct peer *p)
{
    p->tr = NULL;
    pthread_barrier_wait(&p->go);
    pthread_join(p->thread, NULL);
    pthread_barrier_destroy(&p->go);
}

/* What a signal that ends the run (Ctrl-C, kill) removes, as every other end of a run does: the
 * temp dir and the ipc socket files in it. libzmq leaves a bound ipc endpoint's file behind, so
 * each trial's files are removed as the trial ends, and only the trial then running has any. */
static struct {
    char dir[256];
    char ipc[2][128]; /* the running trial's socket files ("" over tcp) */
} leftovers;

/* Async-signal-safe, as remove_leftovers needs. */
static void remove_socket_files(void)
{
    for (int i = 0; i < 2; i++)
        if (leftovers.ipc[i][0]) unlink(leftovers.ipc[i]);
}

static void remove_leftovers(int sig)
{
    remove_socket_files();
    rmdir(leftovers.dir);
    signal(sig, SIG_DFL);
    raise(sig); /* ends the process as the signal would have */
}

static void on_ending_signals(void (*handler)(int))
{
    struct sigaction sa = {.sa_handler = handler};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
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
        snprintf(leftovers.ipc[i], sizeof leftovers.ipc[i], "%s", tcp ? "" : ep[i] + 6);
    }
}

/* One trial of one contender on fresh links: seconds to move `count` messages of `bytes` from rank
 * 0 to rank 1, and in *cpu and *switches the CPU seconds and context switches of every thread
 * meanwhile; -1 on failure. pingpong (to rank 1 and back): `count` times the median round trip,
 * so that the machine stalling a few round trips (which a shared VM does, for milliseconds) does
 * not count. */
static double measure(const struct setting *set, int who, int tcp, int zc, size_t bytes, int count,
                      int pingpong, double *cpu, double *switches)
{
    struct trial tr = {
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
    remove_socket_files();
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

/* Every figure comes from `rounds` rounds. In each round every contender in `who` (n of them)
 * runs one trial on fresh links, the order rotating from round to round. A ratio between two
 * contenders is the median over rounds of the ratio within each round: the trials of a round run
 * back to back, so whatever the shared machine was doing then weighs on both, and the median
 * drops the rounds where it hit one of them only. 45 rounds by default because the headline is the
 * worst of six rows' medians, and with fewer rounds that worst falls below the target by chance
 * even between two identical raw links (`control_ratio_headline_min` in `sluice bench transport
 * --json`; the runs behind the choice are in bench/transport.md). */
#define MAX_ROUNDS     99
#define DEFAULT_ROUNDS 45

struct rounds {
    int n;
    double t[CONTENDERS][MAX_ROUNDS];   /* seconds of each round's trial */
    double cpu[CONTENDERS][MAX_ROUNDS]; /* CPU seconds of every thread in it */
    double sw[CONTENDERS][MAX_ROUNDS];  /* context switches of every thread in it */
};

static int compare(const struct setting *set, const int *who, int n, int rounds, int tcp, int zc,
                   size_t bytes, int count, int pingpong, struct rounds *r)
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

struct quartiles {
    double q1, median, q3;
};

/* The quartiles over rounds of num[k] / den[k]. */
static struct quartiles ratio_quartiles(const double *num, const double *den, int n)
{
    double v[MAX_ROUNDS];
    for (int k = 0; k < n; k++) v[k] = num[k] / den[k];
    double median = quantile(v, n, 0.5); /* sorts v: the other two need no sort of their own */
    return (struct quartiles){v[(int)lround(0.25 * (n - 1))], median,
                              v[(int)lround(0.75 * (n - 1))]};
}

/* How much faster x ran than the baseline b (b's time over x's), the median over rounds. */
static double speed_ratio(const struct rounds *r, int x, int b)
{
    return ratio_quartiles(r->t[b], r->t[x], r->n).median;
}

static double median_of(const double *x, int n)
{
    double v[MAX_ROUNDS];
    memcpy(v, x, (size_t)n * sizeof *v);
    return quantile(v, n, 0.5);
}

/* A contender's median time over the rounds. */
static double median_time(const struct rounds *r, int x)
{
    return median_of(r->t[x], r->n);
}

/* A contender's context switches per message (per round trip), the median over the rounds. */
static double switches_per(const struct rounds *r, int x, int count)
{
    return median_of(r->sw[x], r->n) / count;
}

/* ------------------------------------------------------------------------------------------------
 * The benchmark */

static const size_t sizes[] = {4096, 65536, 1 << 20, 16 << 20};

/* The targets: the headline ratio at least this, the round trip at most this. */
#define TARGET_RATIO         0.9
#define TARGET_LATENCY_RATIO 1.2

static int count_for(size_t bytes, double scale)
{
    /* About 128 MiB per trial at full scale, at least 8 messages. */
    double n = scale * (double)(128 << 20) / (double)bytes;
    return n < 8 ? 8 : (int)n;
}

static double gbps(size_t bytes, int count, double seconds)
{
    return (double)bytes * count / seconds / 1e9;
}

/* What the checksum costs beside a copy: GB/s of sl_crc32c, sl_crc32c_copy and memcpy over one
 * 64 KiB payload in cache, the best of 7 repeats of 4000 passes. dst needs 64 KiB + 4 KiB: the
 * copy goes to where it lies half a page from src, because glibc's `rep movsb` runs about 20
 * times slower on a Zen 3 core when the destination lies 1 to 31 bytes past the source modulo
 * 4 KiB, as the two buffers given do (the CRC32C line of `sluice bench transport`; figures in
 * bench/transport.md). */
static void crc_speeds(const uint8_t *src, uint8_t *dst, double out[3])
{
    enum { N = 65536, PASSES = 4000 };
    dst += (2048 + (uintptr_t)src - (uintptr_t)dst) & 4095;
    volatile uint32_t sink = 0;
    for (int k = 0; k < 3; k++) {
        double best = 1e9;
        for (int rep = 0; rep < 7; rep++) {
            double t0 = sl_now();
            for (int i = 0; i < PASSES; i++) {
                if (k == 0) sink += sl_crc32c(0, src, N);
                if (k == 1) sink += sl_crc32c_copy(0, dst, src, N);
                if (k == 2) memcpy(dst, src, N), sink += dst[i % N];
            }
            best = SL_MIN(best, sl_now() - t0);
        }
        out[k] = gbps(N, PASSES, best);
    }
}

/* With --json the table is not printed, so a run of several minutes says on stderr which row it
 * has finished, how many of `total` and since when. */
static void progress(double t0, int *done, int total, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void progress(double t0, int *done, int total, const char *fmt, ...)
{
    char row[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(row, sizeof row, fmt, ap);
    va_end(ap);
    fprintf(stderr, "sluice bench transport: %s done (%d of %d rows, %.0f s)\n", row, ++*done,
            total, sl_now() - t0);
}

/* SLUICE_BENCH_FAULT=WHO:RANK (WHO: sluice or raw) makes rank RANK's end of each of that
 * contender's trials fail as its timed part starts: the tests use it to check that the other end,
 * left waiting, is released and the bench ends with the reason. */
static int parse_fault(int *who, int *rank)
{
    *who = *rank = -1;
    const char *f = getenv("SLUICE_BENCH_FAULT");
    if (!f || !*f) return 0;
    if (!strcmp(f, "sluice:0") || !strcmp(f, "sluice:1") || !strcmp(f, "raw:0") ||
        !strcmp(f, "raw:1")) {
        *who = f[0] == 's' ? SLUICE : RAW;
        *rank = f[strlen(f) - 1] - '0';
        return 0;
    }
    fprintf(stderr,
            "sluice bench transport: SLUICE_BENCH_FAULT='%s': expected sluice:0, sluice:1, raw:0 "
            "or raw:1\n",
            f);
    return -1;
}

/* What the command line asks for. */
struct options {
    int json, rounds, curve_on, pinned;
    double scale;              /* of every trial's message count (count_for) */
    int fault_who, fault_rank; /* SLUICE_BENCH_FAULT (-1: none) */
    int cpus[2];               /* --pin: rank 0's CPU and rank 1's */
};

static void usage(void)
{
    printf("usage: sluice bench transport [--json] [--quick] [--no-curve] [--rounds N] "
           "[--pin]\n\n"
           "Throughput (4 KiB .. 16 MiB) and 64-byte round trip of sluice links against\n"
           "raw libzmq PUSH/PULL in the same run, over ipc and tcp loopback, in two\n"
           "pairings of APIs (copy, zero-copy); a second raw link measured the same way\n"
           "as a control (raw/raw: how far apart two identical links measure on this\n"
           "machine); raw libzmq with sluice's framing (DEALER to ROUTER, a header frame\n"
           "before each payload) against plain raw (framed/raw: what the wire format\n"
           "costs inside libzmq); CURVE's cost over tcp against sluice without it.\n"
           "Each figure takes N rounds (default %d, at most %d; --quick: 5 and smaller\n"
           "trials); in a round every contender runs one trial on fresh links, the order\n"
           "rotating; a trial moves as many messages untimed as it then times (at\n"
           "least twice the high-water mark, 24, which fills the link's queues). A ratio\n"
           "is the median over rounds of the ratio within a round, and q1..q3 its\n"
           "quartiles. A trial's round trip is the median of its round trips.\n"
           "switches s/f/r: context switches of every thread per message, timed part,\n"
           "for sluice, framed raw and raw; on a busy VM they vary less than the times.\n"
           "The headline ratio is the copy pairing's worst at >= 64 KiB: sluice's copies\n"
           "carry the CRC32C in the same pass as raw libzmq's plain copies. Where the\n"
           "raw/raw control falls below the target in those rows, the run says that it\n"
           "cannot resolve the target.\n"
           "--pin binds each rank (its thread and its libzmq I/O thread) to a CPU of its\n"
           "own, as a launcher binding one rank per core would; without it the kernel\n"
           "places the threads, and with few cores where they land moves the figures.\n",
           DEFAULT_ROUNDS, MAX_ROUNDS);
}

/* Reads the command line, SLUICE_BENCH_FAULT and, with --pin, the two CPUs to bind the ranks to.
 * Returns -1 to go on, else the exit status: 0 after --help, 2 on a usage error. */
static int parse_options(int argc, char **argv, struct options *o)
{
    *o = (struct options){.rounds = DEFAULT_ROUNDS, .curve_on = 1, .scale = 0.25};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            o->json = 1;
        else if (!strcmp(argv[i], "--quick"))
            o->scale = 0.0625, o->rounds = 5;
        else if (!strcmp(argv[i], "--no-curve"))
            o->curve_on = 0;
        else if (!strcmp(argv[i], "--pin"))
            o->pinned = 1;
        else if (!strcmp(argv[i], "--rounds")) {
            o->rounds = i + 1 < argc ? atoi(argv[++i]) : 0;
            if (o->rounds < 1 || o->rounds > MAX_ROUNDS) {
                fprintf(stderr, "sluice bench transport: --rounds takes a number from 1 to %d\n",
                        MAX_ROUNDS);
                return 2;
            }
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage();
            return 0;
        } else {
            fprintf(stderr, "sluice bench transport: unknown option '%s' (try --help)\n", argv[i]);
            return 2;
        }
    }
    if (parse_fault(&o->fault_who, &o->fault_rank)) return 2;
    if (o->pinned && two_cpus(o->cpus)) {
        fprintf(stderr, "sluice bench transport: --pin needs two CPUs and this process may use "
                        "only one\n");
        return 2;
    }
    return -1;
}

/* Makes the run's own directory for the ipc socket files, under $TMPDIR or /tmp, in
 * leftovers.dir. */
static int make_run_dir(void)
{
    const char *tmp = getenv("TMPDIR");
    char *dir = leftovers.dir;
    snprintf(dir, sizeof leftovers.dir, "%s/sluice-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(dir)) return 0;
    fprintf(stderr, "sluice bench transport: cannot make a temp dir %s: %s (set TMPDIR)\n", dir,
            strerror(errno));
    return -1;
}

/* CURVE key pairs of the two ranks, each admitting only the other's public key. */
struct keys {
    char pub[2][41], sec[2][41];
    const char *allowed[2][1];
    sl_transport_curve curve[2];
};

static void make_keys(struct keys *k)
{
    for (int i = 0; i < 2; i++) sl_transport_keypair(k->pub[i], k->sec[i]);
    for (int i = 0; i < 2; i++) {
        k->allowed[i][0] = k->pub[1 - i];
        k->curve[i] = (sl_transport_curve){k->pub[i], k->sec[i], k->pub[1 - i], k->allowed[i], 1};
    }
}

/* Starts rank 1's thread and, with --pin, binds each rank to its CPU. */
static int start_ranks(struct peer *peer, const struct options *o)
{
    if (peer_start(peer)) {
        fprintf(stderr, "sluice bench transport: cannot start a thread\n");
        return -1;
    }
    if (o->pinned && (pin(peer->thread, o->cpus[1]) || pin(pthread_self(), o->cpus[0]))) {
        fprintf(stderr, "sluice bench transport: cannot bind the ranks to CPUs %d and %d\n",
                o->cpus[0], o->cpus[1]);
        peer_stop(peer);
        return -1;
    }
    return 0;
}

/* What the rows add up to, for the summary at the end. */
struct tally {
    double worst[2];               /* lowest sluice/raw ratio at >= 64 KiB: copy, zero-copy */
    double worst_lat;              /* highest round-trip ratio */
    double control_lo, control_hi; /* the raw/raw control over every row */
    double control_headline;       /* the control's lowest in the headline's rows */
    double framed_lo, framed_hi;   /* framed/raw at >= 64 KiB */
};

/* One run of the benchmark: what it was asked, the trials' setting, the JSON arrays the rows go
 * to, the rows done so far (reported on stderr with --json) and the tally. */
struct run {
    const struct options *o;
    const struct setting *set;
    struct rounds *r;
    cJSON *thr, *lat, *curve;
    double t0;
    int rows, n_rows;
    struct tally tally;
};

/* The head of the JSON object: the checksum's speeds, the baseline and how the run ran; and the
 * arrays the rows go into. */
static cJSON *json_head(struct run *run, const double crc[3])
{
    const struct options *o = run->o;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "name", "transport");
    cJSON_AddStringToObject(root, "crc_path", sl_crc32c_path());
    cJSON_AddNumberToObject(root, "crc_gbps", crc[0]);
    cJSON_AddNumberToObject(root, "crc_copy_gbps", crc[1]);
    cJSON_AddNumberToObject(root, "memcpy_gbps", crc[2]);
    cJSON_AddStringToObject(root, "baseline",
                            "raw libzmq PUSH/PULL (same API pairing, sizes and HWM, same run)");
    cJSON_AddNumberToObject(root, "rounds", o->rounds);
    cJSON_AddBoolToObject(root, "pinned", o->pinned);
    if (o->pinned) cJSON_AddItemToObject(root, "cpus", cJSON_CreateIntArray(o->cpus, 2));
    run->thr = cJSON_AddArrayToObject(root, "throughput");
    run->lat = cJSON_AddArrayToObject(root, "latency");
    run->curve = o->curve_on ? cJSON_AddArrayToObject(root, "curve") : NULL;
    return root;
}

static void print_header(void)
{
    printf("%-4s %-9s %9s %12s %9s %6s %10s %9s %8s %11s %16s\n", "link", "mode", "payload",
           "sluice GB/s", "raw GB/s", "ratio", "q1..q3", "cpu ratio", "raw/raw", "framed/raw",
           "switches s/f/r");
}

/* One throughput row: sluice, raw libzmq, the raw control and framed raw libzmq moving `bytes`
 * messages over one kind of link in one pairing. */
static int throughput_row(struct run *run, int tcp, int zc, size_t bytes)
{
    static const int four[] = {SLUICE, RAW, CONTROL, FRAMED};
    const char *kind = tcp ? "tcp" : "ipc", *mode = zc ? "zero-copy" : "copy";
    const int rounds = run->o->rounds, count = count_for(bytes, run->o->scale);
    struct rounds *r = run->r;
    if (compare(run->set, four, 4, rounds, tcp, zc, bytes, count, 0, r)) return -1;
    double gs = gbps(bytes, count, median_time(r, SLUICE));
    double gr = gbps(bytes, count, median_time(r, RAW));
    struct quartiles q = ratio_quartiles(r->t[RAW], r->t[SLUICE], rounds);
    double ratio = q.median;
    double control = speed_ratio(r, CONTROL, RAW);
    double framed = speed_ratio(r, FRAMED, RAW);
    double cpu = ratio_quartiles(r->cpu[RAW], r->cpu[SLUICE], rounds).median;
    double sw[] = {switches_per(r, SLUICE, count), switches_per(r, FRAMED, count),
                   switches_per(r, RAW, count)};
    struct tally *t = &run->tally;
    t->control_lo = SL_MIN(t->control_lo, control);
    t->control_hi = SL_MAX(t->control_hi, control);
    if (bytes >= 65536) {
        t->worst[zc] = SL_MIN(t->worst[zc], ratio);
        if (!zc) t->control_headline = SL_MIN(t->control_headline, control);
        t->framed_lo = SL_MIN(t->framed_lo, framed);
        t->framed_hi = SL_MAX(t->framed_hi, framed);
    }
    if (!run->o->json)
        printf("%-4s %-9s %9zu %12.2f %9.2f %6.2f %4.2f..%4.2f %9.2f %8.2f %11.2f "
               "%6.1f/%.1f/%.1f\n",
               kind, mode, bytes, gs, gr, ratio, q.q1, q.q3, cpu, control, framed, sw[0], sw[1],
               sw[2]);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "link", kind);
    cJSON_AddStringToObject(o, "mode", mode);
    cJSON_AddNumberToObject(o, "bytes", (double)bytes);
    cJSON_AddNumberToObject(o, "messages", count);
    cJSON_AddNumberToObject(o, "sluice_gbps", gs);
    cJSON_AddNumberToObject(o, "raw_gbps", gr);
    cJSON_AddNumberToObject(o, "ratio", ratio);
    cJSON_AddNumberToObject(o, "ratio_q1", q.q1);
    cJSON_AddNumberToObject(o, "ratio_q3", q.q3);
    cJSON_AddNumberToObject(o, "cpu_ratio", cpu);
    cJSON_AddNumberToObject(o, "control_ratio", control);
    cJSON_AddNumberToObject(o, "framed_raw_gbps", gbps(bytes, count, median_time(r, FRAMED)));
    cJSON_AddNumberToObject(o, "framed_ratio", framed);
    cJSON_AddNumberToObject(o, "sluice_switches_per_msg", sw[0]);
    cJSON_AddNumberToObject(o, "framed_switches_per_msg", sw[1]);
    cJSON_AddNumberToObject(o, "raw_switches_per_msg", sw[2]);
    cJSON_AddItemToArray(run->thr, o);
    if (run->o->json) progress(run->t0, &run->rows, run->n_rows, "%s %s %zu", kind, mode, bytes);
    return 0;
}

/* The round-trip row: 64-byte messages to rank 1 and back, copy pairing, sluice against raw
 * libzmq and the control; ratios of times, so > 1 is slower. */
static int round_trip_row(struct run *run, int tcp)
{
    static const int three[] = {SLUICE, RAW, CONTROL};
    const char *kind = tcp ? "tcp" : "ipc";
    const int rounds = run->o->rounds, n = (int)(2000 * run->o->scale) + 200;
    struct rounds *r = run->r;
    if (compare(run->set, three, 3, rounds, tcp, 0, 64, n, 1, r)) return -1;
    double us_s = median_time(r, SLUICE) / n * 1e6, us_r = median_time(r, RAW) / n * 1e6;
    struct quartiles q = ratio_quartiles(r->t[SLUICE], r->t[RAW], rounds);
    double control = ratio_quartiles(r->t[CONTROL], r->t[RAW], rounds).median;
    double sw_s = switches_per(r, SLUICE, n), sw_r = switches_per(r, RAW, n);
    run->tally.worst_lat = SL_MAX(run->tally.worst_lat, q.median);
    if (!run->o->json)
        printf("%-4s %-9s %9s %9.1f us %6.1f us %6.2f %4.2f..%4.2f %9s %8.2f %11s %6.1f/-/%.1f  "
               "(64-byte round trip, median)\n",
               kind, "copy", "rtt", us_s, us_r, q.median, q.q1, q.q3, "", control, "", sw_s, sw_r);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "link", kind);
    cJSON_AddNumberToObject(o, "bytes", 64);
    cJSON_AddNumberToObject(o, "round_trips", n);
    cJSON_AddNumberToObject(o, "sluice_us", us_s);
    cJSON_AddNumberToObject(o, "raw_us", us_r);
    cJSON_AddNumberToObject(o, "ratio", q.median);
    cJSON_AddNumberToObject(o, "ratio_q1", q.q1);
    cJSON_AddNumberToObject(o, "ratio_q3", q.q3);
    cJSON_AddNumberToObject(o, "control_ratio", control);
    cJSON_AddNumberToObject(o, "sluice_switches_per_rtt", sw_s);
    cJSON_AddNumberToObject(o, "raw_switches_per_rtt", sw_r);
    cJSON_AddItemToArray(run->lat, o);
    if (run->o->json) progress(run->t0, &run->rows, run->n_rows, "%s round trip", kind);
    return 0;
}

/* A CURVE row: sluice over tcp with CURVE against sluice without it, at `bytes`. */
static int curve_row(struct run *run, size_t bytes)
{
    static const int two[] = {SLUICE, SLUICE_CURVE};
    const int count = count_for(bytes, run->o->scale * 0.5);
    struct rounds *r = run->r;
    if (compare(run->set, two, 2, run->o->rounds, 1, 0, bytes, count, 0, r)) return -1;
    double gc = gbps(bytes, count, median_time(r, SLUICE_CURVE));
    double gp = gbps(bytes, count, median_time(r, SLUICE));
    double slowdown = speed_ratio(r, SLUICE, SLUICE_CURVE);
    if (!run->o->json)
        printf("tcp %10zu %9.2f GB/s with CURVE, %.2f GB/s without: %.2fx the time\n", bytes, gc,
               gp, slowdown);
    cJSON *co = cJSON_CreateObject();
    cJSON_AddNumberToObject(co, "bytes", (double)bytes);
    cJSON_AddNumberToObject(co, "curve_gbps", gc);
    cJSON_AddNumberToObject(co, "plain_gbps", gp);
    cJSON_AddNumberToObject(co, "slowdown", slowdown);
    cJSON_AddItemToArray(run->curve, co);
    if (run->o->json) progress(run->t0, &run->rows, run->n_rows, "tcp CURVE %zu", bytes);
    return 0;
}

/* Every row, ipc first and then tcp: throughput in the copy and the zero-copy pairing at every
 * size, the round trip, and over tcp CURVE's cost at 64 KiB and 1 MiB. Stops at the first trial
 * that fails (it has said why). */
static int measure_rows(struct run *run)
{
    for (int tcp = 0; tcp < 2; tcp++) {
        for (int zc = 0; zc < 2; zc++)
            for (size_t k = 0; k < SL_ARRAY_LEN(sizes); k++)
                if (throughput_row(run, tcp, zc, sizes[k])) return -1;
        if (round_trip_row(run, tcp)) return -1;
        for (size_t k = 1; tcp && run->o->curve_on && k < 3; k++)
            if (curve_row(run, sizes[k])) return -1;
    }
    return 0;
}

/* The summary's figures, added to the JSON object. */
static void add_summary(cJSON *root, const struct tally *t)
{
    cJSON_AddNumberToObject(root, "ratio", t->worst[0]);
    cJSON_AddStringToObject(root, "ratio_is",
                            "lowest sluice/raw throughput ratio at >= 64 KiB over ipc and tcp, "
                            "copy pairing (sl_transport_send/recv against zmq_send/zmq_recv)");
    cJSON_AddNumberToObject(root, "zero_copy_ratio", t->worst[1]);
    cJSON_AddStringToObject(
        root, "zero_copy_ratio_is",
        "the same for send_owned/recv_borrow against zmq_msg_init_data/zmq_msg_recv: raw "
        "libzmq never reads the payload there, sluice reads it once on each side for the CRC");
    cJSON_AddNumberToObject(root, "latency_ratio", t->worst_lat);
    cJSON_AddNumberToObject(root, "control_ratio_min", t->control_lo);
    cJSON_AddNumberToObject(root, "control_ratio_max", t->control_hi);
    cJSON_AddNumberToObject(root, "control_ratio_headline_min", t->control_headline);
    cJSON_AddStringToObject(root, "control_ratio_headline_min_is",
                            "the raw/raw control's worst over the rows the headline ratio takes: "
                            "below target_ratio, two identical links already measure that far "
                            "apart here, and the run cannot tell sluice at the target from below "
                            "it");
    cJSON_AddNumberToObject(root, "framed_ratio_min", t->framed_lo);
    cJSON_AddNumberToObject(root, "framed_ratio_max", t->framed_hi);
    cJSON_AddStringToObject(root, "framed_ratio_is",
                            "raw libzmq with sluice's framing (DEALER to ROUTER, a header frame "
                            "before each payload) over plain raw PUSH/PULL, at >= 64 KiB");
    cJSON_AddNumberToObject(root, "target_ratio", TARGET_RATIO);
    cJSON_AddNumberToObject(root, "target_latency_ratio", TARGET_LATENCY_RATIO);
}

/* The summary under the table, for people. */
static void print_summary(const struct tally *t, const struct options *o, const double crc[3])
{
    printf("\nthroughput ratio at >= 64 KiB, copy pairing (worst): %.2f (target >= %.2f); "
           "zero-copy pairing (worst): %.2f\nround-trip ratio (worst): %.2f (target <= "
           "%.2f)\nraw/raw control: %.2f .. %.2f (two identical raw links; how far apart "
           "equal links measure here)\nframed/raw at >= 64 KiB: %.2f .. %.2f (raw libzmq "
           "carrying sluice's framing, DEALER to ROUTER with a header frame, against plain "
           "raw)\ncpu ratio: raw libzmq's CPU seconds (all threads) over sluice's for the "
           "same bytes, median over rounds\nswitches s/f/r: context switches of all threads per "
           "message (rtt: per round trip) for sluice, framed raw and raw, median over rounds\n"
           "CRC32C (%s) over 64 KiB in cache: %.1f GB/s, %.1f GB/s while copying; memcpy %.1f "
           "GB/s\n",
           t->worst[0], TARGET_RATIO, t->worst[1], t->worst_lat, TARGET_LATENCY_RATIO,
           t->control_lo, t->control_hi, t->framed_lo, t->framed_hi, sl_crc32c_path(), crc[0],
           crc[1], crc[2]);
    if (t->control_headline < TARGET_RATIO)
        printf("the raw/raw control measured %.2f in the headline's rows, below the target: "
               "this run cannot resolve it (more --rounds or --pin narrow the spread)\n",
               t->control_headline);
    if (o->pinned)
        printf("ranks pinned: rank 0 and its libzmq threads on CPU %d, rank 1 on CPU %d\n",
               o->cpus[0], o->cpus[1]);
    else
        printf("ranks not pinned: the kernel placed the threads (--pin binds each rank to a "
               "CPU)\n");
}

/* The benchmark proper, with its buffers given: starts the ranks, measures every row and reports.
 * Returns the exit status. */
static int run_bench(const struct options *o, const char *dir, uint8_t *sbuf, uint8_t *rbuf,
                     struct rounds *r)
{
    for (size_t i = 0; i < MAX_BYTES; i++) sbuf[i] = (uint8_t)(i * 7 + 3);
    struct keys keys;
    make_keys(&keys);
    struct peer peer;
    if (start_ranks(&peer, o)) return 1;
    struct setting set = {dir, keys.curve, sbuf, rbuf, &peer, o->fault_who, o->fault_rank};
    struct run run = {
        .o = o,
        .set = &set,
        .r = r,
        .n_rows = 2 * (2 * (int)SL_ARRAY_LEN(sizes) + 1) + (o->curve_on ? 2 : 0),
        .tally = {.worst = {1e9, 1e9},
                  .control_lo = 1e9,
                  .control_headline = 1e9,
                  .framed_lo = 1e9},
    };
    double crc[3];
    crc_speeds(sbuf, rbuf, crc);
    cJSON *root = json_head(&run, crc);
    run.t0 = sl_now();
    if (!o->json) print_header();
    int failed = measure_rows(&run);
    peer_stop(&peer);
    if (failed) {
        cJSON_Delete(root);
        return 1;
    }
    add_summary(root, &run.tally);
    if (o->json) {
        sl_bench_print_json(root);
    } else {
        print_summary(&run.tally, o, crc);
        cJSON_Delete(root);
    }
    return 0;
}

int sl_bench_transport(int argc, char **argv)
{
    struct options o;
    int status = parse_options(argc, argv, &o);
    if (status >= 0) return status;
    if (make_run_dir()) return 1;
    on_ending_signals(remove_leftovers);
    uint8_t *sbuf = malloc(MAX_BYTES), *rbuf = malloc(MAX_BYTES);
    struct rounds *r = malloc(sizeof *r);
    if (sbuf && rbuf && r) {
        status = run_bench(&o, leftovers.dir, sbuf, rbuf, r);
    } else {
        fprintf(stderr, "sluice bench transport: out of memory\n");
        status = 1;
    }
    free(sbuf);
    free(rbuf);
    free(r);
    sl_remove_tree(leftovers.dir); /* the ipc endpoints' socket files */
    on_ending_signals(SIG_DFL);
    return status;
}
