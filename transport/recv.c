/* Receiving: the next message in sequence, from the peer's shared-memory ring or its socket; its
 * header checked against the link (run id, ranks, sequence number, size limit), its CRC, and the
 * tensor the caller expected. Every check but the payload's CRC runs before the payload is copied
 * anywhere (the payload stays in libzmq's buffer, bounded by ZMQ_MAXMSGSIZE, or in the peer's
 * ring); the CRC is checked while the payload is copied (one pass over it, for a ring message as
 * the sender places it) or, for a borrowed receive, over the payload in place. */
#include "transport/transport_impl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Where a payload the caller will take goes: sl__read_message copies it there while checking its
 * CRC when it is the tensor expected and fits. */
struct sl__dest {
    const sl_tensor_meta *expected; /* NULL: anything */
    void *data;                     /* NULL: not copied (borrowed) */
    size_t capacity;
    int copied; /* set when the payload was copied to data while checking its CRC */
};

void sl__received_init(struct sl__received *got)
{
    *got = (struct sl__received){0};
    zmq_msg_init(&got->msg);
}

void sl__received_done(struct sl__link *l, struct sl__received *got)
{
    zmq_msg_close(&got->msg);
    sl__ring_done(l, got->ring_end);
    got->ring_end = 0;
}

void sl__release_held(struct sl__link *l)
{
    if (l->holding) sl__received_done(l, &l->held);
    l->holding = 0;
}

static int more(void *sock)
{
    int m = 0;
    size_t len = sizeof m;
    zmq_getsockopt(sock, ZMQ_RCVMORE, &m, &len);
    return m;
}

int sl__drain_frames(void *sock)
{
    int n = 0;
    while (more(sock)) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        zmq_msg_recv(&m, sock, 0);
        zmq_msg_close(&m);
        n++;
    }
    return n;
}

/* Whether a header is the tensor expected; if not, why (n may be 0 to skip the text). */
static int matches(const sl_wire_header *h, const sl_tensor_meta *e, char *why, size_t n)
{
    if (h->type != e->type)
        snprintf(why, n, "got %s, expected %s", sl_msg_type_name(h->type),
                 sl_msg_type_name(e->type));
    else if (h->step != e->step || h->stage != e->stage || h->mb != e->mb) {
        char got[64], want[64];
        snprintf(why, n,
                 "got %s chunk %u micro-batch %u, expected %s chunk %u micro-batch %u (the "
                 "ranks' schedules disagree)",
                 sl_step_text(h->step, got, sizeof got), h->stage, h->mb,
                 sl_step_text(e->step, want, sizeof want), e->stage, e->mb);
    } else if (h->dtype != e->dtype)
        snprintf(why, n, "got dtype %s, expected %s", sl_dtype_name(h->dtype),
                 sl_dtype_name(e->dtype));
    else {
        int same = h->ndim == e->ndim;
        for (int i = 0; same && i < h->ndim; i++) same = h->shape[i] == e->shape[i];
        if (same) return 1;
        char a[160] = "", b[160] = "";
        for (int i = 0; i < h->ndim; i++)
            snprintf(a + strlen(a), sizeof a - strlen(a), "%s%lld", i ? "," : "",
                     (long long)h->shape[i]);
        for (uint32_t i = 0; i < e->ndim && i < SL_WIRE_MAX_NDIM; i++)
            snprintf(b + strlen(b), sizeof b - strlen(b), "%s%lld", i ? "," : "",
                     (long long)e->shape[i]);
        snprintf(why, n, "got shape [%s], expected [%s]", a, b);
    }
    return 0;
}

/* Where a payload goes while its CRC is checked: the caller's buffer when it is the tensor expected
 * and fits, or NULL (checked in place). */
static void *destination(const sl_wire_header *h, struct sl__dest *dst)
{
    char why[8];
    return dst && dst->data && h->type != SL_MSG_ABORT && h->type != SL_MSG_HELLO &&
                   h->payload_len <= dst->capacity &&
                   (!dst->expected || matches(h, dst->expected, why, 0))
               ? dst->data
               : NULL;
}

