/* Links between neighbouring ranks over libzmq.
 *
 * Socket types: the bound side of a link is a ROUTER, the connecting side a DEALER. Both
 * reconnect, neither drops on a full queue (DEALER blocks; ROUTER with ZMQ_ROUTER_MANDATORY
 * blocks or reports an unreachable peer), and the ROUTER tells us which connection a message came
 * from, so a second peer on a bound endpoint is caught instead of being mixed in. (PAIR would be
 * simpler, but ZeroMQ documents it as not reconnecting over tcp and ipc.)
 *
 * Liveness: each socket has a monitor. A disconnect after the HELLO exchange, a failed handshake,
 * or a second connected peer breaks the transport; data already queued is still delivered first,
 * so a peer that sends DONE and exits is not mistaken for a dead one. */
#include "transport/transport.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "core/core.h"
#include "transport/pool.h"

struct link {
    int dir;   /* enum sl_link_dir */
    int peer;  /* its rank */
    int bound; /* 1: ROUTER on our bind endpoint; 0: DEALER to the next rank's */
    void *sock, *mon;
    char endpoint[256];
    uint8_t peer_id[256]; /* ROUTER: the routing id of the admitted peer */
    size_t peer_id_len;
    uint8_t last_id[256]; /* ROUTER: the routing id of the last message read */
    size_t last_id_len;
    int open_fds[32]; /* ROUTER: accepted connections not yet closed */
    int n_open;
    int hello_sent, hello_done;
    uint64_t send_seq, recv_seq; /* the next to send, the next expected */
    int live;                    /* connections with a finished handshake */
    int lost;                    /* the peer disconnected after HELLO */
    int failed_handshakes;       /* connections closed mid-handshake */
    zmq_msg_t held;              /* the message sl_transport_recv_borrow lent out */
    int holding;
};

static void release_held(struct link *l)
{
    if (l->holding) zmq_msg_close(&l->held);
    l->holding = 0;
}

struct sl_transport {
    sl_transport_options o;
    char bind_ep[256], next_ep[256];
    void *ctx;
    int own_ctx;
    struct link links[2];
    int nlinks;
    sl__pool *pool;    /* payload buffers for large sends, reused once libzmq has sent them */
    double last_drain; /* when monitor events were last read (sl_now) */
    int broken;
    int broken_status;
    char broken_msg[1536];
    /* CURVE */
    int curve;
    char pub[41], sec[41], next_pub[41];
    uint8_t (*allowed)[32];
    size_t allowed_count;
    void *zap_sock;
    pthread_t zap_thread;
    int zap_running;
    atomic_int zap_stop;
};

static const char *dir_name(int dir)
{
    return dir == SL_LINK_NEXT ? "next" : "prev";
}

/* ------------------------------------------------------------------------------------------------
 * Failure: the first failure breaks the transport and every later call repeats it. */

static int broke(sl_transport *t, struct link *l, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int broke(sl_transport *t, struct link *l, int status, const char *fmt, ...)
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
                     t->o.rank, dir_name(l->dir), l->peer, l->endpoint, what);
        else
            snprintf(t->broken_msg, sizeof t->broken_msg, "rank %d: %s", t->o.rank, what);
    }
    return sl_fail(t->broken_status, "%s", t->broken_msg);
}

static int repeat_broken(sl_transport *t)
{
    return sl_fail(t->broken_status, "%s", t->broken_msg);
}

/* ------------------------------------------------------------------------------------------------
 * Monitor events */

static const char *protocol_error_text(int value)
{
    switch (value) {
    case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        return "security mechanism mismatch (one side uses CURVE and the other does not)";
    case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
        return "CURVE cryptographic error (wrong server key?)";
    case ZMQ_PROTOCOL_ERROR_ZAP_UNSPECIFIED:
    case ZMQ_PROTOCOL_ERROR_ZAP_MALFORMED_REPLY:
    case ZMQ_PROTOCOL_ERROR_ZAP_BAD_REQUEST_ID:
    case ZMQ_PROTOCOL_ERROR_ZAP_BAD_VERSION:
    case ZMQ_PROTOCOL_ERROR_ZAP_INVALID_STATUS_CODE:
    case ZMQ_PROTOCOL_ERROR_ZAP_INVALID_METADATA:
        return "authentication handler error";
    default:
        return "ZMTP protocol error";
    }
}

/* Reads every pending monitor event of a link; returns SL_OK or the failure it breaks on. */
static int drain_events(sl_transport *t, struct link *l)
{
    for (;;) {
        zmq_msg_t m1, m2;
        zmq_msg_init(&m1);
        if (zmq_msg_recv(&m1, l->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m1);
            return SL_OK;
        }
        uint16_t event = 0;
        uint32_t value = 0;
        if (zmq_msg_size(&m1) >= 6) {
            memcpy(&event, zmq_msg_data(&m1), 2);
            memcpy(&value, (char *)zmq_msg_data(&m1) + 2, 4);
        }
        zmq_msg_init(&m2);
        if (zmq_msg_more(&m1)) zmq_msg_recv(&m2, l->mon, 0);
        zmq_msg_close(&m1);
        zmq_msg_close(&m2);
        sl_log(SL_LOG_DEBUG, "rank %d, %s link: event 0x%x value %u", t->o.rank, dir_name(l->dir),
               event, value);
        switch (event) {
        case ZMQ_EVENT_ACCEPTED:
            if (l->n_open < (int)SL_ARRAY_LEN(l->open_fds)) l->open_fds[l->n_open++] = (int)value;
            break;
        case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
            l->live++;
            if (l->bound && l->live > 1)
                return broke(t, l, SL_EPEER,
                             "a second peer connected to our bound endpoint while rank %d is "
                             "linked there (a process of another run, or a misconfigured "
                             "endpoint?); refusing to go on",
                             l->peer);
            break;
        case ZMQ_EVENT_DISCONNECTED:
            if (l->bound) {
                /* A connection that closes before its handshake (a port probe) is not our
                 * peer leaving: count the connections still open. */
                for (int i = 0; i < l->n_open; i++)
                    if (l->open_fds[i] == (int)value) {
                        l->open_fds[i] = l->open_fds[--l->n_open];
                        break;
                    }
                l->live = SL_MIN(l->live, l->n_open);
                if (l->hello_done && l->live == 0) l->lost = 1;
            } else {
                l->live = 0;
                if (l->hello_done) l->lost = 1;
            }
            break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
            return broke(t, l, SL_EPROTOCOL,
                         "handshake failed: authentication refused (ZAP status %u): the CURVE "
                         "key of %s is not admitted for this run",
                         value, l->bound ? "the connecting peer" : "this rank");
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
            return broke(t, l, SL_EPROTOCOL, "handshake failed: %s (code 0x%x)",
                         protocol_error_text((int)value), value);
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            /* A connection closed or timed out mid-handshake (a peer still starting, a port
             * probe): libzmq retries. Refusals arrive as AUTH or PROTOCOL events instead. */
            sl_log(SL_LOG_DEBUG, "rank %d: a handshake on %s did not finish (%s); retrying",
                   t->o.rank, l->endpoint, zmq_strerror((int)value));
            l->failed_handshakes++;
            break;
        default:
            break;
        }
    }
}

