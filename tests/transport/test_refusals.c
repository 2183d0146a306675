/* Every malformed, foreign or out-of-order message is refused with the right error, naming the
 * peer. A raw libzmq peer plays rank 0 against a real transport as rank 1 (inproc). */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <sys/mman.h>

#include "helpers.h"

struct raw {
    void *ctx, *router, *dealer;
    char ep[2][128];
    struct opener op; /* rank 1 */
};

/* A HELLO; with `ring`, one offering a shared-memory ring of that name. */
static void send_hello(void *s, const void *id, size_t idn, uint64_t run, uint64_t hash,
                       const char *ring)
{
    sl_wire_header h;
    raw_header(&h, SL_MSG_HELLO, 0, 1, 0);
    h.run_id = run;
    h.aux = hash;
    uint8_t raw[SL_WIRE_HEADER_SIZE], zero = 0;
    const void *p = &zero;
    size_t n = 1;
    if (ring) {
        p = ring;
        n = strlen(ring);
        h.flags = SL_WIRE_FLAG_RING;
        h.ndim = 1;
        h.shape[0] = (int64_t)n;
        h.payload_len = n;
    }
    seal(&h, raw, p, n);
    if (id) zmq_send(s, id, idn, ZMQ_SNDMORE);
    zmq_send(s, raw, sizeof raw, ZMQ_SNDMORE);
    zmq_send(s, p, n, 0);
}

static int wait_in(void *s, int ms)
{
    zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
    return zmq_poll(&it, 1, ms) > 0;
}

static void drain(void *s)
{
    int more = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        zmq_msg_recv(&m, s, 0);
        more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
}

static int raw_recv_timeout_ms; /* rank 1's recv_timeout_ms */

/* Links a raw rank 0 with a transport rank 1; the HELLO the raw side sends uses run and hash and
 * offers the ring named `ring` (NULL: none). */
