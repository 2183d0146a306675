/* Links between ranks: round trips over inproc, ipc and tcp; rings; ownership of zero-copy
 * buffers; bad endpoints. */
#include <criterion/criterion.h>

#include "helpers.h"

/* Opens ranks 0 and 1 of a two-rank world. */
static void open_pair(enum kind k, void *ctx, struct opener ops[2], char ep[2][128])
{
    make_endpoints(k, ep);
    memset(ops, 0, 2 * sizeof *ops);
    for (int r = 0; r < 2; r++) pair_options(&ops[r].o, r, 2, ep, k == K_INPROC ? ctx : NULL);
    open_all(ops, 2);
    for (int r = 0; r < 2; r++) cr_assert_eq(ops[r].status, SL_OK, "rank %d: %s", r, ops[r].msg);
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)((i * 131 + seed * 7) >> 2);
}

/* Every message type a caller sends and every dtype, both directions on both links. */
static void round_trips(enum kind k)
{
    void *ctx = zmq_ctx_new();
    struct opener ops[2];
    char ep[2][128];
    open_pair(k, ctx, ops, ep);
    sl_transport *a = ops[0].t, *b = ops[1].t;
    cr_assert_eq(sl_transport_peer(a, SL_LINK_NEXT), 1);
    cr_assert_eq(sl_transport_peer(a, SL_LINK_PREV), 1);
    uint8_t out[4096], in[4096];
    int64_t shape[3] = {3, 5, 7};
    unsigned seed = 0;
    static const int types[] = {SL_MSG_ACTIVATION, SL_MSG_GRADIENT, SL_MSG_DONE};
    for (size_t ti = 0; ti < SL_ARRAY_LEN(types); ti++)
        for (int d = 1, type = types[ti]; d < SL_DTYPE_COUNT; d++)
            for (int dir = 0; dir < 2; dir++) {
                sl_tensor_meta m, got;
                fill_meta(&m, type, d, 3, shape);
                m.mb = seed;
                size_t n = 105 * sl_dtype_size(d);
                fill(out, n, ++seed);
                /* a sends on `dir`; b receives on the opposite end of the same link. */
                cr_assert_eq(sl_transport_send(a, dir, &m, out, n), SL_OK, "%s", sl_last_error());
                memset(in, 0, sizeof in);
                size_t got_n = 0;
                int s = sl_transport_recv(b, 1 - dir, &m, in, sizeof in, &got, &got_n);
                cr_assert_eq(s, SL_OK, "%s", sl_last_error());
                cr_assert_eq(got_n, n);
                cr_assert_eq(memcmp(in, out, n), 0);
                cr_assert_eq(got.type, type);
                cr_assert_eq(got.dtype, d);
                cr_assert_eq(got.shape[2], 7);
                /* and back */
                cr_assert_eq(sl_transport_send(b, 1 - dir, &m, out, n), SL_OK, "%s",
                             sl_last_error());
                cr_assert_eq(sl_transport_recv(a, dir, NULL, in, sizeof in, NULL, NULL), SL_OK,
                             "%s", sl_last_error());
            }
    /* A scalar. */
    sl_tensor_meta m;
    fill_meta(&m, SL_MSG_ACTIVATION, SL_DTYPE_F32, 0, NULL);
    float x = 0.25f, back = 0;
    cr_assert_eq(sl_transport_send(b, SL_LINK_NEXT, &m, &x, 4), SL_OK);
    cr_assert_eq(sl_transport_recv(a, SL_LINK_PREV, &m, &back, 4, NULL, NULL), SL_OK);
    cr_assert_eq(back, 0.25f);
    sl_transport_close(a);
    sl_transport_close(b);
    zmq_ctx_term(ctx);
}

Test(links, round_trips_inproc)
{
    round_trips(K_INPROC);
}
Test(links, round_trips_ipc)
{
    round_trips(K_IPC);
}
Test(links, round_trips_tcp)
{
    round_trips(K_TCP);
}