static int drain_all_events(sl_transport *t)
{
    t->last_drain = sl_now();
    for (int i = 0; i < t->nlinks; i++) {
        int s = drain_events(t, &t->links[i]);
        if (s) return s;
    }
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Receiving one message: frames, header, link checks, CRC. Every check runs before the payload
 * is copied anywhere; the payload stays in libzmq's buffer (bounded by ZMQ_MAXMSGSIZE). */

static int more(void *sock)
{
    int m = 0;
    size_t len = sizeof m;
    zmq_getsockopt(sock, ZMQ_RCVMORE, &m, &len);
    return m;
}

/* Discards the rest of a multipart message; returns how many frames it had. */
static int drain_frames(void *sock)
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

/* Returns 1 with *h and *payload filled (the caller closes payload), 0 if nothing is queued, or a
 * failure. */
struct dest {
    const sl_tensor_meta *expected; /* NULL: anything */
    void *data;
    size_t capacity;
    int copied; /* set when the payload was copied to data while checking its CRC */
};

static int matches(const sl_wire_header *h, const sl_tensor_meta *e, char *why, size_t n);

/* With `wait`, blocks up to the socket's receive timeout (a slice, see make_link) for the
 * first frame, as a plain zmq_recv would; otherwise does not block. */
static int read_message(sl_transport *t, struct link *l, sl_wire_header *h, zmq_msg_t *payload,
                        struct dest *dst, int wait)
{
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
                       : broke(t, l, SL_EIO, "receive: %s", zmq_strerror(errno));
        }
        size_t n = zmq_msg_size(&id);
        int same = l->peer_id_len == n && !memcmp(l->peer_id, zmq_msg_data(&id), n);
        if (l->peer_id_len && !same) {
            zmq_msg_close(&id);
            drain_frames(l->sock);
            zmq_msg_close(&hm);
            return broke(t, l, SL_EPEER,
                         "a second peer sent a message to our bound endpoint while rank %d is "
                         "linked there; refused",
                         l->peer);
        }
        l->last_id_len = SL_MIN(n, sizeof l->last_id);
        memcpy(l->last_id, zmq_msg_data(&id), l->last_id_len);
        zmq_msg_close(&id);
        if (zmq_msg_recv(&hm, l->sock, 0) < 0) {
            zmq_msg_close(&hm);
            return broke(t, l, SL_EIO, "receive: %s", zmq_strerror(errno));
        }
    } else if (zmq_msg_recv(&hm, l->sock, flags) < 0) {
        zmq_msg_close(&hm);
        return errno == EAGAIN || errno == EINTR
                   ? 0
                   : broke(t, l, SL_EIO, "receive: %s", zmq_strerror(errno));
    }

    uint8_t raw[SL_WIRE_HEADER_SIZE];
    size_t hlen = zmq_msg_size(&hm);
    int has_more = zmq_msg_more(&hm);
    if (hlen == SL_WIRE_HEADER_SIZE) memcpy(raw, zmq_msg_data(&hm), hlen);
    int st = sl_wire_decode(zmq_msg_data(&hm), hlen, h);
    zmq_msg_close(&hm);
    if (!has_more)
        return broke(t, l, SL_EPROTOCOL,
                     "wrong frame count: 1 frame (expected a header and a payload); refused");
    if (st) {
        drain_frames(l->sock);
        return broke(t, l, st, "refused a message: %s", sl_last_error());
    }
    if (h->run_id != t->o.run_id) {
        drain_frames(l->sock);
        return broke(t, l, SL_EPEER,
                     "refused a message of run %016llx (this run is %016llx): a process left "
                     "over from an earlier run?",
                     (unsigned long long)h->run_id, (unsigned long long)t->o.run_id);
    }
    if (h->src != (uint32_t)l->peer || h->dst != (uint32_t)t->o.rank) {
        drain_frames(l->sock);
        return broke(t, l, SL_EPROTOCOL,
                     "refused a message from rank %u to rank %u (expected from rank %d to rank "
                     "%d): misconnected endpoints?",
                     h->src, h->dst, l->peer, t->o.rank);
    }
    if (h->seq != l->recv_seq) {
        drain_frames(l->sock);
        if (h->seq < l->recv_seq)
            return broke(t, l, SL_EPROTOCOL,
                         "refused %s with sequence number %llu: already received (duplicate or "
                         "reordered; expected %llu)",
                         sl_msg_type_name(h->type), (unsigned long long)h->seq,
                         (unsigned long long)l->recv_seq);
        return broke(t, l, SL_EPROTOCOL,
                     "refused %s with sequence number %llu: expected %llu (%llu message(s) lost "
                     "or reordered)",
                     sl_msg_type_name(h->type), (unsigned long long)h->seq,
                     (unsigned long long)l->recv_seq, (unsigned long long)(h->seq - l->recv_seq));
    }
    if (h->payload_len > t->o.max_tensor_bytes) {
        drain_frames(l->sock);
        return broke(t, l, SL_ELIMIT, "refused %s of %llu bytes: above max_tensor_bytes (%zu)",
                     sl_msg_type_name(h->type), (unsigned long long)h->payload_len,
                     t->o.max_tensor_bytes);
    }
    if (zmq_msg_recv(payload, l->sock, 0) < 0)
        return broke(t, l, SL_EIO, "receive: %s", zmq_strerror(errno));
    if (zmq_msg_more(payload)) {
        int extra = drain_frames(l->sock);
        return broke(t, l, SL_EPROTOCOL, "wrong frame count: %d frames (expected 2); refused",
                     2 + extra);
    }
    if (zmq_msg_size(payload) != h->payload_len)
        return broke(t, l, SL_EPROTOCOL, "refused %s: payload frame of %zu bytes, header says %llu",
                     sl_msg_type_name(h->type), zmq_msg_size(payload),
                     (unsigned long long)h->payload_len);
    memset(raw + 136, 0, 4); /* the crc field counts as zero */
    uint32_t crc = sl_crc32c(0, raw, sizeof raw);
    /* A payload the caller will take is checked while it is copied (one pass over it). */
    char why[8];
    if (dst && dst->data && h->type != SL_MSG_ABORT && h->type != SL_MSG_HELLO &&
        h->payload_len <= dst->capacity && (!dst->expected || matches(h, dst->expected, why, 0))) {
        crc = sl_crc32c_copy(crc, dst->data, zmq_msg_data(payload), zmq_msg_size(payload));
        dst->copied = 1;
    } else {
        crc = sl_crc32c(crc, zmq_msg_data(payload), zmq_msg_size(payload));
    }
    if (crc != h->crc)
        return broke(t, l, SL_EPROTOCOL,
                     "refused %s: CRC32C mismatch (computed %08x, header says %08x): corrupted "
                     "in transit",
                     sl_msg_type_name(h->type), crc, h->crc);
    l->recv_seq++;
    return 1;
}

