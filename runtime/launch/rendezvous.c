/* The rendezvous under an existing launcher, over libzmq: rank 0 serves the directory on a ROUTER
 * socket at MASTER_ADDR:MASTER_PORT, the other ranks register on a DEALER socket and wait for it.
 * The messages and their checks are transport's (transport/rendezvous.c); here is who may talk:
 * whatever arrives is read whole (every frame of a message, never a blocking read of a frame that
 * may not come), at most SL_RDV_REGISTER_MAX bytes (ZMQ_MAXMSGSIZE: libzmq drops a peer that
 * announces more), over CURVE with the run's keys when launch.curve is on, and every wait ends at
 * the deadline with a message that names what was missing. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.h>

#include "core/core.h"
#include "runtime/launch/launch.h"

/* ------------------------------------------------------------------------------------------------
 * Addresses */

/* Expands item (one entry of a node list, maybe with bracket groups) onto hosts[*n..max). */
static int expand_item(const char *item, size_t len, char (*hosts)[SL_LAUNCH_HOST_BYTES], int max,
                       int *n)
{
    const char *open = memchr(item, '[', len);
    if (!open) {
        if (!len) return SL_OK;
        if (len >= SL_LAUNCH_HOST_BYTES) return -1;
        if (*n < max) snprintf(hosts[*n], SL_LAUNCH_HOST_BYTES, "%.*s", (int)len, item);
        (*n)++;
        return SL_OK;
    }
    const char *close = memchr(open, ']', len - (size_t)(open - item));
    if (!close) return -1;
    size_t pre = (size_t)(open - item), post = len - (size_t)(close + 1 - item);
    for (const char *r = open + 1; r < close;) {
        const char *comma = memchr(r, ',', (size_t)(close - r));
        const char *end = comma ? comma : close;
        char *dash;
        long lo = strtol(r, &dash, 10), hi = lo;
        if (dash == r) return -1;
        int width = (int)(dash - r);
        if (dash < end && *dash == '-') {
            char *e2;
            hi = strtol(dash + 1, &e2, 10);
            if (e2 != end) return -1;
        } else if (dash != end) {
            return -1;
        }
        if (hi < lo || hi - lo > 100000) return -1;
        for (long v = lo; v <= hi; v++) {
            char one[2 * SL_LAUNCH_HOST_BYTES];
            int k = snprintf(one, sizeof one, "%.*s%0*ld%.*s", (int)pre, item, width, v, (int)post,
                             close + 1);
            if (k < 0 || (size_t)k >= sizeof one) return -1;
            if (expand_item(one, (size_t)k, hosts, max, n) != SL_OK) return -1;
        }
        r = end + (end < close);
    }
    return SL_OK;
}

int sl_launch_slurm_hosts(const char *list, char (*hosts)[SL_LAUNCH_HOST_BYTES], int max, int *n)
{
    *n = 0;
    const char *p = list;
    while (p && *p) {
        const char *q = p;
        int depth = 0;
        while (*q && (depth || *q != ',')) depth += (*q == '[') - (*q == ']'), q++;
        if (depth < 0 || expand_item(p, (size_t)(q - p), hosts, max, n) != SL_OK)
            return sl_fail(SL_ECONFIG, "Slurm node list '%.200s' is not one sluice can read", list);
        p = *q ? q + 1 : q;
    }
    if (!*n) return sl_fail(SL_ECONFIG, "Slurm node list '%.200s' names no host", list);
    return SL_OK;
}

int sl_rendezvous_master(const sl_launch_info *info, char *out, size_t cap)
{
    const char *addr = getenv("MASTER_ADDR"), *port = getenv("MASTER_PORT");
    char first[SL_LAUNCH_HOST_BYTES], port_buf[16];
    /* Under srun rank 0 runs on the first node of the step; the port follows from the job. */
    const char *nodes = getenv("SLURM_STEP_NODELIST");
    if (!nodes) nodes = getenv("SLURM_JOB_NODELIST");
    if (info && info->launcher == SL_LAUNCHER_SLURM && nodes && (!addr || !*addr)) {
        int n;
        SL_TRY(sl_launch_slurm_hosts(nodes, &first, 1, &n));
        addr = first;
    }
    const char *job = getenv("SLURM_JOB_ID");
    if (info && info->launcher == SL_LAUNCHER_SLURM && job && (!port || !*port)) {
        snprintf(port_buf, sizeof port_buf, "%lu", 20000 + strtoul(job, NULL, 10) % 40000);
        port = port_buf;
    }
    if (!addr || !*addr || !port || !*port)
        return sl_fail(SL_ECONFIG,
                       "under a launcher, rank 0 hosts the rendezvous at MASTER_ADDR:MASTER_PORT; "
                       "export both (torchrun sets them; for mpirun e.g. -x MASTER_ADDR=<first "
                       "host> -x MASTER_PORT=29500; under srun they default to the step's first "
                       "node and a port from SLURM_JOB_ID)");
    char *end;
    long p = strtol(port, &end, 10);
    if (*end || p < 1 || p > 65535)
        return sl_fail(SL_ECONFIG, "MASTER_PORT=%s is not a TCP port (1..65535)", port);
    snprintf(out, cap, "%s:%ld", addr, p);
    return SL_OK;
}