Test(links, ring_of_four_ipc)
{
    struct opener ops[4];
    open_ipc_ring(ops, 4);
    int64_t shape[1] = {1};
    for (int r = 0; r < 4; r++) {
        sl_tensor_meta m;
        fill_meta(&m, SL_MSG_ACTIVATION, SL_DTYPE_I32, 1, shape);
        int32_t v = 100 + r;
        cr_assert_eq(sl_transport_peer(ops[r].t, SL_LINK_NEXT), (r + 1) % 4);
        cr_assert_eq(sl_transport_peer(ops[r].t, SL_LINK_PREV), (r + 3) % 4);
        cr_assert_eq(sl_transport_send(ops[r].t, SL_LINK_NEXT, &m, &v, 4), SL_OK);
        m.type = SL_MSG_GRADIENT;
        v = 200 + r;
        cr_assert_eq(sl_transport_send(ops[r].t, SL_LINK_PREV, &m, &v, 4), SL_OK);
    }
    for (int r = 0; r < 4; r++) {
        sl_tensor_meta m;
        fill_meta(&m, SL_MSG_ACTIVATION, SL_DTYPE_I32, 1, shape);
        int32_t v = 0;
        cr_assert_eq(sl_transport_recv(ops[r].t, SL_LINK_PREV, &m, &v, 4, NULL, NULL), SL_OK, "%s",
                     sl_last_error());
        cr_assert_eq(v, 100 + (r + 3) % 4); /* from the last rank to the first, too */
        m.type = SL_MSG_GRADIENT;
        cr_assert_eq(sl_transport_recv(ops[r].t, SL_LINK_NEXT, &m, &v, 4, NULL, NULL), SL_OK, "%s",
                     sl_last_error());
        cr_assert_eq(v, 200 + (r + 1) % 4);
    }
    for (int r = 0; r < 4; r++) sl_transport_close(ops[r].t);
}

Test(links, world_of_one)
{
    sl_transport_options o;
    sl_transport_options_init(&o);
    sl_transport *t;
    cr_assert_eq(sl_transport_open(&o, &t), SL_OK, "%s", sl_last_error());
    sl_tensor_meta m;
    fill_meta(&m, SL_MSG_DONE, SL_DTYPE_U8, 0, NULL);
    uint8_t b = 0;
    cr_assert_eq(sl_transport_send(t, SL_LINK_NEXT, &m, &b, 1), SL_EINVAL);
    cr_assert_eq(sl_transport_peer(t, SL_LINK_NEXT), -1);
    sl_transport_close(t);
}

Test(links, owned_buffers_freed_once)
{
    struct opener ops[2];
    char ep[2][128];
    open_pair(K_IPC, NULL, ops, ep);
    int64_t big[1] = {65536}, small[1] = {16};
    sl_tensor_meta m;
    fill_meta(&m, SL_MSG_ACTIVATION, SL_DTYPE_F32, 1, big);
    float *data = malloc(65536 * 4);
    for (int i = 0; i < 65536; i++) data[i] = (float)i;
    cr_assert_eq(
        sl_transport_send_owned(ops[0].t, SL_LINK_NEXT, &m, data, 65536 * 4, count_free, &freed),
        SL_OK);
    float *in = malloc(65536 * 4);
    cr_assert_eq(sl_transport_recv(ops[1].t, SL_LINK_PREV, &m, in, 65536 * 4, NULL, NULL), SL_OK);
    cr_assert_eq(in[65535], 65535.0f);
    /* Below the threshold: copied, freed at once. */
    fill_meta(&m, SL_MSG_ACTIVATION, SL_DTYPE_F32, 1, small);
    cr_assert_eq(
        sl_transport_send_owned(ops[0].t, SL_LINK_NEXT, &m, malloc(64), 64, count_free, &freed),
        SL_OK);
    cr_assert_eq(sl_transport_recv(ops[1].t, SL_LINK_PREV, &m, in, 64, NULL, NULL), SL_OK);
    /* Refused before sending: still freed exactly once. */
    cr_assert_eq(
        sl_transport_send_owned(ops[0].t, SL_LINK_NEXT, &m, malloc(64), 60, count_free, &freed),
        SL_EINVAL);
    sl_transport_close(ops[0].t);
    sl_transport_close(ops[1].t);
    cr_assert_eq(freed, 3);
    free(in);
}

/* Large copying sends go through pooled buffers: several in flight at once, each with its own
 * content, then received in order; three rounds, so buffers are reused while others are queued. */