/* ------------------------------------------------------------------------------------------------
 * Sending */

static void fill_header(sl_transport *t, struct link *l, sl_wire_header *h, int type)
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

/* Sends header + payload (taking ownership of *payload). With `dontwait`, gives up with 0 when
 * the queue is full; otherwise waits, watching the monitor. Returns 1 when sent. */
/* The CRC of a header (crc field zero) at this link's next sequence number. */
static uint32_t header_crc(struct link *l, sl_wire_header *h)
{
    uint8_t raw[SL_WIRE_HEADER_SIZE];
    h->seq = l->send_seq;
    h->crc = 0;
    sl_wire_encode(h, raw);
    return sl_crc32c(0, raw, sizeof raw);
}

/* `crc`: the CRC of header and payload when the caller computed it (while copying the payload),
 * or 0 to compute it here. */
static int send_frames(sl_transport *t, struct link *l, sl_wire_header *h, zmq_msg_t *payload,
                       int dontwait, uint32_t crc)
{
    uint8_t raw[SL_WIRE_HEADER_SIZE];
    if (!crc) crc = sl_crc32c(header_crc(l, h), zmq_msg_data(payload), zmq_msg_size(payload));
    h->seq = l->send_seq;
    h->crc = crc;
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
            return broke(t, l, SL_EPEER, "rank %d is gone (its connection closed)", l->peer);
        }
        if (errno != EAGAIN && errno != EINTR) {
            zmq_msg_close(payload);
            return broke(t, l, SL_EIO, "send: %s", zmq_strerror(errno));
        }
        if (dontwait) {
            zmq_msg_close(payload);
            return 0;
        }
        int s = drain_events(t, l);
        if (!s && l->lost)
            s = broke(t, l, SL_EPEER,
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
        return broke(t, l, SL_EIO, "send: %s", zmq_strerror(errno));
    }
    if (zmq_msg_send(payload, l->sock, 0) < 0) {
        zmq_msg_close(payload);
        return broke(t, l, SL_EIO, "send: %s", zmq_strerror(errno));
    }
    l->send_seq++;
    return 1;
}

/* ------------------------------------------------------------------------------------------------
 * CURVE: the ZAP handler admits only the run's public keys and logs every refusal. */

static void zap_reply(void *s, const char *ver, zmq_msg_t *reqid, const char *code,
                      const char *text)
{
    zmq_send(s, ver, strlen(ver), ZMQ_SNDMORE);
    zmq_msg_send(reqid, s, ZMQ_SNDMORE);
    zmq_send(s, code, strlen(code), ZMQ_SNDMORE);
    zmq_send(s, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(s, "", 0, ZMQ_SNDMORE);
    zmq_send(s, "", 0, 0);
}

static void *zap_main(void *arg)
{
    sl_transport *t = arg;
    while (!atomic_load(&t->zap_stop)) {
        zmq_pollitem_t it = {t->zap_sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 50) <= 0) continue;
        /* Request: version, request id, domain, address, identity, mechanism, credentials. */
        zmq_msg_t f[7];
        int n = 0;
        for (; n < 7; n++) {
            zmq_msg_init(&f[n]);
            if (zmq_msg_recv(&f[n], t->zap_sock, 0) < 0 || !zmq_msg_more(&f[n])) {
                n++;
                break;
            }
        }
        drain_frames(t->zap_sock);
        char addr[128] = "?";
        if (n >= 4)
            snprintf(addr, sizeof addr, "%.*s", (int)SL_MIN(zmq_msg_size(&f[3]), 120),
                     (const char *)zmq_msg_data(&f[3]));
        int ok = 0;
        char key[41] = "(none)";
        if (n == 7 && zmq_msg_size(&f[5]) == 5 && !memcmp(zmq_msg_data(&f[5]), "CURVE", 5) &&
            zmq_msg_size(&f[6]) == 32) {
            zmq_z85_encode(key, zmq_msg_data(&f[6]), 32);
            for (size_t i = 0; i < t->allowed_count; i++)
                if (!memcmp(t->allowed[i], zmq_msg_data(&f[6]), 32)) ok = 1;
        }
        if (!ok)
            sl_log(SL_LOG_WARN,
                   "rank %d refused a connection from %s to %s: CURVE public key %s is not "
                   "among the run's keys",
                   t->o.rank, addr, t->bind_ep, key);
        zmq_msg_t reqid;
        zmq_msg_init(&reqid);
        if (n >= 2) zmq_msg_copy(&reqid, &f[1]);
        zap_reply(t->zap_sock, "1.0", &reqid, ok ? "200" : "400", ok ? "OK" : "key not admitted");
        zmq_msg_close(&reqid);
        for (int i = 0; i < n; i++) zmq_msg_close(&f[i]);
    }
    return NULL;
}