static int crc_refused(sl_transport *t, struct sl__link *l, const sl_wire_header *h, uint32_t crc)
{
    return sl__broke(t, l, SL_EPROTOCOL,
                     "refused %s: CRC32C mismatch (computed %08x, header says %08x): corrupted in "
                     "transit",
                     sl_msg_type_name(h->type), crc, h->crc);
}

/* The checks of a decoded header against the link: run id, ranks, sequence number, size limit
 * (a refused socket message's remaining frames are drained). */
static int check_header(sl_transport *t, struct sl__link *l, const sl_wire_header *h)
{
    if (h->run_id != t->o.run_id) {
        sl__drain_frames(l->sock);
        return sl__broke(t, l, SL_EPEER,
                         "refused a message of run %016llx (this run is %016llx): a process left "
                         "over from an earlier run?",
                         (unsigned long long)h->run_id, (unsigned long long)t->o.run_id);
    }
    if (h->src != (uint32_t)l->peer || h->dst != (uint32_t)t->o.rank) {
        sl__drain_frames(l->sock);
        return sl__broke(t, l, SL_EPROTOCOL,
                         "refused a message from rank %u to rank %u (expected from rank %d to rank "
                         "%d): misconnected endpoints?",
                         h->src, h->dst, l->peer, t->o.rank);
    }
    if (h->seq != l->recv_seq) {
        sl__drain_frames(l->sock);
        if (h->seq < l->recv_seq)
            return sl__broke(t, l, SL_EPROTOCOL,
                             "refused %s with sequence number %llu: already received (duplicate or "
                             "reordered; expected %llu)",
                             sl_msg_type_name(h->type), (unsigned long long)h->seq,
                             (unsigned long long)l->recv_seq);
        return sl__broke(
            t, l, SL_EPROTOCOL,
            "refused %s with sequence number %llu: expected %llu (%llu message(s) lost "
            "or reordered)",
            sl_msg_type_name(h->type), (unsigned long long)h->seq, (unsigned long long)l->recv_seq,
            (unsigned long long)(h->seq - l->recv_seq));
    }
    if (h->payload_len > t->o.max_tensor_bytes) {
        sl__drain_frames(l->sock);
        return sl__broke(t, l, SL_ELIMIT, "refused %s of %llu bytes: above max_tensor_bytes (%zu)",
                         sl_msg_type_name(h->type), (unsigned long long)h->payload_len,
                         t->o.max_tensor_bytes);
    }
    return SL_OK;
}

/* With `wait`, blocks up to the socket's receive timeout (a slice, see make_link in open.c) for
 * the first frame, as a plain zmq_recv would; otherwise does not block. */
int sl__read_message(sl_transport *t, struct sl__link *l, sl_wire_header *h,
                     struct sl__received *got, struct sl__dest *dst, int wait)
{
    zmq_msg_t *payload = &got->msg;
    zmq_msg_t hm;
    zmq_msg_init(&hm);
    int flags = wait ? 0 : ZMQ_DONTWAIT;
    if (l->bound) {
        zmq_msg_t id;
        zmq_msg_init(&id);
        if (zmq_msg_recv(&id, l->sock, flags) < 0) {
            zmq_msg_close(&id);
            zmq_msg_close(&hm);
            return errno == EAGAIN || errno == EINTR
                       ? 0
                       : sl__broke(t, l, SL_EIO, "receive: %s", zmq_strerror(errno));
        }
        size_t n = zmq_msg_size(&id);
        int same = l->peer_id_len == n && !memcmp(l->peer_id, zmq_msg_data(&id), n);
        if (l->peer_id_len && !same) {
            zmq_msg_close(&id);
            sl__drain_frames(l->sock);
            zmq_msg_close(&hm);
            return sl__broke(t, l, SL_EPEER,
                             "a second peer sent a message to our bound endpoint while rank %d is "
                             "linked there; refused",
                             l->peer);
        }
        l->last_id_len = SL_MIN(n, sizeof l->last_id);
        memcpy(l->last_id, zmq_msg_data(&id), l->last_id_len);
        zmq_msg_close(&id);
        if (zmq_msg_recv(&hm, l->sock, 0) < 0) {
            zmq_msg_close(&hm);
            return sl__broke(t, l, SL_EIO, "receive: %s", zmq_strerror(errno));
        }
    } else if (zmq_msg_recv(&hm, l->sock, flags) < 0) {
        zmq_msg_close(&hm);
        return errno == EAGAIN || errno == EINTR
                   ? 0
                   : sl__broke(t, l, SL_EIO, "receive: %s", zmq_strerror(errno));
    }