int sl_rendezvous_local(char *host, size_t cap, int *port)
{
    const char *h = getenv("SLUICE_HOST");
    if (h && *h)
        snprintf(host, cap, "%s", h);
    else if (gethostname(host, cap) != 0)
        return sl_fail(SL_EIO, "cannot read the host name: %s (set SLUICE_HOST)", strerror(errno));
    if (!port) return SL_OK;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
    socklen_t len = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        return sl_fail(SL_EIO, "cannot find a free TCP port: %s", strerror(e));
    }
    *port = ntohs(sa.sin_port);
    close(fd);
    return SL_OK;
}

int sl_launch_bind_address(const char *bind, const char *host, char *out, size_t cap)
{
    if (bind && *bind) {
        snprintf(out, cap, "%s", bind);
        return SL_OK;
    }
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int e = getaddrinfo(host, NULL, &hints, &res);
    if (e != 0 || !res)
        return sl_fail(SL_ECONFIG, "cannot resolve host '%s' to an IPv4 address: %s", host,
                       gai_strerror(e));
    struct in_addr a = ((struct sockaddr_in *)res->ai_addr)->sin_addr;
    freeaddrinfo(res);
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a, ip, sizeof ip);
    struct in_addr literal;
    bool loopback = (ntohl(a.s_addr) >> 24) == 127;
    bool named_loopback = !strcmp(host, "localhost") || inet_pton(AF_INET, host, &literal) == 1;
    /* Debian maps a host's own name to 127.0.1.1 while other hosts reach it by another address:
     * binding there would shut them out, so such a name binds every interface. */
    if (loopback && !named_loopback) {
        sl_log(SL_LOG_DEBUG,
               "host name %s resolves to loopback %s here: binding every interface (set "
               "SLUICE_BIND, or SLUICE_HOST / MASTER_ADDR to an address, to bind one)",
               host, ip);
        snprintf(out, cap, "*");
    } else {
        snprintf(out, cap, "%s", ip);
    }
    return SL_OK;
}

/* master "host:port" -> host and port; SL_ECONFIG when it has no port. */
static int split_master(const char *master, char *host, size_t cap, const char **port)
{
    const char *colon = strrchr(master, ':');
    if (!colon || colon == master || !colon[1])
        return sl_fail(SL_ECONFIG, "rendezvous address '%s' is not host:port", master);
    snprintf(host, cap, "%.*s", (int)(colon - master), master);
    *port = colon + 1;
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Sockets */

typedef struct rdv_socket {
    void *ctx, *sock;
    sl_zap *zap;
} rdv_socket;

static int rdv_open(rdv_socket *s, int type, int64_t max_msg, int linger_ms,
                    const sl_rendezvous_options *o, const char *where)
{
    memset(s, 0, sizeof *s);
    s->ctx = zmq_ctx_new();
    if (!s->ctx) return sl_fail(SL_EIO, "cannot create a ZeroMQ context: %s", zmq_strerror(errno));
    const sl_transport_curve *c = o->curve;
    if (c && type == ZMQ_ROUTER)
        SL_TRY(sl_zap_start(s->ctx, c->allowed_keys, c->allowed_count, where, &s->zap));
    s->sock = zmq_socket(s->ctx, type);
    if (!s->sock || zmq_setsockopt(s->sock, ZMQ_LINGER, &linger_ms, sizeof linger_ms) != 0 ||
        zmq_setsockopt(s->sock, ZMQ_MAXMSGSIZE, &max_msg, sizeof max_msg) != 0)
        return sl_fail(SL_EIO, "%s: cannot make a socket: %s", where, zmq_strerror(zmq_errno()));
    if (c && type == ZMQ_ROUTER) sl_curve_server(s->sock, c->secret_key);
    if (c && type != ZMQ_ROUTER)
        sl_curve_client(s->sock, c->public_key, c->secret_key, c->next_public_key);
    return SL_OK;
}

static void rdv_close(rdv_socket *s)
{
    if (s->sock) zmq_close(s->sock);
    sl_zap_stop(s->zap);
    if (s->ctx) zmq_ctx_term(s->ctx);
    memset(s, 0, sizeof *s);
}

/* One whole message, every frame of it (libzmq delivers them together): up to `max` kept in f
 * (the caller closes *n of them), the rest read and dropped; *frames their number. 0, or -1 when
 * nothing was there. */
static int recv_message(void *sock, zmq_msg_t *f, int max, int *n, int *frames)
{
    *n = *frames = 0;
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return *frames ? 0 : -1;
        }
        int more = zmq_msg_more(&m);
        (*frames)++;
        if (*n < max)
            f[(*n)++] = m;
        else
            zmq_msg_close(&m);
        if (!more) return 0;
    }
}