/* ------------------------------------------------------------------------------------------------
 * Opening */

void sl_transport_options_init(sl_transport_options *o)
{
    memset(o, 0, sizeof *o);
    o->world = 1;
    o->heartbeat_ivl_ms = 500;
    o->heartbeat_timeout_ms = 3000;
    o->connect_timeout_ms = 60000;
    o->in_flight = 8;
    o->max_tensor_bytes = (size_t)256 << 20;
    o->linger_ms = 2000;
    o->zero_copy_bytes = 65536;
}

static int check_key(const char *key, const char *what)
{
    if (!key || strlen(key) != 40)
        return sl_fail(SL_ECONFIG, "CURVE %s must be 40 characters of Z85 (see `sluice keys`)",
                       what);
    uint8_t bin[32];
    if (!zmq_z85_decode(bin, key))
        return sl_fail(SL_ECONFIG, "CURVE %s '%s' is not valid Z85", what, key);
    return SL_OK;
}

/* An endpoint we can bind: a supported scheme, an ipc path that fits in sun_path and that no
 * live process is listening on (libzmq would silently take the path over). */
static int check_bind_endpoint(const char *ep)
{
    if (!ep || !*ep) return sl_fail(SL_EINVAL, "no bind endpoint given");
    if (strlen(ep) >= 256) return sl_fail(SL_EINVAL, "endpoint '%.60s...' is too long", ep);
    if (!strncmp(ep, "ipc://", 6)) {
        const char *path = ep + 6;
        struct sockaddr_un sa;
        if (strlen(path) >= sizeof sa.sun_path)
            return sl_fail(
                SL_EIO,
                "cannot bind '%s': the ipc path is too long (%zu bytes, the limit is %zu); use a "
                "shorter directory",
                ep, strlen(path), sizeof sa.sun_path - 1);
        if (!*path) return sl_fail(SL_EINVAL, "cannot bind '%s': empty ipc path", ep);
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd >= 0) {
            memset(&sa, 0, sizeof sa);
            sa.sun_family = AF_UNIX;
            memcpy(sa.sun_path, path, strlen(path));
            int in_use = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
            close(fd);
            if (in_use)
                return sl_fail(SL_EIO,
                               "cannot bind '%s': another process is listening there (a run "
                               "still going, or a stray rank)",
                               ep);
        }
        return SL_OK;
    }
    if (!strncmp(ep, "tcp://", 6) || !strncmp(ep, "inproc://", 9)) return SL_OK;
    return sl_fail(SL_EINVAL,
                   "cannot bind '%s': unparsable endpoint (expected ipc://PATH, tcp://HOST:PORT "
                   "or inproc://NAME)",
                   ep);
}

static int setopt_int(void *s, int opt, int v)
{
    return zmq_setsockopt(s, opt, &v, sizeof v);
}