    uint8_t raw[SL_WIRE_HEADER_SIZE];
    size_t hlen = zmq_msg_size(&hm);
    int has_more = zmq_msg_more(&hm);
    if (hlen == SL_WIRE_HEADER_SIZE) memcpy(raw, zmq_msg_data(&hm), hlen);
    int st = sl_wire_decode(zmq_msg_data(&hm), hlen, h);
    zmq_msg_close(&hm);
    if (!has_more)
        return sl__broke(t, l, SL_EPROTOCOL,
                         "wrong frame count: 1 frame (expected a header and a payload); refused");
    if (st) {
        sl__drain_frames(l->sock);
        return sl__broke(t, l, st, "refused a message: %s", sl_last_error());
    }
    SL_TRY(check_header(t, l, h));
    if (zmq_msg_recv(payload, l->sock, 0) < 0)
        return sl__broke(t, l, SL_EIO, "receive: %s", zmq_strerror(errno));
    if (zmq_msg_more(payload)) {
        int extra = sl__drain_frames(l->sock);
        return sl__broke(t, l, SL_EPROTOCOL, "wrong frame count: %d frames (expected 2); refused",
                         2 + extra);
    }
    got->data = zmq_msg_data(payload);
    got->len = zmq_msg_size(payload);
    if (h->flags & SL_WIRE_FLAG_RING && h->type != SL_MSG_HELLO)
        return sl__broke(t, l, SL_EPROTOCOL,
                         "refused %s: its payload is said to be in the shared-memory ring, but it "
                         "came over the socket",
                         sl_msg_type_name(h->type));
    if (got->len != h->payload_len)
        return sl__broke(t, l, SL_EPROTOCOL,
                         "refused %s: payload frame of %zu bytes, header says %llu",
                         sl_msg_type_name(h->type), got->len, (unsigned long long)h->payload_len);
    uint32_t crc = sl_wire_header_crc(raw);
    /* A payload the caller will take is checked while it is copied (one pass over it). */
    void *to = destination(h, dst);
    crc = to ? sl_crc32c_copy(crc, to, got->data, got->len) : sl_crc32c(crc, got->data, got->len);
    if (crc != h->crc) return crc_refused(t, l, h, crc);
    if (to) dst->copied = 1;
    l->recv_seq++;
    return 1;
}

/* Message `pos`, `len` of the peer's ring (sl__ring_next found its note): the header in its slot
 * decoded and checked as a socket message's is, then the payload read as the peer places it, from
 * where the copy thread stopped (`pre`, DONE or PARTIAL) when it copied to where the caller wants
 * it. */