static void close_frames(zmq_msg_t *f, int n)
{
    for (int i = 0; i < n; i++) zmq_msg_close(&f[i]);
}

static int send_to(void *sock, const void *id, size_t idlen, const char *text)
{
    if (zmq_send(sock, id, idlen, ZMQ_SNDMORE) < 0 || zmq_send(sock, "", 0, ZMQ_SNDMORE) < 0 ||
        zmq_send(sock, text, strlen(text), 0) < 0)
        return -1;
    return 0;
}

static void refuse(void *sock, const void *id, size_t idlen, const char *message)
{
    char *text = NULL;
    if (sl_rdv_refusal_encode(message, &text) == SL_OK) send_to(sock, id, idlen, text);
    free(text);
}

/* ------------------------------------------------------------------------------------------------
 * Rank 0 */

typedef struct waiting {
    char id[256];
    size_t idlen;
    char addr[64];
} waiting;

static void missing_ranks(const sl_rendezvous *d, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int r = 1; r < d->world && n + 16 < cap; r++)
        if (!d->endpoints[r][0]) n += (size_t)snprintf(buf + n, cap - n, "%s%d", n ? ", " : "", r);
}

int sl_rendezvous_serve(const sl_rendezvous_options *o, const char *endpoint, const char *report,
                        uint64_t run_id, sl_rendezvous *out)
{
    SL_TRY(sl_rdv_directory_init(out, o->world, o->config_hash, o->job));
    out->run_id = run_id;
    snprintf(out->report, sizeof out->report, "%s", report);
    snprintf(out->endpoints[0], sizeof out->endpoints[0], "%s", endpoint);
    char host[256], addr[256], bind[320], where[400];
    const char *port = NULL;
    int st = split_master(o->master, host, sizeof host, &port);
    if (st == SL_OK) st = sl_launch_bind_address(o->bind, host, addr, sizeof addr);
    snprintf(bind, sizeof bind, "tcp://%s:%s", addr, port ? port : "?");
    snprintf(where, sizeof where, "the rendezvous at %s (bound to %s)", o->master, bind);
    rdv_socket s = {0};
    waiting *w = sl_alloc((size_t)o->world * sizeof *w);
    if (st == SL_OK && !w) st = SL_ENOMEM;
    if (st == SL_OK) st = rdv_open(&s, ZMQ_ROUTER, SL_RDV_REGISTER_MAX, 2000, o, where);
    if (st == SL_OK && zmq_bind(s.sock, bind) != 0)
        st = sl_fail(SL_EIO,
                     "rank 0 cannot host the rendezvous at %s: %s (MASTER_ADDR must name an "
                     "address of rank 0's host and MASTER_PORT a free port)",
                     bind, zmq_strerror(zmq_errno()));
    int joined = 1, strangers = 0;
    double deadline = sl_now() + o->timeout_ms / 1e3;
    while (st == SL_OK && joined < o->world) {
        zmq_pollitem_t it = {.socket = s.sock, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, 100) <= 0) {
            if (sl_now() <= deadline) continue;
            char missing[512];
            missing_ranks(out, missing, sizeof missing);
            st = sl_fail(SL_ETIMEOUT,
                         "%s: rank%s %s of %d never registered within %.0f s (launch.timeout_s)%s",
                         where, strchr(missing, ',') ? "s" : "", missing, o->world,
                         o->timeout_ms / 1e3,
                         strangers ? "; strangers were refused meanwhile (see the warnings)" : "");
            break;
        }
        zmq_msg_t f[3];
        int n, frames;
        if (recv_message(s.sock, f, 3, &n, &frames) < 0) continue;
        char peer[64] = "an unknown address";
        const char *pa = zmq_msg_gets(&f[n - 1], "Peer-Address");
        if (pa) snprintf(peer, sizeof peer, "%s", pa);
        if (frames != 3 || zmq_msg_size(&f[1]) != 0 || zmq_msg_size(&f[0]) > sizeof w->id) {
            /* A rank sends an empty delimiter and one registration; anything else is not one. */
            sl_log(SL_LOG_WARN,
                   "%s ignored a message from %s: not a sluice rank's (a rank sends an empty "
                   "delimiter and one registration, this was %d frame%s)",
                   where, peer, frames - 1, frames == 2 ? "" : "s");
            strangers++;
            close_frames(f, n);
            continue;
        }
        int rank, ours;
        char ep[SL_RDV_ENDPOINT_BYTES];
        if (sl_rdv_register_decode(zmq_msg_data(&f[2]), zmq_msg_size(&f[2]), out, &rank, ep,
                                   &ours) != SL_OK) {
            char why[1200];
            snprintf(why, sizeof why, "%s", sl_last_error());
            refuse(s.sock, zmq_msg_data(&f[0]), zmq_msg_size(&f[0]), why);
            if (ours) {
                st = sl_fail(SL_EPROTOCOL, "%s refused a registration from %s: %s", where, peer,
                             why);
            } else {
                sl_log(SL_LOG_WARN, "%s refused a registration from %s: %s", where, peer, why);
                strangers++;
            }
        } else {
            memcpy(out->endpoints[rank], ep, sizeof ep);
            w[rank].idlen = zmq_msg_size(&f[0]);
            memcpy(w[rank].id, zmq_msg_data(&f[0]), w[rank].idlen);
            snprintf(w[rank].addr, sizeof w[rank].addr, "%s", peer);
            joined++;
        }
        close_frames(f, n);
    }
    char *answer = NULL, why[1400];
    if (st == SL_OK) st = sl_rdv_directory_encode(out, &answer);
    snprintf(why, sizeof why, "the rendezvous failed: %s", sl_last_error());
    for (int r = 1; s.sock && w && r < o->world; r++) {
        if (!out->endpoints[r][0] || !w[r].idlen) continue;
        if (st != SL_OK) /* those who registered learn at once that the run is off */
            refuse(s.sock, w[r].id, w[r].idlen, why);
        else if (send_to(s.sock, w[r].id, w[r].idlen, answer) != 0) {
            st = sl_fail(SL_EIO, "%s cannot answer rank %d at %s: %s", where, r, w[r].addr,
                         zmq_strerror(zmq_errno()));
        }
    }
    free(answer);
    free(w);
    rdv_close(&s); /* lingers until the answers are out */
    if (st != SL_OK) sl_rendezvous_free(out);
    return st;
}