static void raw_open_ring(struct raw *r, uint64_t run, uint64_t hash, const char *ring)
{
    memset(r, 0, sizeof *r);
    r->ctx = zmq_ctx_new();
    make_endpoints(K_INPROC, r->ep);
    r->router = zmq_socket(r->ctx, ZMQ_ROUTER);
    r->dealer = zmq_socket(r->ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(r->router, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(r->dealer, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(r->dealer, ZMQ_ROUTING_ID, "sluice-r0", 9);
    cr_assert_eq(zmq_bind(r->router, r->ep[0]), 0);
    pair_options(&r->op.o, 1, 2, r->ep, r->ctx);
    r->op.o.connect_timeout_ms = 3000;
    r->op.o.max_tensor_bytes = 4096;
    r->op.o.recv_timeout_ms = raw_recv_timeout_ms;
    pthread_t th;
    pthread_create(&th, NULL, opener_main, &r->op);
    cr_assert_eq(zmq_connect(r->dealer, r->ep[1]), 0);
    send_hello(r->dealer, NULL, 0, run, hash, ring);
    if (wait_in(r->router, 3000)) {
        char id[64];
        int n = zmq_recv(r->router, id, sizeof id, 0);
        drain(r->router);
        send_hello(r->router, id, (size_t)n, RUN_ID, CFG_HASH, NULL);
    }
    pthread_join(th, NULL);
    if (r->op.status == SL_OK) {
        cr_assert(wait_in(r->dealer, 3000));
        drain(r->dealer); /* rank 1's HELLO reply */
    }
}

static void raw_open(struct raw *r, uint64_t run, uint64_t hash)
{
    raw_open_ring(r, run, hash, NULL);
}

static void raw_close(struct raw *r)
{
    sl_transport_close(r->op.t);
    zmq_close(r->router);
    zmq_close(r->dealer);
    zmq_ctx_term(r->ctx);
}

static void send_frames(void *s, int n, const void **data, const size_t *len)
{
    for (int i = 0; i < n; i++) zmq_send(s, data[i], len[i], i + 1 < n ? ZMQ_SNDMORE : 0);
}

/* Sends header h (sealed over payload unless keep_crc) + payload to rank 1's prev link. */
static void inject(struct raw *r, sl_wire_header *h, const void *payload, size_t n, int keep_crc)
{
    uint8_t raw[SL_WIRE_HEADER_SIZE];
    if (keep_crc)
        sl_wire_encode(h, raw);
    else
        seal(h, raw, payload, n);
    const void *f[2] = {raw, payload};
    size_t l[2] = {sizeof raw, n};
    send_frames(r->dealer, 2, f, l);
}

static float payload[1024];

static void expect_refusal(struct raw *r, int status, const char *needle)
{
    sl_tensor_meta m;
    int64_t shape[2] = {2, 3};
    fill_meta(&m, SL_MSG_ACTIVATION, SL_DTYPE_F32, 2, shape);
    float buf[64];
    int s = sl_transport_recv(r->op.t, SL_LINK_PREV, &m, buf, sizeof buf, NULL, NULL);
    cr_assert_eq(s, status, "status %d (%s), wanted %d", s, sl_last_error(), status);
    const char *msg = sl_last_error();
    cr_assert(strstr(msg, needle), "'%s' lacks '%s'", msg, needle);
    cr_assert(strstr(msg, "rank 0"), "'%s' does not name the peer", msg);
    /* The transport stays broken: the next call repeats the refusal. */
    cr_assert_eq(sl_transport_recv(r->op.t, SL_LINK_PREV, &m, buf, sizeof buf, NULL, NULL), status);
    cr_assert_eq(sl_transport_send(r->op.t, SL_LINK_NEXT, &m, buf, 24), status);
}

static void header_case(void (*mutate)(sl_wire_header *), int status, const char *needle)
{
    struct raw r;
    raw_open(&r, RUN_ID, CFG_HASH);
    cr_assert_eq(r.op.status, SL_OK, "%s", r.op.msg);
    sl_wire_header h;
    raw_header(&h, SL_MSG_ACTIVATION, 0, 1, 1);
    mutate(&h);
    size_t n = h.payload_len <= sizeof payload ? h.payload_len : 24;
    inject(&r, &h, payload, n, 0);
    expect_refusal(&r, status, needle);
    raw_close(&r);
}

#define HEADER_CASE(name, body, status, needle)                                                    \
    static void mutate_##name(sl_wire_header *h)                                                   \
    {                                                                                              \
        body;                                                                                      \
    }                                                                                              \
    Test(refusals, name)                                                                           \
    {                                                                                              \
        header_case(mutate_##name, status, needle);                                                \
    }

HEADER_CASE(bad_magic, h->magic = 0x4e4f5045, SL_EFORMAT, "magic")
HEADER_CASE(bad_version, h->version = 7, SL_EPROTOCOL, "version")
HEADER_CASE(bad_type, h->type = 42, SL_EFORMAT, "message type")
HEADER_CASE(retired_type, h->type = 4, SL_EFORMAT, "message type")
HEADER_CASE(unknown_dtype, h->dtype = 99, SL_EFORMAT, "dtype")
HEADER_CASE(ndim_too_large, h->ndim = 9, SL_EFORMAT, "ndim")
HEADER_CASE(zero_dimension, h->shape[0] = 0, SL_EFORMAT, "positive")
HEADER_CASE(negative_dimension, h->shape[1] = -1, SL_EFORMAT, "positive")
HEADER_CASE(shape_overflow, (h->ndim = 4, h->shape[2] = 1ll << 40, h->shape[3] = 1ll << 40),
            SL_EFORMAT, "overflow")
HEADER_CASE(length_not_shape, h->payload_len = 28, SL_EFORMAT, "does not match the shape")
HEADER_CASE(oversized, (h->shape[0] = 2048, h->shape[1] = 1, h->payload_len = 8192), SL_ELIMIT,
            "max_tensor_bytes")
HEADER_CASE(wrong_source, h->src = 5, SL_EPROTOCOL, "from rank 5")
HEADER_CASE(wrong_destination, h->dst = 0, SL_EPROTOCOL, "to rank 0")
HEADER_CASE(foreign_run, h->run_id = 0x0ddba11, SL_EPEER, "earlier run")
HEADER_CASE(skipped_sequence, h->seq = 3, SL_EPROTOCOL, "expected 1")
HEADER_CASE(unexpected_type, h->type = SL_MSG_GRADIENT, SL_EPROTOCOL, "expected ACTIVATION")
HEADER_CASE(unexpected_micro_batch, h->mb = 9, SL_EPROTOCOL, "micro-batch 9")
HEADER_CASE(unexpected_shape, (h->shape[0] = 3, h->shape[1] = 2), SL_EPROTOCOL, "shape [3,2]")
HEADER_CASE(unexpected_hello,
            (h->type = SL_MSG_HELLO, h->ndim = 0, h->dtype = SL_DTYPE_U8,
             h->shape[0] = h->shape[1] = 0, h->payload_len = 1),
            SL_EPROTOCOL, "HELLO")
HEADER_CASE(unexpected_done,
            (h->type = SL_MSG_DONE, h->ndim = 0, h->dtype = SL_DTYPE_U8,
             h->shape[0] = h->shape[1] = 0, h->payload_len = 1),
            SL_EPROTOCOL, "got DONE, expected ACTIVATION")
/* The reductions' messages, malformed on a live link: a TIED of doubles, a NORM of two numbers. */
HEADER_CASE(tied_not_f32, (h->type = SL_MSG_TIED, h->dtype = SL_DTYPE_F64, h->payload_len = 48),
            SL_EFORMAT, "TIED message of")
HEADER_CASE(norm_wrong_shape,
            (h->type = SL_MSG_NORM, h->dtype = SL_DTYPE_F64, h->ndim = 1, h->shape[0] = 2,
             h->shape[1] = 0, h->payload_len = 16),
            SL_EFORMAT, "one F64 of shape [1]")
HEADER_CASE(unexpected_norm,
            (h->type = SL_MSG_NORM, h->dtype = SL_DTYPE_F64, h->ndim = 1, h->shape[0] = 1,
             h->shape[1] = 0, h->payload_len = 8),
            SL_EPROTOCOL, "got NORM, expected ACTIVATION")
HEADER_CASE(abort_length_not_text,
            (h->type = SL_MSG_ABORT, h->ndim = 1, h->dtype = SL_DTYPE_U8, h->shape[0] = 20,
             h->shape[1] = 0, h->payload_len = 19),
            SL_EFORMAT, "does not match the shape")

Test(refusals, crc_mismatch)
{
    struct raw r;
    raw_open(&r, RUN_ID, CFG_HASH);
    sl_wire_header h;
    raw_header(&h, SL_MSG_ACTIVATION, 0, 1, 1);
    uint8_t raw[SL_WIRE_HEADER_SIZE], data[24] = {1, 2, 3};
    seal(&h, raw, data, 24);
    data[5] ^= 0x10; /* corrupted after the checksum */
    inject(&r, &h, data, 24, 1);
    expect_refusal(&r, SL_EPROTOCOL, "CRC32C");
    raw_close(&r);
}

/* The borrowed receive checks the CRC in place and lends nothing on a mismatch. */
Test(refusals, crc_mismatch_borrowed)
{
    struct raw r;
    raw_open(&r, RUN_ID, CFG_HASH);
    sl_wire_header h;
    raw_header(&h, SL_MSG_ACTIVATION, 0, 1, 1);
    uint8_t raw[SL_WIRE_HEADER_SIZE], data[24] = {1, 2, 3};
    seal(&h, raw, data, 24);
    data[20] ^= 0x01;
    inject(&r, &h, data, 24, 1);
    sl_tensor_meta m;
    int64_t shape[2] = {2, 3};
    fill_meta(&m, SL_MSG_ACTIVATION, SL_DTYPE_F32, 2, shape);
    const void *p = data;
    size_t n = 1;
    int s = sl_transport_recv_borrow(r.op.t, SL_LINK_PREV, &m, &p, &n, NULL);
    cr_assert_eq(s, SL_EPROTOCOL, "%d: %s", s, sl_last_error());
    cr_assert(strstr(sl_last_error(), "CRC32C"), "%s", sl_last_error());
    cr_assert_null(p);
    cr_assert_eq(sl_transport_recv_borrow(r.op.t, SL_LINK_PREV, &m, &p, &n, NULL), SL_EPROTOCOL);
    raw_close(&r);
}

/* A well-formed header and payload sent as the wrong frames: `nframes` frames of which the first
 * is `header_len` bytes of the header and the others `payload_len` bytes of the payload. */
static void frames_case(int nframes, size_t header_len, size_t payload_len, int status,
                        const char *needle)
{
    struct raw r;
    raw_open(&r, RUN_ID, CFG_HASH);
    sl_wire_header h;
    raw_header(&h, SL_MSG_ACTIVATION, 0, 1, 1);
    uint8_t raw[SL_WIRE_HEADER_SIZE];
    seal(&h, raw, payload, 24);
    const void *f[3] = {raw, payload, payload};
    size_t l[3] = {header_len, payload_len, payload_len};
    send_frames(r.dealer, nframes, f, l);
    expect_refusal(&r, status, needle);
    raw_close(&r);
}

#define FRAMES_CASE(name, nframes, header_len, payload_len, status, needle)                        \
    Test(refusals, name)                                                                           \
    {                                                                                              \
        frames_case(nframes, header_len, payload_len, status, needle);                             \
    }

FRAMES_CASE(truncated_header, 2, 100, 24, SL_EFORMAT, "truncated")
FRAMES_CASE(one_frame, 1, SL_WIRE_HEADER_SIZE, 0, SL_EPROTOCOL, "frame count")
FRAMES_CASE(three_frames, 3, SL_WIRE_HEADER_SIZE, 24, SL_EPROTOCOL, "frame count: 3")
FRAMES_CASE(payload_frame_shorter_than_header, 2, SL_WIRE_HEADER_SIZE, 20, SL_EPROTOCOL,
            "payload frame of 20 bytes")

/* A message said to lie in a shared-memory ring never crosses the socket. */
Test(refusals, ring_message_over_the_socket)
{
    struct raw r;
    raw_open(&r, RUN_ID, CFG_HASH);
    cr_assert_eq(r.op.status, SL_OK, "%s", r.op.msg);
    sl_wire_header h;
    raw_header(&h, SL_MSG_ACTIVATION, 0, 1, 1);
    h.flags = SL_WIRE_FLAG_RING;
    inject(&r, &h, payload, 24, 0);
    expect_refusal(&r, SL_EPROTOCOL, "came over the socket");
    raw_close(&r);
}

/* A HELLO offering a ring this rank cannot map, or that is no sluice ring: the open fails. */
Test(refusals, hello_offering_a_missing_ring)
{
    struct raw r;
    raw_open_ring(&r, RUN_ID, CFG_HASH, "/sluice-0-0-gone");
    cr_assert_eq(r.op.status, SL_EIO, "%s", r.op.msg);
    cr_assert(strstr(r.op.msg, "cannot map rank 0's shared-memory ring /sluice-0-0-gone"), "%s",
              r.op.msg);
    cr_assert(strstr(r.op.msg, "launch.shared_memory"), "%s", r.op.msg);
    raw_close(&r);
}

/* A shared-memory object of the right name whose control page is not rank 0's ring of this run. */
Test(refusals, hello_offering_another_runs_ring)
{
    char name[64];
    snprintf(name, sizeof name, "/sluice-test-%d", (int)getpid());
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    cr_assert(fd >= 0);
    cr_assert_eq(ftruncate(fd, 8192), 0);
    cr_assert_eq(write(fd, "SLRING1\0\1\2\3\4\5\6\7\10", 16), 16); /* another run id */
    close(fd);
    struct raw r;
    raw_open_ring(&r, RUN_ID, CFG_HASH, name);
    /* Not this run's ring, so not the transport's to remove: it is still named. */
    fd = shm_open(name, O_RDONLY, 0);
    cr_assert(fd >= 0, "a ring of another run was unlinked");
    close(fd);
    shm_unlink(name);
    cr_assert_eq(r.op.status, SL_EPROTOCOL, "%s", r.op.msg);
    cr_assert(strstr(r.op.msg, "is not rank 0's ring toward us in this run"), "%s", r.op.msg);
    raw_close(&r);
}

/* A ring of rank 0 toward rank 1 of this run, as ring.c lays it out: a 4096-byte control page
 * (magic, run id, src, dst, data size; `posted` at byte 128, 24-byte notes from byte 192) and
 * 64 KiB of data, mapped here so that the raw rank 0 can place messages in it. */
static uint8_t *make_ring(char *name, size_t cap)
{
    snprintf(name, cap, "/sluice-test-%d-ring", (int)getpid());
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    cr_assert(fd >= 0);
    cr_assert_eq(ftruncate(fd, 4096 + 65536), 0);
    uint8_t *map = mmap(NULL, 4096 + 65536, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    cr_assert(map != MAP_FAILED);
    close(fd);
    uint64_t run = RUN_ID, size = 65536;
    uint32_t src = 0, dst = 1;
    memcpy(map, "SLRING1", 8);
    memcpy(map + 8, &run, 8);
    memcpy(map + 16, &src, 4);
    memcpy(map + 20, &dst, 4);
    memcpy(map + 24, &size, 8);
    return map;
}

/* Rank 0 places message `seq`, its k-th in the ring, at `pos`: an ACTIVATION of 24 bytes of zeros
 * whose slot (when it lies in the ring) holds its header at byte 64, the payload's CRC at byte 8
 * (`crc_delta` added) and `chunks` chunks in at byte 0 (1: all of it); then its note, then
 * `posted`. */
static void ring_put(uint8_t *map, unsigned k, uint64_t seq, uint64_t pos, uint32_t crc_delta,
                     uint32_t chunks)
{
    sl_wire_header h;
    raw_header(&h, SL_MSG_ACTIVATION, 0, 1, seq);
    h.flags = SL_WIRE_FLAG_RING;
    uint8_t raw[SL_WIRE_HEADER_SIZE];
    sl_wire_encode(&h, raw);
    h.crc = sl_crc32c(0, raw, sizeof raw);
    sl_wire_encode(&h, raw);
    uint8_t *slot = map + 4096 + pos % 65536;
    if (pos % 65536 + 256 + 24 <= 65536) {
        uint32_t crc = sl_crc32c(h.crc, payload, 24) + crc_delta;
        memcpy(slot + 64, raw, sizeof raw);
        memcpy(slot + 8, &crc, 4);
        memcpy(slot, &chunks, 4);
    }
    uint8_t *note = map + 192 + 24 * (k % 64);
    uint64_t len = 24;
    memcpy(note + 8, &pos, 8);
    memcpy(note + 16, &len, 8);
    memcpy(note, &seq, 8);
    uint32_t posted = (uint32_t)seq + 1;
    memcpy(map + 128, &posted, 4);
}

/* Messages 1 and 2 placed in the ring at pos0 and pos1 (the second's CRC off by crc_delta): the
 * first taken, and the second (or, with pos1 UINT64_MAX, the first) refused before it is read. */
static void ring_place_case(uint64_t pos0, uint64_t pos1, uint32_t crc_delta, const char *needle)
{
    char name[64];
    uint8_t *map = make_ring(name, sizeof name);
    struct raw r;
    raw_open_ring(&r, RUN_ID, CFG_HASH, name);
    shm_unlink(name);
    cr_assert_eq(r.op.status, SL_OK, "%s", r.op.msg);
    ring_put(map, 0, 1, pos0, 0, 1);
    if (pos1 != UINT64_MAX) ring_put(map, 1, 2, pos1, crc_delta, 1);
    sl_tensor_meta m;
    int64_t shape[2] = {2, 3};
    fill_meta(&m, SL_MSG_ACTIVATION, SL_DTYPE_F32, 2, shape);
    float buf[6] = {1};
    int s = sl_transport_recv(r.op.t, SL_LINK_PREV, &m, buf, sizeof buf, NULL, NULL);
    if (pos1 != UINT64_MAX) { /* the first is fine, the second is refused */
        cr_assert_eq(s, SL_OK, "%s", sl_last_error());
        cr_assert_eq(buf[0], 0.0f);
        s = sl_transport_recv(r.op.t, SL_LINK_PREV, &m, buf, sizeof buf, NULL, NULL);
    }
    cr_assert_eq(s, SL_EPROTOCOL, "%d: %s", s, sl_last_error());
    cr_assert(strstr(sl_last_error(), needle), "%s", sl_last_error());
    raw_close(&r);
    munmap(map, 4096 + 65536);
}

Test(refusals, ring_payload_past_the_end)
{
    ring_place_case(65536 - 64, UINT64_MAX, 0, "ring position 65472 of 24 bytes");
}

Test(refusals, ring_payload_before_the_last)
{
    ring_place_case(512, 0, 0, "the next may start at 832");
}

Test(refusals, ring_payload_corrupted_in_place)
{
    ring_place_case(0, 320, 1, "corrupted in place");
}

/* A message posted whose payload never lands: the receiver gives up after recv_timeout_ms. */
Test(refusals, ring_payload_never_placed)
{
    char name[64];
    uint8_t *map = make_ring(name, sizeof name);
    struct raw r;
    raw_recv_timeout_ms = 300;
    raw_open_ring(&r, RUN_ID, CFG_HASH, name);
    raw_recv_timeout_ms = 0;
    shm_unlink(name);
    cr_assert_eq(r.op.status, SL_OK, "%s", r.op.msg);
    ring_put(map, 0, 1, 0, 0, 0);
    expect_refusal(&r, SL_ETIMEOUT, "placed only 0 of 24 bytes of a payload");
    raw_close(&r);
    munmap(map, 4096 + 65536);
}

Test(refusals, hello_offering_a_foreign_ring)
{
    struct raw r;
    raw_open_ring(&r, RUN_ID, CFG_HASH, "/../etc/passwd");
    cr_assert_eq(r.op.status, SL_EPROTOCOL, "%s", r.op.msg);
    cr_assert(strstr(r.op.msg, "not a sluice ring"), "%s", r.op.msg);
    raw_close(&r);
}

Test(refusals, duplicate_sequence)
{
    struct raw r;
    raw_open(&r, RUN_ID, CFG_HASH);
    sl_wire_header h;
    raw_header(&h, SL_MSG_ACTIVATION, 0, 1, 1);
    inject(&r, &h, payload, 24, 0);
    inject(&r, &h, payload, 24, 0);
    sl_tensor_meta m;
    int64_t shape[2] = {2, 3};
    fill_meta(&m, SL_MSG_ACTIVATION, SL_DTYPE_F32, 2, shape);
    float buf[6];
    cr_assert_eq(sl_transport_recv(r.op.t, SL_LINK_PREV, &m, buf, sizeof buf, NULL, NULL), SL_OK,
                 "%s", sl_last_error());
    expect_refusal(&r, SL_EPROTOCOL, "duplicate");
    raw_close(&r);
}

Test(refusals, reordered_sequence)
{
    struct raw r;
    raw_open(&r, RUN_ID, CFG_HASH);
    sl_wire_header h;
    raw_header(&h, SL_MSG_ACTIVATION, 0, 1, 2);
    inject(&r, &h, payload, 24, 0);
    raw_header(&h, SL_MSG_ACTIVATION, 0, 1, 1);
    inject(&r, &h, payload, 24, 0);
    expect_refusal(&r, SL_EPROTOCOL, "lost or reordered");
    raw_close(&r);
}

Test(refusals, abort_from_peer)
{
    struct raw r;
    raw_open(&r, RUN_ID, CFG_HASH);
    sl_wire_header h;
    raw_header(&h, SL_MSG_ABORT, 0, 1, 1);
    const char *why = "device lost on rank 0";
    h.dtype = SL_DTYPE_U8;
    h.ndim = 1;
    h.shape[0] = (int64_t)strlen(why);
    h.shape[1] = 0;
    h.payload_len = strlen(why);
    inject(&r, &h, why, strlen(why), 0);
    expect_refusal(&r, SL_EPEER, "aborted: device lost on rank 0");
    raw_close(&r);
}

Test(refusals, second_peer_message)
{
    struct raw r;
    raw_open(&r, RUN_ID, CFG_HASH);
    void *stray = zmq_socket(r.ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(stray, ZMQ_LINGER, &zero, sizeof zero);
    zmq_connect(stray, r.ep[1]);
    sl_wire_header h;
    raw_header(&h, SL_MSG_ACTIVATION, 0, 1, 1);
    uint8_t raw[SL_WIRE_HEADER_SIZE];
    seal(&h, raw, payload, 24);
    zmq_send(stray, raw, sizeof raw, ZMQ_SNDMORE);
    zmq_send(stray, payload, 24, 0);
    expect_refusal(&r, SL_EPEER, "second peer");
    zmq_close(stray);
    raw_close(&r);
}

Test(refusals, hello_from_foreign_run)
{
    struct raw r;
    raw_open(&r, 0x0ddba11, CFG_HASH);
    cr_assert_eq(r.op.status, SL_EPEER, "%s", r.op.msg);
    cr_assert(strstr(r.op.msg, "earlier run"), "%s", r.op.msg);
    raw_close(&r);
}

Test(refusals, hello_with_other_config)
{
    struct raw r;
    raw_open(&r, RUN_ID, 12345);
    cr_assert_eq(r.op.status, SL_ECONFIG, "%s", r.op.msg);
    cr_assert(strstr(r.op.msg, "config hash"), "%s", r.op.msg);
    cr_assert(strstr(r.op.msg, "rank 0"), "%s", r.op.msg);
    raw_close(&r);
}

/* The DEALER side (next link) refuses the same way. */
Test(refusals, next_link_bad_magic)
{
    struct raw r;
    raw_open(&r, RUN_ID, CFG_HASH);
    cr_assert_eq(r.op.status, SL_OK, "%s", r.op.msg);
    sl_wire_header h;
    raw_header(&h, SL_MSG_GRADIENT, 0, 1, 1);
    h.magic = 1;
    uint8_t raw[SL_WIRE_HEADER_SIZE];
    seal(&h, raw, payload, 24);
    zmq_send(r.router, "sluice-r1", 9, ZMQ_SNDMORE);
    zmq_send(r.router, raw, sizeof raw, ZMQ_SNDMORE);
    zmq_send(r.router, payload, 24, 0);
    float buf[6];
    int s = sl_transport_recv(r.op.t, SL_LINK_NEXT, NULL, buf, sizeof buf, NULL, NULL);
    cr_assert_eq(s, SL_EFORMAT, "%s", sl_last_error());
    cr_assert(strstr(sl_last_error(), "next link with rank 0"), "%s", sl_last_error());
    raw_close(&r);
}
