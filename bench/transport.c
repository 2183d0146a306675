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
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/transport_impl.h"
#include "core/core.h"
#include "transport/transport.h"

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
        *who = f[0] == 's' ? SL__BENCH_SLUICE : SL__BENCH_RAW;
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
           SL__BENCH_DEFAULT_ROUNDS, SL__BENCH_MAX_ROUNDS);
}

/* Reads the command line, SLUICE_BENCH_FAULT and, with --pin, the two CPUs to bind the ranks to.
 * Returns -1 to go on, else the exit status: 0 after --help, 2 on a usage error. */
static int parse_options(int argc, char **argv, struct options *o)
{
    *o = (struct options){.rounds = SL__BENCH_DEFAULT_ROUNDS, .curve_on = 1, .scale = 0.25};
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
            if (o->rounds < 1 || o->rounds > SL__BENCH_MAX_ROUNDS) {
                fprintf(stderr, "sluice bench transport: --rounds takes a number from 1 to %d\n",
                        SL__BENCH_MAX_ROUNDS);
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
    if (o->pinned && sl__bench_two_cpus(o->cpus)) {
        fprintf(stderr, "sluice bench transport: --pin needs two CPUs and this process may use "
                        "only one\n");
        return 2;
    }
    return -1;
}

/* Makes the run's own directory for the ipc socket files, under $TMPDIR or /tmp, in
 * sl__bench_leftovers.dir. */
static int make_run_dir(void)
{
    const char *tmp = getenv("TMPDIR");
    char *dir = sl__bench_leftovers.dir;
    snprintf(dir, sizeof sl__bench_leftovers.dir, "%s/sluice-bench-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(dir)) return 0;
    fprintf(stderr, "sluice bench transport: cannot make a temp dir %s: %s (set TMPDIR)\n", dir,
            strerror(errno));
    return -1;
}

/* What a signal that ends the run leaves behind (sl__bench_leftovers), removed; the signal then
 * ends the process. */
static void remove_leftovers(int sig)
{
    sl__bench_remove_socket_files();
    rmdir(sl__bench_leftovers.dir);
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
static int start_ranks(struct sl__bench_peer *peer, const struct options *o)
{
    if (sl__bench_peer_start(peer)) {
        fprintf(stderr, "sluice bench transport: cannot start a thread\n");
        return -1;
    }
    if (o->pinned &&
        (sl__bench_pin(peer->thread, o->cpus[1]) || sl__bench_pin(pthread_self(), o->cpus[0]))) {
        fprintf(stderr, "sluice bench transport: cannot bind the ranks to CPUs %d and %d\n",
                o->cpus[0], o->cpus[1]);
        sl__bench_peer_stop(peer);
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
    const struct sl__bench_setting *set;
    struct sl__bench_rounds *r;
    cJSON *thr, *lat, *curve, *shm;
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
    run->shm = cJSON_AddArrayToObject(root, "shared_memory");
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
    static const int four[] = {SL__BENCH_SLUICE, SL__BENCH_RAW, SL__BENCH_CONTROL,
                               SL__BENCH_FRAMED};
    const char *kind = tcp ? "tcp" : "ipc", *mode = zc ? "zero-copy" : "copy";
    const int rounds = run->o->rounds, count = count_for(bytes, run->o->scale);
    struct sl__bench_rounds *r = run->r;
    if (sl__bench_compare(run->set, four, 4, rounds, tcp, zc, bytes, count, 0, r)) return -1;
    double gs = gbps(bytes, count, sl__bench_median_time(r, SL__BENCH_SLUICE));
    double gr = gbps(bytes, count, sl__bench_median_time(r, SL__BENCH_RAW));
    struct sl__bench_quartiles q =
        sl__bench_ratio_quartiles(r->t[SL__BENCH_RAW], r->t[SL__BENCH_SLUICE], rounds);
    double ratio = q.median;
    double control = sl__bench_speed_ratio(r, SL__BENCH_CONTROL, SL__BENCH_RAW);
    double framed = sl__bench_speed_ratio(r, SL__BENCH_FRAMED, SL__BENCH_RAW);
    double cpu =
        sl__bench_ratio_quartiles(r->cpu[SL__BENCH_RAW], r->cpu[SL__BENCH_SLUICE], rounds).median;
    double sw[] = {sl__bench_switches_per(r, SL__BENCH_SLUICE, count),
                   sl__bench_switches_per(r, SL__BENCH_FRAMED, count),
                   sl__bench_switches_per(r, SL__BENCH_RAW, count)};
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
    cJSON_AddNumberToObject(o, "framed_raw_gbps",
                            gbps(bytes, count, sl__bench_median_time(r, SL__BENCH_FRAMED)));
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
    static const int three[] = {SL__BENCH_SLUICE, SL__BENCH_RAW, SL__BENCH_CONTROL};
    const char *kind = tcp ? "tcp" : "ipc";
    const int rounds = run->o->rounds, n = (int)(2000 * run->o->scale) + 200;
    struct sl__bench_rounds *r = run->r;
    if (sl__bench_compare(run->set, three, 3, rounds, tcp, 0, 64, n, 1, r)) return -1;
    double us_s = sl__bench_median_time(r, SL__BENCH_SLUICE) / n * 1e6,
           us_r = sl__bench_median_time(r, SL__BENCH_RAW) / n * 1e6;
    struct sl__bench_quartiles q =
        sl__bench_ratio_quartiles(r->t[SL__BENCH_SLUICE], r->t[SL__BENCH_RAW], rounds);
    double control =
        sl__bench_ratio_quartiles(r->t[SL__BENCH_CONTROL], r->t[SL__BENCH_RAW], rounds).median;
    double sw_s = sl__bench_switches_per(r, SL__BENCH_SLUICE, n),
           sw_r = sl__bench_switches_per(r, SL__BENCH_RAW, n);
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
    static const int two[] = {SL__BENCH_SLUICE, SL__BENCH_SLUICE_CURVE};
    const int count = count_for(bytes, run->o->scale * 0.5);
    struct sl__bench_rounds *r = run->r;
    if (sl__bench_compare(run->set, two, 2, run->o->rounds, 1, 0, bytes, count, 0, r)) return -1;
    double gc = gbps(bytes, count, sl__bench_median_time(r, SL__BENCH_SLUICE_CURVE));
    double gp = gbps(bytes, count, sl__bench_median_time(r, SL__BENCH_SLUICE));
    double slowdown = sl__bench_speed_ratio(r, SL__BENCH_SLUICE, SL__BENCH_SLUICE_CURVE);
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

/* A shared-memory row: sluice over ipc with its payloads in a ring of shared memory against sluice
 * over the socket, copy pairing, at `bytes`. */
static int shm_row(struct run *run, size_t bytes)
{
    static const int two[] = {SL__BENCH_SLUICE, SL__BENCH_SLUICE_RING};
    const int count = count_for(bytes, run->o->scale * 0.5);
    struct sl__bench_rounds *r = run->r;
    if (sl__bench_compare(run->set, two, 2, run->o->rounds, 0, 0, bytes, count, 0, r)) return -1;
    double gm = gbps(bytes, count, sl__bench_median_time(r, SL__BENCH_SLUICE_RING));
    double gs = gbps(bytes, count, sl__bench_median_time(r, SL__BENCH_SLUICE));
    struct sl__bench_quartiles q = sl__bench_ratio_quartiles(
        r->t[SL__BENCH_SLUICE], r->t[SL__BENCH_SLUICE_RING], run->o->rounds);
    double cpu = sl__bench_ratio_quartiles(r->cpu[SL__BENCH_SLUICE], r->cpu[SL__BENCH_SLUICE_RING],
                                           run->o->rounds)
                     .median;
    if (!run->o->json)
        printf("ipc %10zu %9.2f GB/s through shared memory, %.2f GB/s over the socket: %.2fx "
               "(q1..q3 %.2f..%.2f), cpu %.2fx\n",
               bytes, gm, gs, q.median, q.q1, q.q3, cpu);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "bytes", (double)bytes);
    cJSON_AddNumberToObject(o, "shared_memory_gbps", gm);
    cJSON_AddNumberToObject(o, "socket_gbps", gs);
    cJSON_AddNumberToObject(o, "speedup", q.median);
    cJSON_AddNumberToObject(o, "speedup_q1", q.q1);
    cJSON_AddNumberToObject(o, "speedup_q3", q.q3);
    cJSON_AddNumberToObject(o, "cpu_ratio", cpu);
    cJSON_AddItemToArray(run->shm, o);
    if (run->o->json) progress(run->t0, &run->rows, run->n_rows, "ipc shared memory %zu", bytes);
    return 0;
}

/* Every row, ipc first and then tcp: throughput in the copy and the zero-copy pairing at every
 * size, the round trip, over ipc the shared-memory ring's gain from 64 KiB up, and over tcp
 * CURVE's cost at 64 KiB and 1 MiB. Stops at the first trial
 * that fails (it has said why). */
static int measure_rows(struct run *run)
{
    for (int tcp = 0; tcp < 2; tcp++) {
        for (int zc = 0; zc < 2; zc++)
            for (size_t k = 0; k < SL_ARRAY_LEN(sizes); k++)
                if (throughput_row(run, tcp, zc, sizes[k])) return -1;
        if (round_trip_row(run, tcp)) return -1;
        for (size_t k = 1; !tcp && k < SL_ARRAY_LEN(sizes); k++)
            if (shm_row(run, sizes[k])) return -1;
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
                     struct sl__bench_rounds *r)
{
    for (size_t i = 0; i < SL__BENCH_MAX_BYTES; i++) sbuf[i] = (uint8_t)(i * 7 + 3);
    struct keys keys;
    make_keys(&keys);
    struct sl__bench_peer peer;
    if (start_ranks(&peer, o)) return 1;
    struct sl__bench_setting set = {.dir = dir,
                                    .curve = keys.curve,
                                    .sbuf = sbuf,
                                    .rbuf = rbuf,
                                    .peer = &peer,
                                    .fault_who = o->fault_who,
                                    .fault_rank = o->fault_rank};
    struct run run = {
        .o = o,
        .set = &set,
        .r = r,
        .n_rows = 2 * (2 * (int)SL_ARRAY_LEN(sizes) + 1) + (o->curve_on ? 2 : 0) +
                  (int)SL_ARRAY_LEN(sizes) - 1,
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
    sl__bench_peer_stop(&peer);
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
    uint8_t *sbuf = malloc(SL__BENCH_MAX_BYTES), *rbuf = malloc(SL__BENCH_MAX_BYTES);
    struct sl__bench_rounds *r = malloc(sizeof *r);
    if (sbuf && rbuf && r) {
        status = run_bench(&o, sl__bench_leftovers.dir, sbuf, rbuf, r);
    } else {
        fprintf(stderr, "sluice bench transport: out of memory\n");
        status = 1;
    }
    free(sbuf);
    free(rbuf);
    free(r);
    sl_remove_tree(sl__bench_leftovers.dir); /* the ipc endpoints' socket files */
    on_ending_signals(SIG_DFL);
    return status;
}