/* ------------------------------------------------------------------------------------------------
 * Ranks 1..world-1 */

/* What the join socket's monitor told: connections made, attempts failed, handshakes refused. */
typedef struct join_events {
    int connected, retries, handshake_failed, handshake_ok;
} join_events;

static void read_events(void *mon, join_events *ev)
{
    zmq_msg_t f[2];
    int n, frames;
    while (recv_message(mon, f, 2, &n, &frames) == 0) {
        if (n >= 1 && zmq_msg_size(&f[0]) >= 2) {
            uint16_t event;
            memcpy(&event, zmq_msg_data(&f[0]), 2);
            if (event == ZMQ_EVENT_CONNECTED) ev->connected++;
            if (event == ZMQ_EVENT_CONNECT_RETRIED) ev->retries++;
            if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) ev->handshake_ok++;
            if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL ||
                event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ||
                event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
                ev->handshake_failed++;
        }
        close_frames(f, n);
    }
}

int sl_rendezvous_join(const sl_rendezvous_options *o, const char *endpoint, sl_rendezvous *out)
{
    SL_TRY(sl_rdv_directory_init(out, o->world, o->config_hash, o->job));
    char connect[300], where[400], body[SL_RDV_REGISTER_MAX + 1], mon_ep[64];
    snprintf(connect, sizeof connect, "tcp://%s", o->master);
    snprintf(where, sizeof where, "the rendezvous at %s", connect);
    snprintf(mon_ep, sizeof mon_ep, "inproc://sluice-rendezvous-%d", o->rank);
    size_t n_body = 0;
    int st = sl_rdv_register_encode(out, o->rank, endpoint, body, sizeof body, &n_body);
    rdv_socket s = {0};
    void *mon = NULL;
    /* libzmq retries a refused or timed-out connection, backing off from 100 ms to 2 s. */
    int ivl = 100, ivl_max = 2000, connect_timeout = 2000;
    if (st == SL_OK)
        st = rdv_open(&s, ZMQ_DEALER, (int64_t)SL_RDV_DIRECTORY_MAX(o->world), 0, o, where);
    if (st == SL_OK &&
        (zmq_setsockopt(s.sock, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl) != 0 ||
         zmq_setsockopt(s.sock, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max) != 0 ||
         zmq_setsockopt(s.sock, ZMQ_CONNECT_TIMEOUT, &connect_timeout, sizeof connect_timeout) !=
             0 ||
         zmq_socket_monitor(s.sock, mon_ep, ZMQ_EVENT_ALL) != 0 ||
         !(mon = zmq_socket(s.ctx, ZMQ_PAIR)) || zmq_connect(mon, mon_ep) != 0 ||
         zmq_connect(s.sock, connect) != 0))
        st = sl_fail(SL_EIO, "%s: cannot connect: %s (MASTER_ADDR:MASTER_PORT must be host:port)",
                     where, zmq_strerror(zmq_errno()));
    if (st == SL_OK &&
        (zmq_send(s.sock, "", 0, ZMQ_SNDMORE) < 0 || zmq_send(s.sock, body, n_body, 0) < 0))
        st = sl_fail(SL_EIO, "%s: %s", where, zmq_strerror(zmq_errno()));
    join_events ev = {0};
    bool answered = false;
    double deadline = sl_now() + o->timeout_ms / 1e3;
    while (st == SL_OK && !answered) {
        zmq_pollitem_t it[2] = {{.socket = s.sock, .events = ZMQ_POLLIN},
                                {.socket = mon, .events = ZMQ_POLLIN}};
        zmq_poll(it, 2, 100);
        read_events(mon, &ev);
        if (ev.handshake_failed && o->curve) {
            st = sl_fail(SL_EPEER,
                         "%s: the CURVE handshake failed: rank 0 does not admit this rank's key, "
                         "or this rank has the wrong public key of rank 0 (every rank needs the "
                         "same launch.keys)",
                         where);
            break;
        }
        zmq_msg_t f[2];
        int n, frames;
        if (recv_message(s.sock, f, 2, &n, &frames) == 0) {
            if (frames == 2 && zmq_msg_size(&f[0]) == 0) {
                st = sl_rdv_directory_decode(zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), out);
                if (st != SL_OK) st = sl_fail_context(st, "%s", where);
                answered = true;
            } else {
                sl_log(SL_LOG_WARN, "%s: ignored an answer of %d frames", where, frames);
            }
            close_frames(f, n);
        } else if (sl_now() > deadline) {
            if (!ev.connected)
                st = sl_fail(SL_ETIMEOUT,
                             "could not reach the rendezvous at %s within %.0f s "
                             "(launch.timeout_s): %d connection attempts failed, retried with "
                             "backoff up to %.0f s; is rank 0 running there (MASTER_ADDR, "
                             "MASTER_PORT) and the port open to this host?",
                             connect, o->timeout_ms / 1e3, ev.retries + 1, ivl_max / 1e3);
            else if (!ev.handshake_ok)
                st = sl_fail(SL_ETIMEOUT,
                             "%s answered but never completed a ZeroMQ handshake within %.0f s "
                             "(launch.timeout_s): is something other than sluice's rank 0 "
                             "listening there (MASTER_ADDR, MASTER_PORT), or launch.curve on one "
                             "side only?",
                             where, o->timeout_ms / 1e3);
            else
                st = sl_fail(SL_ETIMEOUT,
                             "%s took this rank's registration, but no directory came within "
                             "%.0f s (launch.timeout_s): rank 0 names the ranks it waited for",
                             where, o->timeout_ms / 1e3);
        }
    }
    if (mon) zmq_close(mon);
    rdv_close(&s);
    if (st != SL_OK) sl_rendezvous_free(out);
    return st;
}

void sl_rendezvous_free(sl_rendezvous *r)
{
    sl_rdv_directory_free(r);
}