static int make_link(sl_transport *t, struct link *l, int dir)
{
    const sl_transport_options *o = &t->o;
    l->dir = dir;
    l->bound = dir == SL_LINK_PREV;
    l->peer = dir == SL_LINK_NEXT ? (o->rank + 1) % o->world : (o->rank - 1 + o->world) % o->world;
    snprintf(l->endpoint, sizeof l->endpoint, "%s", l->bound ? t->bind_ep : t->next_ep);
    l->sock = zmq_socket(t->ctx, l->bound ? ZMQ_ROUTER : ZMQ_DEALER);
    if (!l->sock) return sl_fail(SL_EIO, "cannot create a socket: %s", zmq_strerror(errno));
    int hwm = o->in_flight + 4; /* + room for DONE/ABORT and HELLO */
    int64_t maxmsg = (int64_t)SL_MAX(o->max_tensor_bytes, (size_t)SL_WIRE_HEADER_SIZE);
    setopt_int(l->sock, ZMQ_SNDHWM, hwm);
    setopt_int(l->sock, ZMQ_RCVHWM, hwm);
    setopt_int(l->sock, ZMQ_LINGER, o->linger_ms);
    zmq_setsockopt(l->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    setopt_int(l->sock, ZMQ_HEARTBEAT_IVL, o->heartbeat_ivl_ms);
    setopt_int(l->sock, ZMQ_HEARTBEAT_TIMEOUT, o->heartbeat_timeout_ms);
    setopt_int(l->sock, ZMQ_HEARTBEAT_TTL, o->heartbeat_timeout_ms);
    setopt_int(l->sock, ZMQ_HANDSHAKE_IVL, SL_MAX(o->heartbeat_timeout_ms, 1000));
    /* A connect that beats the peer's bind is retried after 10 ms, the wait doubling up to 500 ms
     * while the peer is not there: ranks started together link within milliseconds (with 50 ms,
     * opening a link pair in `sluice bench transport` took 60-75 ms whenever the race was lost). */
    setopt_int(l->sock, ZMQ_RECONNECT_IVL, 10);
    setopt_int(l->sock, ZMQ_RECONNECT_IVL_MAX, 500);
    /* Blocking sends and receives wait in 50 ms slices so the monitors are read between them:
     * a lost peer is reported within a slice of libzmq noticing it. */
    setopt_int(l->sock, ZMQ_SNDTIMEO, 50);
    setopt_int(l->sock, ZMQ_RCVTIMEO, 50);
    if (l->bound) {
        setopt_int(l->sock, ZMQ_ROUTER_MANDATORY, 1);
    } else {
        setopt_int(l->sock, ZMQ_IMMEDIATE, 1);
        char id[32];
        int n = snprintf(id, sizeof id, "sluice-r%d", o->rank);
        zmq_setsockopt(l->sock, ZMQ_ROUTING_ID, id, (size_t)n);
    }
    if (t->curve) {
        if (l->bound) {
            setopt_int(l->sock, ZMQ_CURVE_SERVER, 1);
            zmq_setsockopt(l->sock, ZMQ_CURVE_SECRETKEY, t->sec, 40);
            zmq_setsockopt(l->sock, ZMQ_ZAP_DOMAIN, "sluice", 6);
        } else {
            zmq_setsockopt(l->sock, ZMQ_CURVE_SERVERKEY, t->next_pub, 40);
            zmq_setsockopt(l->sock, ZMQ_CURVE_PUBLICKEY, t->pub, 40);
            zmq_setsockopt(l->sock, ZMQ_CURVE_SECRETKEY, t->sec, 40);
        }
    }
    char mon[96];
    static atomic_int counter;
    snprintf(mon, sizeof mon, "inproc://sluice-monitor-%p-%d", (void *)l,
             atomic_fetch_add(&counter, 1));
    if (zmq_socket_monitor(l->sock, mon, ZMQ_EVENT_ALL) < 0)
        return sl_fail(SL_EIO, "cannot monitor a socket: %s", zmq_strerror(errno));
    l->mon = zmq_socket(t->ctx, ZMQ_PAIR);
    if (!l->mon || zmq_connect(l->mon, mon) < 0)
        return sl_fail(SL_EIO, "cannot connect a socket monitor: %s", zmq_strerror(errno));
    if (l->bound) {
        SL_TRY(check_bind_endpoint(l->endpoint));
        if (zmq_bind(l->sock, l->endpoint) < 0)
            return sl_fail(SL_EIO, "cannot bind '%s': %s%s", l->endpoint, zmq_strerror(errno),
                           errno == EADDRINUSE ? " (another process holds it)" : "");
    } else {
        const char *ep = l->endpoint;
        if (strncmp(ep, "ipc://", 6) && strncmp(ep, "tcp://", 6) && strncmp(ep, "inproc://", 9))
            return sl_fail(SL_EINVAL, "cannot connect to '%s': unparsable endpoint", ep);
        if (zmq_connect(l->sock, ep) < 0)
            return sl_fail(SL_EINVAL, "cannot connect to '%s': %s", ep, zmq_strerror(errno));
    }
    return SL_OK;
}

static int send_hello(sl_transport *t, struct link *l, int dontwait)
{
    sl_wire_header h;
    fill_header(t, l, &h, SL_MSG_HELLO);
    h.aux = t->o.config_hash;
    /* Dimensions must be positive, so the smallest message is a scalar: one u8 byte. */
    h.payload_len = 1;
    zmq_msg_t p;
    zmq_msg_init_size(&p, 1);
    *(uint8_t *)zmq_msg_data(&p) = 0;
    return send_frames(t, l, &h, &p, dontwait, 0);
}

/* One round of the HELLO exchange on one link. */
static int open_step(sl_transport *t, struct link *l)
{
    if (l->hello_done) return SL_OK;
    if (!l->bound && !l->hello_sent) {
        int s = send_hello(t, l, 1);
        if (s < 0) return s;
        if (s == 1) l->hello_sent = 1;
    }
    sl_wire_header h;
    zmq_msg_t p;
    zmq_msg_init(&p);
    int got = read_message(t, l, &h, &p, NULL, 0);
    zmq_msg_close(&p);
    if (got <= 0) return got;
    if (h.type != SL_MSG_HELLO)
        return broke(t, l, SL_EPROTOCOL, "expected HELLO, got %s", sl_msg_type_name(h.type));
    if (h.aux != t->o.config_hash)
        return broke(t, l, SL_ECONFIG,
                     "config hash %016llx differs from ours (%016llx): the ranks were started "
                     "with different configs",
                     (unsigned long long)h.aux, (unsigned long long)t->o.config_hash);
    if (l->bound) {
        /* The sender of a valid HELLO is the admitted peer from now on. */
        memcpy(l->peer_id, l->last_id, l->last_id_len);
        l->peer_id_len = l->last_id_len;
        char id[32];
        int n = snprintf(id, sizeof id, "sluice-r%d", l->peer);
        if (l->peer_id_len != (size_t)n || memcmp(l->peer_id, id, (size_t)n))
            return broke(t, l, SL_EPROTOCOL, "HELLO came from an unexpected connection");
        SL_TRY(send_hello(t, l, 0) < 0 ? repeat_broken(t) : SL_OK);
    }
    l->hello_done = 1;
    return SL_OK;
}

int sl_transport_keypair(char public_key[41], char secret_key[41])
{
    if (!zmq_has("curve"))
        return sl_fail(SL_EUNAVAILABLE, "this libzmq was built without CURVE support");
    if (zmq_curve_keypair(public_key, secret_key) < 0)
        return sl_fail(SL_EIO, "cannot generate a CURVE key pair: %s", zmq_strerror(errno));
    return SL_OK;
}

int sl_transport_write_keypair(const char *dir, int rank, char public_key[41])
{
    char secret[41], line[42], path[4096];
    SL_TRY(sl_transport_keypair(public_key, secret));
    snprintf(path, sizeof path, "%s/rank%d.key", dir, rank);
    snprintf(line, sizeof line, "%s\n", secret);
    int rc = sl_write_file(path, line, 41, 0600);
    memset(secret, 0, sizeof secret);
    memset(line, 0, sizeof line);
    SL_TRY(rc);
    snprintf(path, sizeof path, "%s/rank%d.pub", dir, rank);
    snprintf(line, sizeof line, "%s\n", public_key);
    return sl_write_file(path, line, 41, 0644);
}

int sl_transport_read_key(const char *dir, int rank, const char *ext, char key[41])
{
    char path[4096], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/rank%d.%s", dir, rank, ext);
    SL_TRY(sl_read_file(path, &text, &len));
    while (len && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' ')) len--;
    int rc = SL_OK;
    if (len != 40)
        rc = sl_fail(SL_ECONFIG, "%s is not a CURVE key (40 Z85 characters from `sluice keys`)",
                     path);
    else
        memcpy(key, text, 40), key[40] = '\0';
    memset(text, 0, len);
    free(text);
    return rc;
}

