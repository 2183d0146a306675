/* Links in use: the first failure (which breaks the transport), sending (framing, checksum,
 * flow control, the payload pool), abort and close. Opening is in open.c, receiving in recv.c. */
#include "transport/transport_impl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------------
 * Failure: the first failure breaks the transport and every later call repeats it. */

int sl__broke(sl_transport *t, struct sl__link *l, int status, const char *fmt, ...)
{
    char what[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (!t->broken) {
        t->broken = 1;
        t->broken_status = status;
        if (l)
            snprintf(t->broken_msg, sizeof t->broken_msg, "rank %d, %s link with rank %d (%s): %s",
                     t->o.rank, sl__dir_name(l->dir), l->peer, l->endpoint, what);
        else
            snprintf(t->broken_msg, sizeof t->broken_msg, "rank %d: %s", t->o.rank, what);
    }
    return sl_fail(t->broken_status, "%s", t->broken_msg);
}

int sl__repeat_broken(sl_transport *t)
{
    return sl_fail(t->broken_status, "%s", t->broken_msg);
}

int sl__get_link(sl_transport *t, int dir, struct sl__link **l)
{
    if (!t) return sl_fail(SL_EINVAL, "no transport");
    if (t->broken) return sl__repeat_broken(t);
    if (dir != SL_LINK_NEXT && dir != SL_LINK_PREV)
        return sl_fail(SL_EINVAL, "link direction %d is neither SL_LINK_NEXT nor SL_LINK_PREV",
                       dir);
    if (t->nlinks == 0)
        return sl_fail(SL_EINVAL, "rank %d is alone in its world: there are no links", t->o.rank);
    *l = &t->links[dir];
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Sending */

void sl__fill_header(sl_transport *t, struct sl__link *l, sl_wire_header *h, int type)
{
    memset(h, 0, sizeof *h);
    h->magic = SL_WIRE_MAGIC;
    h->version = SL_WIRE_VERSION;
    h->type = (uint16_t)type;
    h->run_id = t->o.run_id;
    h->src = (uint32_t)t->o.rank;
    h->dst = (uint32_t)l->peer;
    h->dtype = SL_DTYPE_U8;
}

/* The CRC of a header (crc field zero) at this link's next sequence number. */
static uint32_t header_crc(struct sl__link *l, sl_wire_header *h)
{
    uint8_t raw[SL_WIRE_HEADER_SIZE];
    h->seq = l->send_seq;
    h->crc = 0;
    sl_wire_encode(h, raw);
    return sl_crc32c(0, raw, sizeof raw);
}

int sl__send_frames(sl_transport *t, struct sl__link *l, sl_wire_header *h, zmq_msg_t *payload,
                    int dontwait, const uint32_t *crc)
{
    uint8_t raw[SL_WIRE_HEADER_SIZE];
    uint32_t c =
        crc ? *crc : sl_crc32c(header_crc(l, h), zmq_msg_data(payload), zmq_msg_size(payload));
    h->seq = l->send_seq;
    h->crc = c;
    sl_wire_encode(h, raw);

    /* The first frame is the one that may meet a full queue; once it is taken, libzmq takes the
     * rest of the message too. Blocking sends wait in slices of the send timeout (like a plain
     * zmq_send would wait), reading the monitors between slices. */
    int flags = ZMQ_SNDMORE | (dontwait ? ZMQ_DONTWAIT : 0);
    for (;;) {
        int rc = l->bound ? zmq_send(l->sock, l->peer_id, l->peer_id_len, flags)
                          : zmq_send(l->sock, raw, sizeof raw, flags);
        if (rc >= 0) break;
        if (errno == EHOSTUNREACH) {
            zmq_msg_close(payload);
            return sl__broke(t, l, SL_EPEER, "rank %d is gone (its connection closed)", l->peer);
        }
        if (errno != EAGAIN && errno != EINTR) {
            zmq_msg_close(payload);
            return sl__broke(t, l, SL_EIO, "send: %s", zmq_strerror(errno));
        }
        if (dontwait) {
            zmq_msg_close(payload);
            return 0;
        }
        int s = sl__drain_events(t, l);
        if (!s && l->lost)
            s = sl__broke(t, l, SL_EPEER,
                          "rank %d disconnected while we were "
                          "sending to it (process ended or network lost)",
                          l->peer);
        if (s) {
            zmq_msg_close(payload);
            return s;
        }
    }
    if (l->bound && zmq_send(l->sock, raw, sizeof raw, ZMQ_SNDMORE) < 0) {
        zmq_msg_close(payload);
        return sl__broke(t, l, SL_EIO, "send: %s", zmq_strerror(errno));
    }
    if (zmq_msg_send(payload, l->sock, 0) < 0) {
        zmq_msg_close(payload);
        return sl__broke(t, l, SL_EIO, "send: %s", zmq_strerror(errno));
    }
    sl__ring_post(l, ++l->send_seq);
    return 1;
}

/* ------------------------------------------------------------------------------------------------
 * Use */

int sl_transport_peer(const sl_transport *t, int dir)
{
    if (!t || t->nlinks == 0 || (dir != SL_LINK_NEXT && dir != SL_LINK_PREV)) return -1;
    return t->links[dir].peer;
}

static int check_meta(sl_transport *t, const sl_tensor_meta *m, size_t bytes)
{
    if (!m) return sl_fail(SL_EINVAL, "no tensor description");
    if (m->type == SL_MSG_HELLO || !sl_msg_type_known(m->type))
        return sl_fail(SL_EINVAL, "message type %d cannot be sent", m->type);
    size_t es = sl_dtype_size(m->dtype);
    if (!es) return sl_fail(SL_EINVAL, "unknown dtype %d", m->dtype);
    if (m->ndim > SL_WIRE_MAX_NDIM)
        return sl_fail(SL_EINVAL, "ndim %u exceeds %d", m->ndim, SL_WIRE_MAX_NDIM);
    size_t n = es;
    for (uint32_t i = 0; i < m->ndim; i++) {
        if (m->shape[i] <= 0)
            return sl_fail(SL_EINVAL, "shape[%u] = %lld", i, (long long)m->shape[i]);
        n = sl_mul_size(n, (size_t)m->shape[i]);
        if (!n) return sl_fail(SL_EINVAL, "shape overflows");
    }
    if (n != bytes)
        return sl_fail(SL_EINVAL, "%zu bytes given for a %s tensor of %zu bytes", bytes,
                       sl_dtype_name(m->dtype), n);
    if (bytes > t->o.max_tensor_bytes)
        return sl_fail(SL_ELIMIT, "%zu bytes exceed max_tensor_bytes (%zu)", bytes,
                       t->o.max_tensor_bytes);
    return SL_OK;
}

/* Reads the monitors now and then; a failure or a lost peer breaks the transport before a send.
 * The public sends call it once, before choosing the ring or the socket. */
static int before_send(sl_transport *t, struct sl__link *l)
{
    int s = sl__maybe_drain(t);
    if (!s && l->lost)
        s = sl__broke(t, l, SL_EPEER, "rank %d disconnected (process ended or network lost)",
                      l->peer);
    return s;
}

/* The header of a tensor message of `bytes` described by m. */
static void tensor_header(sl_transport *t, struct sl__link *l, sl_wire_header *h,
                          const sl_tensor_meta *m, size_t bytes)
{
    sl__fill_header(t, l, h, m->type);
    h->step = m->step;
    h->stage = m->stage;
    h->mb = m->mb;
    h->dtype = (uint16_t)m->dtype;
    h->ndim = (uint16_t)m->ndim;
    for (uint32_t i = 0; i < m->ndim; i++) h->shape[i] = m->shape[i];
    h->payload_len = bytes;
}

/* Sends payload p; with src, p is uninitialized and src is copied into it while checksumming. */
static int send_msg(sl_transport *t, struct sl__link *l, const sl_tensor_meta *m, zmq_msg_t *p,
                    const void *src)
{
    sl_wire_header h;
    tensor_header(t, l, &h, m, zmq_msg_size(p));
    uint32_t crc;
    if (src) crc = sl_crc32c_copy(header_crc(l, &h), zmq_msg_data(p), src, zmq_msg_size(p));
    int s = sl__send_frames(t, l, &h, p, 0, src ? &crc : NULL);
    return s < 0 ? s : SL_OK;
}

/* How a send hands its payload over: copied before the call returns, lent until the copy thread
 * is done with it, or owned (freed with free_fn once sent). */
struct handover {
    enum { COPIED, LENT, OWNED } how;
    sl_free_fn *free_fn;
    void *hint;
};

/* Sends src through l's ring when the link has one, the payload is large and there is room now:
 * the header in its slot and the message's note first, posted, then the payload copied into the
 * slot while checksummed (ring.c), here or, lent or owned, on the copy thread (which frees an
 * owned one). 1 when sent, 0 when it has to go over the socket, or a failure (src still the
 * caller's). */
static int send_ring(sl_transport *t, struct sl__link *l, const sl_tensor_meta *m, const void *src,
                     size_t bytes, const struct handover *ho)
{
    if (!l->out.map || !bytes || bytes < t->o.zero_copy_bytes) return 0;
    uint64_t pos = 0;
    void *slot;
    int s = sl__ring_place(t, l, bytes, &pos, &slot);
    if (!s && !slot) l->socket_sends++;
    if (s || !slot) return s;
    sl_wire_header h;
    tensor_header(t, l, &h, m, bytes);
    h.flags = SL_WIRE_FLAG_RING;
    uint32_t crc = header_crc(l, &h);
    h.crc = crc;
    uint8_t raw[SL_WIRE_HEADER_SIZE];
    sl_wire_encode(&h, raw);
    sl__ring_note(l, slot, pos, bytes, l->send_seq, raw);
    sl__ring_post(l, ++l->send_seq);
    l->ring_sends++;
    if (ho->how == COPIED)
        sl__ring_fill(slot, src, bytes, crc);
    else
        sl__mover_fill(t, slot, src, bytes, crc, ho->how == OWNED ? ho->free_fn : NULL, ho->hint);
    return 1;
}

/* sl_transport_send and sl_transport_send_lent: the ring, or a copy sent over the socket. */
static int send_copy(sl_transport *t, int dir, const sl_tensor_meta *meta, const void *data,
                     size_t bytes, const struct handover *ho)
{
    struct sl__link *l = NULL;
    SL_TRY(sl__get_link(t, dir, &l));
    SL_TRY(check_meta(t, meta, bytes));
    SL_TRY(before_send(t, l));
    int r = send_ring(t, l, meta, data, bytes, ho);
    if (r) return r < 0 ? r : SL_OK;
    zmq_msg_t p;
    if (bytes >= t->o.zero_copy_bytes && bytes > 0) {
        /* Large payloads are copied into a pooled buffer that libzmq sends without copying. */
        void *buf = sl__pool_get(t->pool, bytes);
        if (!buf || zmq_msg_init_data(&p, buf, bytes, sl__pool_put, NULL) < 0) {
            sl__pool_put(buf, NULL);
            return sl_fail(SL_ENOMEM, "cannot allocate a %zu-byte message", bytes);
        }
    } else if (zmq_msg_init_size(&p, bytes) < 0) {
        return sl_fail(SL_ENOMEM, "cannot allocate a %zu-byte message", bytes);
    }
    return send_msg(t, l, meta, &p, bytes ? data : NULL);
}

int sl_transport_send(sl_transport *t, int dir, const sl_tensor_meta *meta, const void *data,
                      size_t bytes)
{
    return send_copy(t, dir, meta, data, bytes, &(struct handover){COPIED, NULL, NULL});
}

int sl_transport_send_lent(sl_transport *t, int dir, const sl_tensor_meta *meta, const void *data,
                           size_t bytes)
{
    return send_copy(t, dir, meta, data, bytes, &(struct handover){LENT, NULL, NULL});
}

void sl_transport_flush(sl_transport *t)
{
    if (t) sl__mover_flush(t);
}

bool sl_transport_flushed(sl_transport *t)
{
    return !t || !sl__mover_pending(t);
}

void *sl_transport_alloc(sl_transport *t, size_t bytes)
{
    if (!t) {
        sl_fail(SL_EINVAL, "sl_transport_alloc: no transport");
        return NULL;
    }
    void *p = sl__pool_get(t->pool, bytes);
    if (!p) sl_fail(SL_ENOMEM, "could not allocate a %zu-byte payload buffer", bytes);
    return p;
}

void sl_transport_free(void *data, void *hint)
{
    sl__pool_put(data, hint);
}

int sl_transport_send_owned(sl_transport *t, int dir, const sl_tensor_meta *meta, void *data,
                            size_t bytes, sl_free_fn *free_fn, void *hint)
{
    struct sl__link *l = NULL;
    int s = sl__get_link(t, dir, &l);
    if (!s) s = check_meta(t, meta, bytes);
    if (!s) s = before_send(t, l);
    if (!s) {
        int r = send_ring(t, l, meta, data, bytes, &(struct handover){OWNED, free_fn, hint});
        if (r > 0) return SL_OK; /* the copy thread frees it */
        s = r;
    }
    zmq_msg_t p;
    if (!s && bytes >= t->o.zero_copy_bytes && bytes > 0) {
        if (zmq_msg_init_data(&p, data, bytes, free_fn, hint) < 0) {
            s = sl_fail(SL_ENOMEM, "cannot wrap a %zu-byte message", bytes);
        } else {
            return send_msg(t, l, meta, &p, NULL); /* libzmq now runs free_fn once */
        }
    } else if (!s) {
        if (zmq_msg_init_size(&p, bytes) < 0)
            s = sl_fail(SL_ENOMEM, "out of memory");
        else if (bytes)
            memcpy(zmq_msg_data(&p), data, bytes);
    }
    if (free_fn) free_fn(data, hint);
    if (s) return s;
    return send_msg(t, l, meta, &p, NULL);
}

int sl_transport_abort(sl_transport *t, const char *reason)
{
    if (!t) return SL_OK;
    if (!reason || !*reason) reason = "unspecified failure";
    size_t n = strlen(reason);
    for (int i = 0; i < t->nlinks; i++) {
        struct sl__link *l = &t->links[i];
        if (!l->hello_done || l->lost) continue;
        sl_wire_header h;
        sl__fill_header(t, l, &h, SL_MSG_ABORT);
        h.ndim = 1;
        h.shape[0] = (int64_t)n;
        h.payload_len = n;
        zmq_msg_t p;
        zmq_msg_init_size(&p, n);
        memcpy(zmq_msg_data(&p), reason, n);
        int was_broken = t->broken;
        t->broken = 1; /* keep a failing send from replacing the caller's message */
        sl__send_frames(t, l, &h, &p, 1, NULL);
        t->broken = was_broken;
    }
    return SL_OK;
}

void sl_transport_close(sl_transport *t)
{
    if (!t) return;
    for (int i = 0; i < 2; i++) {
        struct sl__link *l = &t->links[i];
        sl__release_held(l);
        if (l->out.map)
            sl_log(SL_LOG_DEBUG,
                   "rank %d, %s link: %llu large payloads through the shared-memory ring, %llu "
                   "over the socket (no room in the ring)",
                   t->o.rank, sl__dir_name(l->dir), (unsigned long long)l->ring_sends,
                   (unsigned long long)l->socket_sends);
        if (i == 0) sl__mover_stop(t); /* before the rings it fills go */
        sl__ring_close(&l->out, true);
        sl__ring_close(&l->in, false);
        if (l->sock) {
            sl__setopt_int(l->sock, ZMQ_LINGER, t->broken ? 0 : t->o.linger_ms);
            zmq_socket_monitor(l->sock, NULL, 0);
            zmq_close(l->sock);
        }
        if (l->mon) {
            sl__setopt_int(l->mon, ZMQ_LINGER, 0);
            zmq_close(l->mon);
        }
    }
    sl__curve_stop(t);
    if (t->own_ctx) zmq_ctx_term(t->ctx);
    sl__pool_release(t->pool); /* buffers still queued in a shared context come back later */
    free(t);
}