static int read_ring(sl_transport *t, struct sl__link *l, sl_wire_header *h,
                     struct sl__received *got, struct sl__dest *dst, uint64_t pos, uint64_t len,
                     const struct sl__prefetch *pre)
{
    void *slot;
    SL_TRY(sl__ring_take(t, l, pos, len, &slot));
    got->ring_end = pos + sl__ring_span(len);
    uint8_t raw[SL_WIRE_HEADER_SIZE];
    memcpy(raw, sl__ring_header(slot), sizeof raw);
    int st = sl_wire_decode(raw, sizeof raw, h);
    if (st)
        return sl__broke(t, l, st, "refused a message in the shared-memory ring: %s",
                         sl_last_error());
    SL_TRY(check_header(t, l, h));
    if (!(h->flags & SL_WIRE_FLAG_RING) || h->type == SL_MSG_HELLO || h->type == SL_MSG_ABORT ||
        h->payload_len != len)
        return sl__broke(t, l, SL_EPROTOCOL,
                         "refused %s in the shared-memory ring: its note says %llu bytes, its "
                         "header %llu bytes with flags 0x%x",
                         sl_msg_type_name(h->type), (unsigned long long)len,
                         (unsigned long long)h->payload_len, h->flags);
    uint32_t crc = sl_wire_header_crc(raw);
    if (crc != h->crc) return crc_refused(t, l, h, crc);
    void *to = destination(h, dst);
    got->data = sl__ring_payload(slot);
    got->len = len;
    /* What the copy thread copied of it to the same place is not read again. */
    bool resume = pre && to == pre->data && pos == pre->pos && len == pre->len;
    SL_TRY(sl__ring_read(t, l, slot, len, resume ? pre->crc : crc, to, resume ? pre->have : 0));
    if (to) dst->copied = 1;
    l->recv_seq++;
    return 1;
}

/* The next message from l's peer, from its ring or its socket (its posted count and notes say
 * which): as sl__read_message. */
static int next_message(sl_transport *t, struct sl__link *l, sl_wire_header *h,
                        struct sl__received *got, struct sl__dest *dst, int wait)
{
    if (l->in.map) {
        /* A receive posted ahead: what the copy thread made of it. */
        int state = sl__mover_settle(t, l);
        bool copied = state == SL__PRE_DONE || state == SL__PRE_PARTIAL;
        uint64_t pos, len;
        int where = sl__ring_next(l, l->recv_seq, wait ? 50 : 0, &pos, &len);
        if (where == 1) return read_ring(t, l, h, got, dst, pos, len, copied ? &l->pre : NULL);
        if (where == 0) wait = 0; /* nothing posted: the socket only looked at */
    }
    return sl__read_message(t, l, h, got, dst, wait);
}

static const char *waiting_text(const sl_tensor_meta *expected, char *buf, size_t n)
{
    char step[64];
    if (expected)
        snprintf(buf, n, "waiting for %s %s chunk %u micro-batch %u",
                 sl_msg_type_name(expected->type), sl_step_text(expected->step, step, sizeof step),
                 expected->stage, expected->mb);
    else
        snprintf(buf, n, "waiting for a message");
    return buf;
}

/* Receives and checks one message on link l into *p (the caller gives it back with
 * sl__received_done, on failure too); *got and *got_bytes are filled. With dst->data the payload
 * is copied there while its CRC is checked. */
