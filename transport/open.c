/* Opening a transport: options, the two links' sockets, and the HELLO exchange on both.
 *
 * Socket types: the bound side of a link is a ROUTER, the connecting side a DEALER. Both
 * reconnect, neither drops on a full queue (DEALER blocks; ROUTER with ZMQ_ROUTER_MANDATORY
 * blocks or reports an unreachable peer), and the ROUTER tells us which connection a message came
 * from, so a second peer on a bound endpoint is caught instead of being mixed in. (PAIR would be
 * simpler, but ZeroMQ documents it as not reconnecting over tcp and ipc.)
 *
 * The connecting side sends HELLO first; the bound side admits the connection that sent a valid
 * HELLO as its peer and answers with its own. */
#include "transport/transport_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

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
    o->bind_fd = -1;
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

int sl__setopt_int(void *s, int opt, int v)
{
    return zmq_setsockopt(s, opt, &v, sizeof v);
}

static int make_link(sl_transport *t, struct sl__link *l, int dir)
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
    sl__setopt_int(l->sock, ZMQ_SNDHWM, hwm);
    sl__setopt_int(l->sock, ZMQ_RCVHWM, hwm);
    sl__setopt_int(l->sock, ZMQ_LINGER, o->linger_ms);
    zmq_setsockopt(l->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    sl__setopt_int(l->sock, ZMQ_HEARTBEAT_IVL, o->heartbeat_ivl_ms);
    sl__setopt_int(l->sock, ZMQ_HEARTBEAT_TIMEOUT, o->heartbeat_timeout_ms);
    sl__setopt_int(l->sock, ZMQ_HEARTBEAT_TTL, o->heartbeat_timeout_ms);
    sl__setopt_int(l->sock, ZMQ_HANDSHAKE_IVL, SL_MAX(o->heartbeat_timeout_ms, 1000));
    /* A connect that beats the peer's bind is retried after 10 ms, the wait doubling up to 500 ms
     * while the peer is not there, so that ranks started together link within milliseconds (each
     * trial of `sluice bench transport` opens a link pair; bench/transport.md has the figures). */
    sl__setopt_int(l->sock, ZMQ_RECONNECT_IVL, 10);
    sl__setopt_int(l->sock, ZMQ_RECONNECT_IVL_MAX, 500);
    /* Blocking sends and receives wait in 50 ms slices so the monitors are read between them:
     * a lost peer is reported within a slice of libzmq noticing it. */
    sl__setopt_int(l->sock, ZMQ_SNDTIMEO, 50);
    sl__setopt_int(l->sock, ZMQ_RCVTIMEO, 50);
    if (l->bound) {
        sl__setopt_int(l->sock, ZMQ_ROUTER_MANDATORY, 1);
    } else {
        sl__setopt_int(l->sock, ZMQ_IMMEDIATE, 1);
        char id[32];
        int n = snprintf(id, sizeof id, "sluice-r%d", o->rank);
        zmq_setsockopt(l->sock, ZMQ_ROUTING_ID, id, (size_t)n);
    }
    if (t->curve) sl__curve_socket(t, l);
    SL_TRY(sl__monitor_attach(t, l));
    /* Both ends of an ipc link are on this host: large payloads may go through shared memory
     * (not with CURVE, whose point is that nothing travels in the clear). */
    if (o->ring_bytes && !t->curve && !strncmp(l->endpoint, "ipc://", 6)) sl__ring_create(t, l);
    if (l->bound) {
        SL_TRY(check_bind_endpoint(l->endpoint));
        if (o->bind_fd >= 0) sl__setopt_int(l->sock, ZMQ_USE_FD, o->bind_fd);
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

static int send_hello(sl_transport *t, struct sl__link *l, int dontwait)
{
    sl_wire_header h;
    sl__fill_header(t, l, &h, SL_MSG_HELLO);
    h.aux = t->o.config_hash;
    zmq_msg_t p;
    if (l->out.map) {
        /* Our ring toward the peer, by name. */
        size_t n = strlen(l->out.name);
        h.flags = SL_WIRE_FLAG_RING;
        h.ndim = 1;
        h.shape[0] = (int64_t)n;
        h.payload_len = n;
        zmq_msg_init_size(&p, n);
        memcpy(zmq_msg_data(&p), l->out.name, n);
    } else {
        /* Dimensions must be positive, so the smallest message is a scalar: one u8 byte. */
        h.payload_len = 1;
        zmq_msg_init_size(&p, 1);
        *(uint8_t *)zmq_msg_data(&p) = 0;
    }
    return sl__send_frames(t, l, &h, &p, dontwait, NULL);
}

/* A HELLO received on l: checked, its sender admitted (bound side), its ring mapped. Returns 1, or
 * a failure. */
static int check_hello(sl_transport *t, struct sl__link *l, const sl_wire_header *h,
                       const struct sl__received *p)
{
    if (h->type != SL_MSG_HELLO)
        return sl__broke(t, l, SL_EPROTOCOL, "expected HELLO, got %s", sl_msg_type_name(h->type));
    if (h->aux != t->o.config_hash)
        return sl__broke(t, l, SL_ECONFIG,
                         "config hash %016llx differs from ours (%016llx): the ranks were started "
                         "with different configs",
                         (unsigned long long)h->aux, (unsigned long long)t->o.config_hash);
    if (l->bound) {
        /* The sender of a valid HELLO is the admitted peer from now on. */
        memcpy(l->peer_id, l->last_id, l->last_id_len);
        l->peer_id_len = l->last_id_len;
        char id[32];
        int n = snprintf(id, sizeof id, "sluice-r%d", l->peer);
        if (l->peer_id_len != (size_t)n || memcmp(l->peer_id, id, (size_t)n))
            return sl__broke(t, l, SL_EPROTOCOL, "HELLO came from an unexpected connection");
    }
    if (h->flags & SL_WIRE_FLAG_RING) SL_TRY(sl__ring_open(t, l, p->data, p->len));
    return 1;
}

/* One round of the HELLO exchange on one link. */
static int open_step(sl_transport *t, struct sl__link *l)
{
    if (l->hello_done) return SL_OK;
    if (!l->bound && !l->hello_sent) {
        int s = send_hello(t, l, 1);
        if (s < 0) return s;
        if (s == 1) l->hello_sent = 1;
    }
    sl_wire_header h;
    struct sl__received p;
    sl__received_init(&p);
    int got = sl__read_message(t, l, &h, &p, NULL, 0);
    if (got > 0) got = check_hello(t, l, &h, &p);
    sl__received_done(l, &p);
    if (got <= 0) return got;
    if (l->bound) SL_TRY(send_hello(t, l, 0) < 0 ? sl__repeat_broken(t) : SL_OK);
    l->hello_done = 1;
    return SL_OK;
}

/* Everything sl_transport_open does once t holds its options; on failure the caller closes t. */
static int open_inner(sl_transport *t, const sl_transport_curve *c)
{
    const sl_transport_options *o = &t->o;
    if (c) SL_TRY(sl__curve_load(t, c));
    if (o->zmq_context) {
        t->ctx = o->zmq_context;
    } else {
        t->ctx = zmq_ctx_new();
        if (!t->ctx)
            return sl_fail(SL_EIO, "cannot create a ZeroMQ context: %s", zmq_strerror(errno));
        t->own_ctx = 1;
    }
    if (t->curve) SL_TRY(sl__curve_start(t));
    if (o->world == 1) return SL_OK;
    /* For two ranks both links lead to the other rank: one bound, one connected. */
    t->nlinks = 2;
    SL_TRY(make_link(t, &t->links[SL_LINK_PREV], SL_LINK_PREV));
    SL_TRY(make_link(t, &t->links[SL_LINK_NEXT], SL_LINK_NEXT));

    double deadline = sl_now() + o->connect_timeout_ms / 1000.0;
    for (;;) {
        for (int i = 0; i < 2; i++) {
            struct sl__link *l = &t->links[i];
            SL_TRY(sl__drain_events(t, l));
            SL_TRY(open_step(t, l));
        }
        if (t->links[0].hello_done && t->links[1].hello_done) return SL_OK;
        double left = deadline - sl_now();
        if (left <= 0) {
            struct sl__link *l = &t->links[t->links[0].hello_done ? 1 : 0];
            if (l->failed_handshakes)
                return sl__broke(t, l, SL_EPROTOCOL,
                                 "no HELLO from rank %d within %d ms: %d handshake(s) broke off (a "
                                 "wrong CURVE server key, our key refused, or the peer failed)",
                                 l->peer, o->connect_timeout_ms, l->failed_handshakes);
            return sl__broke(t, l, SL_ETIMEOUT,
                             "no HELLO from rank %d within %d ms (not started, wrong endpoint, or "
                             "blocked by a firewall?)",
                             l->peer, o->connect_timeout_ms);
        }
        zmq_pollitem_t items[4];
        for (int i = 0; i < 2; i++) {
            struct sl__link *l = &t->links[i];
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