static int open_inner(sl_transport *t, const sl_transport_curve *c)
{
    const sl_transport_options *o = &t->o;
    if (c) {
        if (!zmq_has("curve"))
            return sl_fail(SL_EUNAVAILABLE, "CURVE requested but this libzmq lacks it");
        if (o->zmq_context)
            return sl_fail(SL_EINVAL, "CURVE needs the transport's own context (zmq_context "
                                      "NULL): its key check runs there");
        SL_TRY(check_key(c->public_key, "public key"));
        SL_TRY(check_key(c->secret_key, "secret key"));
        if (o->world > 1) SL_TRY(check_key(c->next_public_key, "public key of the next rank"));
        t->curve = 1;
        memcpy(t->pub, c->public_key, 41);
        memcpy(t->sec, c->secret_key, 41);
        if (o->world > 1) memcpy(t->next_pub, c->next_public_key, 41);
        if (c->allowed_count) {
            t->allowed = sl_alloc(c->allowed_count * 32);
            if (!t->allowed) return SL_ENOMEM;
        }
        for (size_t i = 0; i < c->allowed_count; i++) {
            SL_TRY(check_key(c->allowed_keys[i], "allowed key"));
            zmq_z85_decode(t->allowed[i], c->allowed_keys[i]);
        }
        t->allowed_count = c->allowed_count;
    }
    if (o->zmq_context) {
        t->ctx = o->zmq_context;
    } else {
        t->ctx = zmq_ctx_new();
        if (!t->ctx)
            return sl_fail(SL_EIO, "cannot create a ZeroMQ context: %s", zmq_strerror(errno));
        t->own_ctx = 1;
    }
    if (t->curve) {
        t->zap_sock = zmq_socket(t->ctx, ZMQ_REP);
        if (!t->zap_sock || zmq_bind(t->zap_sock, "inproc://zeromq.zap.01") < 0)
            return sl_fail(SL_EIO, "cannot start the CURVE key check: %s", zmq_strerror(errno));
        setopt_int(t->zap_sock, ZMQ_LINGER, 0);
        if (pthread_create(&t->zap_thread, NULL, zap_main, t))
            return sl_fail(SL_EIO, "cannot start the CURVE key check thread");
        t->zap_running = 1;
    }
    if (o->world == 1) return SL_OK;
    /* For two ranks both links lead to the other rank: one bound, one connected. */
    t->nlinks = 2;
    SL_TRY(make_link(t, &t->links[SL_LINK_PREV], SL_LINK_PREV));
    SL_TRY(make_link(t, &t->links[SL_LINK_NEXT], SL_LINK_NEXT));

    double deadline = sl_now() + o->connect_timeout_ms / 1000.0;
    for (;;) {
        for (int i = 0; i < 2; i++) {
            struct link *l = &t->links[i];
            SL_TRY(drain_events(t, l));
            SL_TRY(open_step(t, l));
        }
        if (t->links[0].hello_done && t->links[1].hello_done) return SL_OK;
        double left = deadline - sl_now();
        if (left <= 0) {
            struct link *l = &t->links[t->links[0].hello_done ? 1 : 0];
            if (l->failed_handshakes)
                return broke(t, l, SL_EPROTOCOL,
                             "no HELLO from rank %d within %d ms: %d handshake(s) broke off (a "
                             "wrong CURVE server key, our key refused, or the peer failed)",
                             l->peer, o->connect_timeout_ms, l->failed_handshakes);
            return broke(t, l, SL_ETIMEOUT,
                         "no HELLO from rank %d within %d ms (not started, wrong endpoint, or "
                         "blocked by a firewall?)",
                         l->peer, o->connect_timeout_ms);
        }
        zmq_pollitem_t items[4];
        for (int i = 0; i < 2; i++) {
            struct link *l = &t->links[i];
            items[2 * i] = (zmq_pollitem_t){
                l->sock, 0, (short)(ZMQ_POLLIN | (!l->bound && !l->hello_sent ? ZMQ_POLLOUT : 0)),
                0};
            items[2 * i + 1] = (zmq_pollitem_t){l->mon, 0, ZMQ_POLLIN, 0};
        }
        zmq_poll(items, 4, (long)SL_MIN(left * 1000 + 1, 100.0));
    }
}