static int recv_checked(sl_transport *t, struct sl__link *l, struct sl__dest *dst,
                        struct sl__received *p, sl_tensor_meta *got, size_t *got_bytes)
{
    const sl_tensor_meta *expected = dst->expected;
    /* What we waited for, for failure messages only: formatted when one is written. */
#define WAITING waiting_text(expected, waiting, sizeof waiting)
    char waiting[160];
    double deadline = t->o.recv_timeout_ms > 0 ? sl_now() + t->o.recv_timeout_ms / 1000.0 : 0;
    sl_wire_header h;
    int r;
    for (;;) {
        r = next_message(t, l, &h, p, dst, 1);
        if (r) break;
        int s = sl__drain_all_events(t); /* a slice passed with nothing to read */
        if (s) return sl_fail_context(s, "%s", WAITING);
        if (l->lost) {
            r = next_message(t, l, &h, p, dst, 0); /* data queued before the disconnect */
            if (r) break;
            return sl__broke(t, l, SL_EPEER,
                             "%s: rank %d disconnected (process ended, network lost, or it sent a "
                             "frame above max_tensor_bytes)",
                             WAITING, l->peer);
        }
        if (deadline && sl_now() > deadline)
            return sl__broke(t, l, SL_ETIMEOUT, "%s: nothing from rank %d within %d ms", WAITING,
                             l->peer, t->o.recv_timeout_ms);
    }
    if (r < 0) return r;
    char why[512];
    size_t n = p->len;
    if (h.type == SL_MSG_ABORT)
        return sl__broke(t, l, SL_EPEER, "%s: rank %d aborted: %.*s", WAITING, l->peer,
                         (int)SL_MIN(n, 400), (const char *)p->data);
    if (h.type == SL_MSG_HELLO)
        return sl__broke(t, l, SL_EPROTOCOL, "%s: unexpected HELLO (did rank %d restart?)", WAITING,
                         l->peer);
    if (expected && !matches(&h, expected, why, sizeof why))
        return sl__broke(t, l, SL_EPROTOCOL, "%s: %s", WAITING, why);
    if (n > dst->capacity)
        return sl__broke(t, l, SL_ERANGE, "%s: %zu bytes arrived, the buffer holds %zu", WAITING, n,
                         dst->capacity);
    if (got) {
        memset(got, 0, sizeof *got);
        got->type = h.type;
        got->step = h.step;
        got->stage = h.stage;
        got->mb = h.mb;
        got->dtype = h.dtype;
        got->ndim = h.ndim;
        for (int i = 0; i < h.ndim; i++) got->shape[i] = h.shape[i];
    }
    if (got_bytes) *got_bytes = n;
    return SL_OK;
#undef WAITING
}

int sl_transport_recv(sl_transport *t, int dir, const sl_tensor_meta *expected, void *data,
                      size_t capacity, sl_tensor_meta *got, size_t *got_bytes)
{
    struct sl__link *l = NULL;
    SL_TRY(sl__get_link(t, dir, &l));
    sl__release_held(l);
    struct sl__received p;
    sl__received_init(&p);
    struct sl__dest dst = {expected, data, capacity, 0};
    size_t n = 0;
    int s = recv_checked(t, l, &dst, &p, got, &n);
    if (!s) {
        if (n && !dst.copied) memcpy(data, p.data, n);
        if (got_bytes) *got_bytes = n;
    }
    sl__received_done(l, &p);
    return s;
}

int sl_transport_recv_borrow(sl_transport *t, int dir, const sl_tensor_meta *expected,
                             const void **data, size_t *bytes, sl_tensor_meta *got)
{
    if (data) *data = NULL;
    if (bytes) *bytes = 0;
    struct sl__link *l = NULL;
    SL_TRY(sl__get_link(t, dir, &l));
    if (!data || !bytes) return sl_fail(SL_EINVAL, "recv_borrow needs data and bytes");
    sl__release_held(l);
    struct sl__dest dst = {expected, NULL, SIZE_MAX, 0};
    sl__received_init(&l->held);
    int s = recv_checked(t, l, &dst, &l->held, got, bytes);
    if (s) {
        sl__received_done(l, &l->held);
        *bytes = 0;
        return s;
    }
    l->holding = 1;
    *data = l->held.data;
    return SL_OK;
}

int sl_transport_recv_post(sl_transport *t, int dir, void *data, size_t capacity)
{
    struct sl__link *l = NULL;
    SL_TRY(sl__get_link(t, dir, &l));
    sl__mover_settle(t, l);
    if (!l->in.map || !data) return SL_OK; /* no ring: nothing to copy ahead */
    struct sl__prefetch *p = &l->pre;
    p->data = data;
    p->capacity = capacity;
    p->seq = l->recv_seq;
    p->count = l->in.count;
    p->next = l->in.next;
    return sl__mover_post(t, l);
}

void sl_transport_release(sl_transport *t, int dir)
{
    if (t && t->nlinks && (dir == SL_LINK_NEXT || dir == SL_LINK_PREV))
        sl__release_held(&t->links[dir]);
}