Test(links, pooled_sends_keep_their_content)
{
    struct opener ops[2];
    char ep[2][128];
    open_pair(K_IPC, NULL, ops, ep);
    enum { N = 6, FLOATS = 65536 };
    int64_t shape[1] = {FLOATS};
    sl_tensor_meta m;
    fill_meta(&m, SL_MSG_ACTIVATION, SL_DTYPE_F32, 1, shape);
    float *out = malloc(FLOATS * 4), *in = malloc(FLOATS * 4);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            for (int j = 0; j < FLOATS; j++) out[j] = (float)(round * 1000 + i * 10) + (float)j;
            cr_assert_eq(sl_transport_send(ops[0].t, SL_LINK_NEXT, &m, out, FLOATS * 4), SL_OK,
                         "%s", sl_last_error());
        }
        for (int i = 0; i < N; i++) {
            cr_assert_eq(sl_transport_recv(ops[1].t, SL_LINK_PREV, &m, in, FLOATS * 4, NULL, NULL),
                         SL_OK, "%s", sl_last_error());
            float base = (float)(round * 1000 + i * 10);
            cr_assert(in[0] == base && in[FLOATS - 1] == base + (float)(FLOATS - 1),
                      "round %d message %d: %g .. %g", round, i, in[0], in[FLOATS - 1]);
        }
    }
    sl_transport_close(ops[0].t);
    sl_transport_close(ops[1].t);
    free(out);
    free(in);
}

/* Buffers from sl_transport_alloc sent with sl_transport_free: messages still queued in a shared
 * context when both transports close come back to the pool when the context goes (ASan checks
 * that nothing is used after it is freed and nothing leaks). */
Test(links, pooled_buffers_queued_past_close)
{
    void *ctx = zmq_ctx_new();
    struct opener ops[2];
    char ep[2][128];
    open_pair(K_INPROC, ctx, ops, ep);
    int64_t shape[1] = {32768};
    sl_tensor_meta m;
    fill_meta(&m, SL_MSG_ACTIVATION, SL_DTYPE_F32, 1, shape);
    for (int i = 0; i < 4; i++) {
        float *buf = sl_transport_alloc(ops[0].t, sizeof(float) * 32768);
        cr_assert_not_null(buf);
        for (int j = 0; j < 32768; j++) buf[j] = (float)(i + j);
        cr_assert_eq(sl_transport_send_owned(ops[0].t, SL_LINK_NEXT, &m, buf, sizeof(float) * 32768,
                                             sl_transport_free, NULL),
                     SL_OK, "%s", sl_last_error());
    }
    float *in = malloc(sizeof(float) * 32768);
    cr_assert_eq(
        sl_transport_recv(ops[1].t, SL_LINK_PREV, &m, in, sizeof(float) * 32768, NULL, NULL), SL_OK,
        "%s", sl_last_error());
    cr_assert_eq(in[100], 100.0f);
    sl_transport_close(ops[0].t);
    sl_transport_close(ops[1].t); /* three messages are still queued */
    zmq_ctx_term(ctx);
    free(in);
}

/* A borrowed receive points into the message, checked, until the next receive or release. */
Test(links, borrowed_receive)
{
    struct opener ops[2];
    char ep[2][128];
    open_pair(K_IPC, NULL, ops, ep);
    sl_transport *a = ops[0].t, *b = ops[1].t;
    enum { N = 1 << 18 };
    int64_t shape[1] = {N};
    sl_tensor_meta m, got;
    fill_meta(&m, SL_MSG_ACTIVATION, SL_DTYPE_U8, 1, shape);
    uint8_t *out = malloc(N);
    for (unsigned k = 0; k < 3; k++) {
        fill(out, N, k);
        m.mb = k;
        cr_assert_eq(sl_transport_send(a, SL_LINK_NEXT, &m, out, N), SL_OK, "%s", sl_last_error());
        const void *data = NULL;
        size_t n = 0;
        cr_assert_eq(sl_transport_recv_borrow(b, SL_LINK_PREV, &m, &data, &n, &got), SL_OK, "%s",
                     sl_last_error());
        cr_assert_eq(n, (size_t)N);
        cr_assert_eq(got.mb, k);
        cr_assert_eq(memcmp(data, out, N), 0);
        if (k == 1) sl_transport_release(b, SL_LINK_PREV); /* then the next recv: nothing held */
    }
    /* A mismatch is refused with nothing lent. */
    m.mb = 7;
    cr_assert_eq(sl_transport_send(a, SL_LINK_NEXT, &m, out, N), SL_OK);
    m.mb = 8;
    const void *data = out;
    size_t n = 5;
    cr_assert_eq(sl_transport_recv_borrow(b, SL_LINK_PREV, &m, &data, &n, NULL), SL_EPROTOCOL);
    cr_assert_null(data);
    cr_assert_eq(n, 0);
    cr_assert(strstr(sl_last_error(), "micro-batch 7"), "%s", sl_last_error());
    sl_transport_release(b, SL_LINK_PREV);
    sl_transport_release(NULL, SL_LINK_PREV);
    sl_transport_close(a);
    sl_transport_close(b);
    free(out);
}

