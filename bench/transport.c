/* `sluice bench transport`: link throughput and small-message round trip against raw libzmq
 * PUSH/PULL measured in the same run, over ipc and tcp loopback; CURVE's cost separately.
 *
 * Both sides run as two threads of this process with separate ZeroMQ contexts (as two ranks
 * would), with the same high-water marks, message sizes and counts. Two pairings of APIs:
 *   copy:      sl_transport_send / sl_transport_recv against zmq_send / zmq_recv (the data is
 *              copied in on send and out on receive by both);
 *   zero-copy: sl_transport_send_owned / sl_transport_recv_borrow (as the training executor uses
 *              them) against zmq_msg_init_data + zmq_msg_send / zmq_msg_recv (no copy by either).
 * sluice adds its header frame, the CRC32C of header and payload on both sides and every
 * validation. After a warm-up, trials of the two alternate (which goes first alternates too) and
 * the best of each is kept, which damps noise from other work on the machine. The round trip
 * (64-byte messages echoed back) uses the copy pairing. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "bench/bench.h"
#include "runtime/core/core.h"
#include "transport/transport.h"

#define IN_FLIGHT 8
#define MAX_BYTES ((size_t)16 << 20)

/* ------------------------------------------------------------------------------------------------
 * The two sides under test */

struct side {
    int raw;
    void *push, *pull;   /* raw: this side's sockets (pull may be NULL) */
    sl_transport *t;     /* sluice */
    int dir_out, dir_in; /* sluice: link directions for sending and receiving */
    int zc;              /* zero-copy: hand the buffer over / read the message in place */
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

struct job {
    struct side *s;
    void *buf;
    size_t bytes;
    int count;
    int pingpong; /* echo back each message */
    int status;
};

static void *receiver_main(void *arg)
{
    struct job *j = arg;
    for (int i = 0; i < j->count && !j->status; i++) {
        j->status = side_recv(j->s, j->buf, j->bytes);
        if (!j->status && j->pingpong) j->status = side_send(j->s, j->buf, j->bytes);
    }
    return NULL;
}

/* Seconds to move `count` messages of `bytes` from a to b (or, pingpong, a to b and back); the
 * payload is checked after the clock stops. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double last_cpu; /* CPU seconds of the last trial, every thread of the process */

static double run_trial(struct side *a, struct side *b, size_t bytes, int count, int pingpong,
                        void *sbuf, void *rbuf)
{
    double c0 = cpu_now();
    struct job j = {b, rbuf, bytes, count, pingpong, 0};
    pthread_t th;
    pthread_create(&th, NULL, receiver_main, &j);
    double t0 = sl_now();
    int st = 0;
    for (int i = 0; i < count && !st; i++) {
        st = side_send(a, sbuf, bytes);
        if (!st && pingpong) st = side_recv(a, sbuf, bytes); /* the same bytes come back */
    }
    pthread_join(th, NULL);
    double dt = sl_now() - t0;
    last_cpu = cpu_now() - c0;
    if (st || j.status) {
        fprintf(stderr, "sluice bench transport: a transfer failed: %s\n", sl_last_error());
        return -1;
    }
    if (side_check(b, sbuf, rbuf, bytes)) {
        fprintf(stderr, "sluice bench transport: payload corrupted\n");
        return -1;
    }
    return dt;
}

/* ------------------------------------------------------------------------------------------------
 * Setting up */

struct opener {
    sl_transport_options o;
    sl_transport *t;
    int status;
};

static void *opener_main(void *arg)
{
    struct opener *op = arg;
    op->status = sl_transport_open(&op->o, &op->t);
    if (op->status) fprintf(stderr, "sluice bench transport: %s\n", sl_last_error());
    return NULL;
}

/* A two-rank world: a sends to b on its next link, b answers on its prev link. */
static int open_sluice(const char ep[2][128], const sl_transport_curve *curve, struct side *a,
                       struct side *b)
{
    struct opener ops[2];
    memset(ops, 0, sizeof ops);
    pthread_t th[2];
    for (int r = 0; r < 2; r++) {
        sl_transport_options_init(&ops[r].o);
        ops[r].o.run_id = 0xbe7c4;
        ops[r].o.rank = r;
        ops[r].o.world = 2;
        ops[r].o.bind_endpoint = ep[r];
        ops[r].o.next_endpoint = ep[1 - r];
        ops[r].o.in_flight = IN_FLIGHT;
        ops[r].o.max_tensor_bytes = MAX_BYTES;
        ops[r].o.connect_timeout_ms = 10000;
        ops[r].o.curve = curve ? &curve[r] : NULL;
        pthread_create(&th[r], NULL, opener_main, &ops[r]);
    }
    for (int r = 0; r < 2; r++) pthread_join(th[r], NULL);
    if (ops[0].status || ops[1].status) {
        sl_transport_close(ops[0].t);
        sl_transport_close(ops[1].t);
        return -1;
    }
    *a = (struct side){.t = ops[0].t, .dir_out = SL_LINK_NEXT, .dir_in = SL_LINK_NEXT};
    *b = (struct side){.t = ops[1].t, .dir_out = SL_LINK_PREV, .dir_in = SL_LINK_PREV};
    return 0;
}

struct raw_pair {
    void *ctx[2];
};

static void *raw_socket(void *ctx, int type)
{
    void *s = zmq_socket(ctx, type);
    int hwm = IN_FLIGHT + 4, linger = 0;
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    return s;
}

/* Raw PUSH/PULL both ways: a.push -> b.pull on ep[1], b.push -> a.pull on ep[0]. */
static int open_raw(const char ep[2][128], struct raw_pair *rp, struct side *a, struct side *b)
{
    rp->ctx[0] = zmq_ctx_new();
    rp->ctx[1] = zmq_ctx_new();
    *a = (struct side){.raw = 1,
                       .push = raw_socket(rp->ctx[0], ZMQ_PUSH),
                       .pull = raw_socket(rp->ctx[0], ZMQ_PULL)};
    *b = (struct side){.raw = 1,
                       .push = raw_socket(rp->ctx[1], ZMQ_PUSH),
                       .pull = raw_socket(rp->ctx[1], ZMQ_PULL)};
    if (zmq_bind(b->pull, ep[1]) || zmq_bind(a->pull, ep[0]) || zmq_connect(a->push, ep[1]) ||
        zmq_connect(b->push, ep[0])) {
        fprintf(stderr, "sluice bench transport: raw libzmq setup failed: %s\n",
                zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}

static void close_raw(struct raw_pair *rp, struct side *a, struct side *b)
{
    zmq_close(a->push);
    zmq_close(a->pull);
    zmq_close(b->push);
    zmq_close(b->pull);
    zmq_ctx_term(rp->ctx[0]);
    zmq_ctx_term(rp->ctx[1]);
}

static void endpoints(int tcp, const char *dir, int salt, char ep[2][128])
{
    static int port = 0;
    if (!port) port = 20000 + (int)(getpid() % 20000);
    for (int i = 0; i < 2; i++) {
        if (tcp)
            snprintf(ep[i], 128, "tcp://127.0.0.1:%d", port++);
        else
            snprintf(ep[i], 128, "ipc://%s/s%d-%d", dir, salt, i);
    }
}

/* ------------------------------------------------------------------------------------------------
 * The benchmark */

static const size_t sizes[] = {4096, 65536, 1 << 20, 16 << 20};

static int count_for(size_t bytes, double scale)
{
    /* About 128 MiB per trial at full scale, at least 8 messages. */
    double n = scale * (double)(128 << 20) / (double)bytes;
    return n < 8 ? 8 : (int)n;
}

int sl_bench_transport(int argc, char **argv)
{
    int json = 0, trials = 5, curve_on = 1;
    double scale = 0.5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--quick"))
            scale = 0.125, trials = 3;
        else if (!strcmp(argv[i], "--no-curve"))
            curve_on = 0;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: sluice bench transport [--json] [--quick] [--no-curve]\n\n"
                   "Throughput (4 KiB .. 16 MiB) and 64-byte round trip of sluice links against\n"
                   "raw libzmq PUSH/PULL in the same run, over ipc and tcp loopback; CURVE's\n"
                   "cost over tcp against sluice without it. Best of %d alternating trials.\n",
                   trials);
            return 0;
        } else {
            fprintf(stderr, "sluice bench transport: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    char dir[] = "/tmp/sluice-bench-XXXXXX";
    if (!mkdtemp(dir)) {
        fprintf(stderr, "sluice bench transport: cannot make a temp dir\n");
        return 1;
    }
    uint8_t *sbuf = malloc(MAX_BYTES), *rbuf = malloc(MAX_BYTES);
    if (!sbuf || !rbuf) return 1;
    for (size_t i = 0; i < MAX_BYTES; i++) sbuf[i] = (uint8_t)(i * 7 + 3);

    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "name", "transport");
    cJSON_AddStringToObject(
        root, "baseline", "raw libzmq PUSH/PULL (zmq_send/zmq_recv, same sizes and HWM, same run)");
    cJSON *thr = cJSON_AddArrayToObject(root, "throughput");
    cJSON *lat = cJSON_AddArrayToObject(root, "latency");
    double worst = 1e9, worst_lat = 0;
    int failed = 0, salt = 0;
    if (!json)
        printf("%-4s %-9s %10s %14s %14s %7s %9s\n", "link", "mode", "payload", "sluice GB/s",
               "raw GB/s", "ratio", "cpu ratio");
    for (int tcp = 0; tcp < 2 && !failed; tcp++) {
        const char *kind = tcp ? "tcp" : "ipc";
        char ep_s[2][128], ep_r[2][128];
        endpoints(tcp, dir, salt++, ep_s);
        endpoints(tcp, dir, salt++, ep_r);
        struct side sa, sb, ra, rb;
        struct raw_pair rp;
        if (open_sluice(ep_s, NULL, &sa, &sb) || open_raw(ep_r, &rp, &ra, &rb)) {
            failed = 1;
            break;
        }
        for (int zc = 0; zc < 2 && !failed; zc++) {
            sa.zc = sb.zc = ra.zc = rb.zc = zc;
            const char *mode = zc ? "zero-copy" : "copy";
            for (size_t k = 0; k < SL_ARRAY_LEN(sizes) && !failed; k++) {
                size_t bytes = sizes[k];
                int count = count_for(bytes, scale);
                /* A short warm-up of each, then trials alternating which goes first. */
                if (run_trial(&ra, &rb, bytes, 8, 0, sbuf, rbuf) < 0 ||
                    run_trial(&sa, &sb, bytes, 8, 0, sbuf, rbuf) < 0) {
                    failed = 1;
                    break;
                }
                double best_s = 1e30, best_r = 1e30, cpu_s = 1e30, cpu_r = 1e30;
                for (int tr = 0; tr < trials && !failed; tr++) {
                    double r, s, cr, cs;
                    if (tr & 1) {
                        s = run_trial(&sa, &sb, bytes, count, 0, sbuf, rbuf), cs = last_cpu;
                        r = run_trial(&ra, &rb, bytes, count, 0, sbuf, rbuf), cr = last_cpu;
                    } else {
                        r = run_trial(&ra, &rb, bytes, count, 0, sbuf, rbuf), cr = last_cpu;
                        s = run_trial(&sa, &sb, bytes, count, 0, sbuf, rbuf), cs = last_cpu;
                    }
                    if (r < 0 || s < 0) failed = 1;
                    best_r = SL_MIN(best_r, r);
                    best_s = SL_MIN(best_s, s);
                    cpu_r = SL_MIN(cpu_r, cr);
                    cpu_s = SL_MIN(cpu_s, cs);
                }
                if (failed) break;
                double gs = (double)bytes * count / best_s / 1e9,
                       gr = (double)bytes * count / best_r / 1e9;
                double ratio = gs / gr;
                if (bytes >= 65536) worst = SL_MIN(worst, ratio);
                if (!json)
                    printf("%-4s %-9s %10zu %14.2f %14.2f %7.2f %9.2f\n", kind, mode, bytes, gs, gr,
                           ratio, cpu_r / cpu_s);
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "link", kind);
                cJSON_AddStringToObject(o, "mode", mode);
                cJSON_AddNumberToObject(o, "bytes", (double)bytes);
                cJSON_AddNumberToObject(o, "messages", count);
                cJSON_AddNumberToObject(o, "sluice_gbps", gs);
                cJSON_AddNumberToObject(o, "raw_gbps", gr);
                cJSON_AddNumberToObject(o, "ratio", ratio);
                cJSON_AddNumberToObject(o, "sluice_cpu_s", cpu_s);
                cJSON_AddNumberToObject(o, "raw_cpu_s", cpu_r);
                cJSON_AddNumberToObject(o, "cpu_ratio", cpu_r / cpu_s);
                cJSON_AddItemToArray(thr, o);
            }
        }
        sa.zc = sb.zc = ra.zc = rb.zc = 0;
        /* Round trip of 64-byte messages. */
        int n = (int)(3000 * scale) + 200;
        double best_s = 1e30, best_r = 1e30;
        for (int tr = 0; tr < trials && !failed; tr++) {
            double r, s;
            if (tr & 1) {
                s = run_trial(&sa, &sb, 64, n, 1, sbuf, rbuf);
                r = run_trial(&ra, &rb, 64, n, 1, sbuf, rbuf);
            } else {
                r = run_trial(&ra, &rb, 64, n, 1, sbuf, rbuf);
                s = run_trial(&sa, &sb, 64, n, 1, sbuf, rbuf);
            }
            if (r < 0 || s < 0) failed = 1;
            best_r = SL_MIN(best_r, r);
            best_s = SL_MIN(best_s, s);
        }
        double us_s = best_s / n * 1e6, us_r = best_r / n * 1e6;
        worst_lat = SL_MAX(worst_lat, us_s / us_r);
        if (!json)
            printf("%-4s %-9s %10s %11.1f us %11.1f us %7.2f  (64-byte round trip)\n", kind, "copy",
                   "rtt", us_s, us_r, us_s / us_r);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "link", kind);
        cJSON_AddNumberToObject(o, "bytes", 64);
        cJSON_AddNumberToObject(o, "sluice_us", us_s);
        cJSON_AddNumberToObject(o, "raw_us", us_r);
        cJSON_AddNumberToObject(o, "ratio", us_s / us_r);
        cJSON_AddItemToArray(lat, o);

        /* CURVE over tcp, against sluice without it. */
        if (tcp && curve_on && !failed) {
            char pub[2][41], sec[2][41];
            sl_transport_curve c[2];
            const char *allowed[2][1];
            for (int r = 0; r < 2; r++) sl_transport_keypair(pub[r], sec[r]);
            for (int r = 0; r < 2; r++) {
                allowed[r][0] = pub[1 - r];
                c[r] = (sl_transport_curve){pub[r], sec[r], pub[1 - r], allowed[r], 1};
            }
            char ep_c[2][128];
            endpoints(1, dir, salt++, ep_c);
            struct side ca, cb;
            if (open_sluice(ep_c, c, &ca, &cb)) {
                failed = 1;
            } else {
                cJSON *cj = cJSON_AddArrayToObject(root, "curve");
                for (size_t k = 1; k < 3; k++) {
                    size_t bytes = sizes[k];
                    int count = count_for(bytes, scale * 0.25);
                    double bc = 1e30, bp = 1e30;
                    for (int tr = 0; tr < trials; tr++) {
                        bp = SL_MIN(bp, run_trial(&sa, &sb, bytes, count, 0, sbuf, rbuf));
                        bc = SL_MIN(bc, run_trial(&ca, &cb, bytes, count, 0, sbuf, rbuf));
                    }
                    double gc = (double)bytes * count / bc / 1e9,
                           gp = (double)bytes * count / bp / 1e9;
                    if (!json)
                        printf("tcp %10zu %9.2f GB/s with CURVE, %.2f GB/s without: %.2fx the "
                               "time\n",
                               bytes, gc, gp, gp / gc);
                    cJSON *co = cJSON_CreateObject();
                    cJSON_AddNumberToObject(co, "bytes", (double)bytes);
                    cJSON_AddNumberToObject(co, "curve_gbps", gc);
                    cJSON_AddNumberToObject(co, "plain_gbps", gp);
                    cJSON_AddNumberToObject(co, "slowdown", gp / gc);
                    cJSON_AddItemToArray(cj, co);
                }
                sl_transport_close(ca.t);
                sl_transport_close(cb.t);
            }
        }
        sl_transport_close(sa.t);
        sl_transport_close(sb.t);
        close_raw(&rp, &ra, &rb);
    }
    free(sbuf);
    free(rbuf);
    rmdir(dir);
    if (failed) {
        cJSON_Delete(root);
        return 1;
    }
    cJSON_AddNumberToObject(root, "ratio", worst);
    cJSON_AddStringToObject(root, "ratio_is",
                            "lowest sluice/raw throughput ratio at >= 64 KiB over ipc and tcp");
    cJSON_AddNumberToObject(root, "latency_ratio", worst_lat);
    cJSON_AddNumberToObject(root, "target_ratio", 0.9);
    cJSON_AddNumberToObject(root, "target_latency_ratio", 1.2);
    if (json)
        sl_bench_print_json(root);
    else {
        printf("\nthroughput ratio at >= 64 KiB (worst): %.2f (target >= 0.90); round-trip ratio "
               "(worst): %.2f (target <= 1.20)\ncpu ratio: raw libzmq's CPU seconds (all threads, "
               "best trial) over sluice's for the same bytes; less sensitive to other load than "
               "wall-clock\n",
               worst, worst_lat);
        cJSON_Delete(root);
    }
    return 0;
}