int sl_transport_open(const sl_transport_options *o, sl_transport **out)
{
    *out = NULL;
    if (!o) return sl_fail(SL_EINVAL, "no transport options");
    if (o->world < 1 || o->rank < 0 || o->rank >= o->world)
        return sl_fail(SL_EINVAL, "rank %d is not in a world of %d", o->rank, o->world);
    if (o->world > 1 && (!o->bind_endpoint || !o->next_endpoint))
        return sl_fail(SL_EINVAL, "rank %d of %d needs a bind endpoint and its next rank's",
                       o->rank, o->world);
    if (o->in_flight < 1 || o->heartbeat_ivl_ms < 1 || o->heartbeat_timeout_ms < 1 ||
        o->max_tensor_bytes < 1 || o->linger_ms < 0)
        return sl_fail(SL_EINVAL, "transport options out of range (call "
                                  "sl_transport_options_init first)");
    sl_transport *t = sl_alloc(sizeof *t);
    if (!t) return SL_ENOMEM;
    t->o = *o;
    atomic_init(&t->zap_stop, 0);
    /* Idle buffers kept: what may be in flight on both links. */
    if (!(t->pool = sl__pool_create(2 * o->in_flight))) {
        free(t);
        return sl_fail(SL_ENOMEM, "no memory for a transport");
    }
    if (o->world > 1) {
        if (strlen(o->bind_endpoint) >= sizeof t->bind_ep ||
            strlen(o->next_endpoint) >= sizeof t->next_ep) {
            sl__pool_release(t->pool);
            free(t);
            return sl_fail(SL_EINVAL, "endpoint longer than %zu characters", sizeof t->bind_ep - 1);
        }
        strcpy(t->bind_ep, o->bind_endpoint);
        strcpy(t->next_ep, o->next_endpoint);
    }
    t->o.bind_endpoint = t->bind_ep;
    t->o.next_endpoint = t->next_ep;
    t->o.curve = NULL;
    int s = open_inner(t, o->curve);
    if (s) {
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", sl_last_error());
        t->o.linger_ms = 0;
        sl_transport_close(t);
        return sl_fail(s, "opening the links of rank %d: %s", o->rank, msg);
    }
    *out = t;
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Use */

int sl_transport_peer(const sl_transport *t, int dir)
{
    if (!t || t->nlinks == 0 || (dir != SL_LINK_NEXT && dir != SL_LINK_PREV)) return -1;
    return t->links[dir].peer;
}

static int get_link(sl_transport *t, int dir, struct link **l)
{
    if (!t) return sl_fail(SL_EINVAL, "no transport");
    if (t->broken) return repeat_broken(t);
    if (dir != SL_LINK_NEXT && dir != SL_LINK_PREV)
        return sl_fail(SL_EINVAL, "link direction %d is neither SL_LINK_NEXT nor SL_LINK_PREV",
                       dir);
    if (t->nlinks == 0)
        return sl_fail(SL_EINVAL, "rank %d is alone in its world: there are no links", t->o.rank);
    *l = &t->links[dir];
    return SL_OK;
}

static int check_meta(sl_transport *t, const sl_tensor_meta *m, size_t bytes)
{
    if (!m) return sl_fail(SL_EINVAL, "no tensor description");
    if (m->type <= SL_MSG_HELLO || m->type >= SL_MSG_TYPE_COUNT)
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

/* Reading the monitors costs system calls, so the fast paths read them at most every 20 ms;
 * a blocked send or recv reads them whenever it wakes. */
static int maybe_drain(sl_transport *t)
{
    return sl_now() - t->last_drain > 0.02 ? drain_all_events(t) : SL_OK;
}

/* Sends payload p; with src, p is uninitialized and src is copied into it while checksumming. */
static int send_msg(sl_transport *t, struct link *l, const sl_tensor_meta *m, zmq_msg_t *p,
                    const void *src)
{
    int s = maybe_drain(t);
    if (!s && l->lost)
        s = broke(t, l, SL_EPEER, "rank %d disconnected (process ended or network lost)", l->peer);
    if (s) {
        zmq_msg_close(p);
        return s;
    }
    sl_wire_header h;
    fill_header(t, l, &h, m->type);
    h.step = m->step;
    h.stage = m->stage;
    h.mb = m->mb;
    h.dtype = (uint16_t)m->dtype;
    h.ndim = (uint16_t)m->ndim;
    for (uint32_t i = 0; i < m->ndim; i++) h.shape[i] = m->shape[i];
    h.payload_len = zmq_msg_size(p);
    uint32_t crc = 0;
    if (src) crc = sl_crc32c_copy(header_crc(l, &h), zmq_msg_data(p), src, zmq_msg_size(p));
    s = send_frames(t, l, &h, p, 0, crc);
    return s < 0 ? s : SL_OK;
}

int sl_transport_send(sl_transport *t, int dir, const sl_tensor_meta *meta, const void *data,
                      size_t bytes)
{
    struct link *l = NULL;
    SL_TRY(get_link(t, dir, &l));
    SL_TRY(check_meta(t, meta, bytes));
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
    struct link *l = NULL;
    int s = get_link(t, dir, &l);
    if (!s) s = check_meta(t, meta, bytes);
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

/* Whether a header is the tensor expected; if not, why (n may be 0 to skip the text). */
static int matches(const sl_wire_header *h, const sl_tensor_meta *e, char *why, size_t n)
{
    if (h->type != e->type)
        snprintf(why, n, "got %s, expected %s", sl_msg_type_name(h->type),
                 sl_msg_type_name(e->type));
    else if (h->step != e->step || h->stage != e->stage || h->mb != e->mb)
        snprintf(why, n,
                 "got step %llu chunk %u micro-batch %u, expected step %llu chunk %u "
                 "micro-batch %u (the ranks' schedules disagree)",
                 (unsigned long long)h->step, h->stage, h->mb, (unsigned long long)e->step,
                 e->stage, e->mb);
    else if (h->dtype != e->dtype)
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

static const char *waiting_text(const sl_tensor_meta *expected, char *buf, size_t n)
{
    if (expected)
        snprintf(buf, n, "waiting for %s step %llu chunk %u micro-batch %u",
                 sl_msg_type_name(expected->type), (unsigned long long)expected->step,
                 expected->stage, expected->mb);
    else
        snprintf(buf, n, "waiting for a message");
    return buf;
}

/* Receives and checks one message on link l; on SL_OK *p holds it (the caller closes it) and *got /
 * *got_bytes are filled. With dst->data the payload is copied there while its CRC is checked. */
static int recv_checked(sl_transport *t, struct link *l, struct dest *dst, zmq_msg_t *p,
                        sl_tensor_meta *got, size_t *got_bytes)
{
    const sl_tensor_meta *expected = dst->expected;
    /* What we waited for, for failure messages only: formatted when one is written. */
#define WAITING waiting_text(expected, waiting, sizeof waiting)
    char waiting[160];
    double deadline = t->o.recv_timeout_ms > 0 ? sl_now() + t->o.recv_timeout_ms / 1000.0 : 0;
    sl_wire_header h;
    int r;
    for (;;) {
        r = read_message(t, l, &h, p, dst, 1);
        if (r) break;
        int s = drain_all_events(t); /* a slice passed with nothing to read */
        if (s) return sl_fail_context(s, "%s", WAITING);
        if (l->lost) {
            r = read_message(t, l, &h, p, dst, 0); /* data queued before the disconnect */
            if (r) break;
            return broke(t, l, SL_EPEER,
                         "%s: rank %d disconnected (process ended, network lost, or it sent a "
                         "frame above max_tensor_bytes)",
                         WAITING, l->peer);
        }
        if (deadline && sl_now() > deadline)
            return broke(t, l, SL_ETIMEOUT, "%s: nothing from rank %d within %d ms", WAITING,
                         l->peer, t->o.recv_timeout_ms);
    }
    if (r < 0) return r;
    char why[512];
    size_t n = zmq_msg_size(p);
    if (h.type == SL_MSG_ABORT)
        return broke(t, l, SL_EPEER, "%s: rank %d aborted: %.*s", WAITING, l->peer,
                     (int)SL_MIN(n, 400), (const char *)zmq_msg_data(p));
    if (h.type == SL_MSG_HELLO)
        return broke(t, l, SL_EPROTOCOL, "%s: unexpected HELLO (did rank %d restart?)", WAITING,
                     l->peer);
    if (expected && !matches(&h, expected, why, sizeof why))
        return broke(t, l, SL_EPROTOCOL, "%s: %s", WAITING, why);
    if (n > dst->capacity)
        return broke(t, l, SL_ERANGE, "%s: %zu bytes arrived, the buffer holds %zu", WAITING, n,
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
    struct link *l = NULL;
    SL_TRY(get_link(t, dir, &l));
    release_held(l);
    zmq_msg_t p;
    zmq_msg_init(&p);
    struct dest dst = {expected, data, capacity, 0};
    size_t n = 0;
    int s = recv_checked(t, l, &dst, &p, got, &n);
    if (!s) {
        if (n && !dst.copied) memcpy(data, zmq_msg_data(&p), n);
        if (got_bytes) *got_bytes = n;
    }
    zmq_msg_close(&p);
    return s;
}

int sl_transport_recv_borrow(sl_transport *t, int dir, const sl_tensor_meta *expected,
                             const void **data, size_t *bytes, sl_tensor_meta *got)
{
    if (data) *data = NULL;
    if (bytes) *bytes = 0;
    struct link *l = NULL;
    SL_TRY(get_link(t, dir, &l));
    if (!data || !bytes) return sl_fail(SL_EINVAL, "recv_borrow needs data and bytes");
    release_held(l);
    struct dest dst = {expected, NULL, SIZE_MAX, 0};
    zmq_msg_init(&l->held);
    int s = recv_checked(t, l, &dst, &l->held, got, bytes);
    if (s) {
        zmq_msg_close(&l->held);
        *bytes = 0;
        return s;
    }
    l->holding = 1;
    *data = zmq_msg_data(&l->held);
    return SL_OK;
}

void sl_transport_release(sl_transport *t, int dir)
{
    if (t && t->nlinks && (dir == SL_LINK_NEXT || dir == SL_LINK_PREV))
        release_held(&t->links[dir]);
}

int sl_transport_abort(sl_transport *t, const char *reason)
{
    if (!t) return SL_OK;
    if (!reason || !*reason) reason = "unspecified failure";
    size_t n = strlen(reason);
    for (int i = 0; i < t->nlinks; i++) {
        struct link *l = &t->links[i];
        if (!l->hello_done || l->lost) continue;
        sl_wire_header h;
        fill_header(t, l, &h, SL_MSG_ABORT);
        h.ndim = 1;
        h.shape[0] = (int64_t)n;
        h.payload_len = n;
        zmq_msg_t p;
        zmq_msg_init_size(&p, n);
        memcpy(zmq_msg_data(&p), reason, n);
        int was_broken = t->broken;
        t->broken = 1; /* keep a failing send from replacing the caller's message */
        send_frames(t, l, &h, &p, 1, 0);
        t->broken = was_broken;
    }
    return SL_OK;
}

int sl_transport_check(sl_transport *t)
{
    if (!t) return sl_fail(SL_EINVAL, "no transport");
    if (t->broken) return repeat_broken(t);
    SL_TRY(drain_all_events(t));
    for (int i = 0; i < t->nlinks; i++) {
        struct link *l = &t->links[i];
        if (!l->lost) continue;
        /* A peer that sent everything and left is fine until someone waits on it. */
        zmq_pollitem_t it = {l->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 0) <= 0)
            return broke(t, l, SL_EPEER, "rank %d disconnected (process ended or network lost)",
                         l->peer);
    }
    return SL_OK;
}

void sl_transport_close(sl_transport *t)
{
    if (!t) return;
    for (int i = 0; i < 2; i++) {
        struct link *l = &t->links[i];
        release_held(l);
        if (l->sock) {
            setopt_int(l->sock, ZMQ_LINGER, t->broken ? 0 : t->o.linger_ms);
            zmq_socket_monitor(l->sock, NULL, 0);
            zmq_close(l->sock);
        }
        if (l->mon) {
            setopt_int(l->mon, ZMQ_LINGER, 0);
            zmq_close(l->mon);
        }
    }
    if (t->zap_running) {
        atomic_store(&t->zap_stop, 1);
        pthread_join(t->zap_thread, NULL);
    }
    if (t->zap_sock) zmq_close(t->zap_sock);
    if (t->own_ctx) zmq_ctx_term(t->ctx);
    sl__pool_release(t->pool); /* buffers still queued in a shared context come back later */
    free(t->allowed);
    memset(t->sec, 0, sizeof t->sec);
    free(t);
}