/* The send queue holds `in_flight` messages without blocking. */
Test(links, in_flight_does_not_block)
{
    struct opener ops[2];
    char ep[2][128];
    make_endpoints(K_IPC, ep);
    memset(ops, 0, sizeof ops);
    for (int r = 0; r < 2; r++) {
        pair_options(&ops[r].o, r, 2, ep, NULL);
        ops[r].o.in_flight = 5;
    }
    open_all(ops, 2);
    int64_t shape[1] = {1024};
    sl_tensor_meta m;
    fill_meta(&m, SL_MSG_ACTIVATION, SL_DTYPE_F32, 1, shape);
    static float buf[1024];
    for (uint32_t i = 0; i < 5; i++) {
        m.mb = i;
        cr_assert_eq(sl_transport_send(ops[0].t, SL_LINK_NEXT, &m, buf, sizeof buf), SL_OK);
    }
    for (uint32_t i = 0; i < 5; i++) {
        m.mb = i;
        cr_assert_eq(sl_transport_recv(ops[1].t, SL_LINK_PREV, &m, buf, sizeof buf, NULL, NULL),
                     SL_OK, "%s", sl_last_error());
    }
    sl_transport_close(ops[0].t);
    sl_transport_close(ops[1].t);
}

static void open_fails(const char *bind_ep, int status, const char *needle)
{
    sl_transport_options o;
    sl_transport_options_init(&o);
    o.world = 2;
    o.bind_endpoint = bind_ep;
    o.next_endpoint = "tcp://127.0.0.1:1";
    o.connect_timeout_ms = 200;
    sl_transport *t;
    int s = sl_transport_open(&o, &t);
    cr_assert_eq(s, status, "%s: status %d: %s", bind_ep, s, sl_last_error());
    cr_assert(strstr(sl_last_error(), needle), "'%s' lacks '%s'", sl_last_error(), needle);
    cr_assert(strstr(sl_last_error(), bind_ep) || strlen(bind_ep) > 100, "'%s' does not name it",
              sl_last_error());
    cr_assert_null(t);
}

Test(links, bad_bind_endpoints)
{
    open_fails("carrier-pigeon://loft", SL_EINVAL, "unparsable");
    open_fails("tcp://127.0.0.1:notaport", SL_EIO, "cannot bind");
    char longp[300] = "ipc:///tmp/";
    memset(longp + 11, 'x', 150);
    open_fails(longp, SL_EIO, "too long");

    char ep[2][128];
    make_endpoints(K_TCP, ep);
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_PULL);
    cr_assert_eq(zmq_bind(s, ep[0]), 0);
    open_fails(ep[0], SL_EIO, "in use");
    make_endpoints(K_IPC, ep);
    cr_assert_eq(zmq_bind(s, ep[0]), 0);
    open_fails(ep[0], SL_EIO, "another process");
    zmq_close(s);
    zmq_ctx_term(ctx);
}

Test(links, nobody_answers)
{
    char ep[2][128];
    make_endpoints(K_IPC, ep);
    sl_transport_options o;
    pair_options(&o, 0, 2, ep, NULL);
    o.connect_timeout_ms = 300;
    sl_transport *t;
    cr_assert_eq(sl_transport_open(&o, &t), SL_ETIMEOUT);
    cr_assert(strstr(sl_last_error(), "rank 1"), "%s", sl_last_error());
}
