/* Shared helpers for the transport suites: endpoints, two-rank pairs, a raw libzmq peer. */
#ifndef SL_TEST_TRANSPORT_HELPERS_H
#define SL_TEST_TRANSPORT_HELPERS_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.h>

#include "core/core.h"
#include "transport/transport.h"

#define RUN_ID   0x1234abcd5678ef01ull
#define CFG_HASH 0xfeedfacecafebeefull

enum kind { K_INPROC, K_IPC, K_TCP };

/* A fresh directory for ipc:// endpoints, removed with what is in it when the test process
 * exits. */
static char ipc_dirs[64][32];
static int n_ipc_dirs;

static inline void remove_ipc_dirs(void)
{
    for (int i = 0; i < n_ipc_dirs; i++) sl_remove_tree(ipc_dirs[i]);
}

static inline const char *make_ipc_dir(void)
{
    if (n_ipc_dirs == (int)SL_ARRAY_LEN(ipc_dirs)) abort();
    char *dir = ipc_dirs[n_ipc_dirs];
    snprintf(dir, sizeof ipc_dirs[0], "/tmp/sl-tt-XXXXXX");
    if (!mkdtemp(dir)) abort();
    if (n_ipc_dirs++ == 0) atexit(remove_ipc_dirs);
    return dir;
}

/* Two endpoints of one kind: ep[0] bound by rank 0, ep[1] by rank 1. */
static inline void make_endpoints(enum kind k, char ep[2][128])
{
    static int counter;
    if (k == K_INPROC) {
        for (int i = 0; i < 2; i++)
            snprintf(ep[i], 128, "inproc://t%d-%d-%d", (int)getpid(), counter, i);
    } else if (k == K_IPC) {
        const char *dir = make_ipc_dir();
        for (int i = 0; i < 2; i++) snprintf(ep[i], 128, "ipc://%s/r%d", dir, i);
    } else {
        /* Two free ports, both held until both are chosen (closed one at a time, the second
         * probe could be handed the first's port). */
        int fd[2];
        for (int i = 0; i < 2; i++) {
            fd[i] = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
            sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            bind(fd[i], (struct sockaddr *)&sa, sizeof sa);
            socklen_t len = sizeof sa;
            getsockname(fd[i], (struct sockaddr *)&sa, &len);
            snprintf(ep[i], 128, "tcp://127.0.0.1:%d", ntohs(sa.sin_port));
        }
        close(fd[0]);
        close(fd[1]);
    }
    counter++;
}

/* A free_fn for owned sends that counts its calls in `freed` (hint: &freed). */
static int freed;
static inline void count_free(void *data, void *hint)
{
    cr_assert_eq(hint, &freed);
    __atomic_add_fetch(&freed, 1, __ATOMIC_SEQ_CST);
    free(data);
}

static inline void pair_options(sl_transport_options *o, int rank, int world, char ep[][128],
                                void *ctx)
{
    sl_transport_options_init(o);
    o->run_id = RUN_ID;
    o->config_hash = CFG_HASH;
    o->rank = rank;
    o->world = world;
    o->bind_endpoint = ep[rank];
    o->next_endpoint = ep[(rank + 1) % world];
    o->heartbeat_ivl_ms = 100;
    o->heartbeat_timeout_ms = 300;
    o->connect_timeout_ms = 10000;
    o->linger_ms = 200;
    o->zmq_context = ctx;
}

struct opener {
    sl_transport_options o;
    sl_transport *t;
    int status;
    char msg[2048];
};

static inline void *opener_main(void *arg)
{
    struct opener *op = arg;
    op->status = sl_transport_open(&op->o, &op->t);
    snprintf(op->msg, sizeof op->msg, "%s", sl_last_error());
    return NULL;
}

/* Opens several ranks concurrently (open blocks until its neighbours answer). */
static inline void open_all(struct opener *ops, int n)
{
    pthread_t th[16];
    for (int i = 0; i < n; i++) pthread_create(&th[i], NULL, opener_main, &ops[i]);
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
}

/* Opens a ring of n (<= 8) ranks over ipc:// in a new temporary directory; every open must
 * succeed. */
static inline void open_ipc_ring(struct opener *ops, int n)
{
    const char *dir = make_ipc_dir();
    char ep[8][128];
    for (int r = 0; r < n; r++) snprintf(ep[r], 128, "ipc://%s/r%d", dir, r);
    memset(ops, 0, sizeof *ops * (size_t)n);
    for (int r = 0; r < n; r++) pair_options(&ops[r].o, r, n, ep, NULL);
    open_all(ops, n);
    for (int r = 0; r < n; r++) cr_assert_eq(ops[r].status, SL_OK, "%s", ops[r].msg);
}

static inline void fill_meta(sl_tensor_meta *m, int type, int dtype, uint32_t ndim,
                             const int64_t *shape)
{
    memset(m, 0, sizeof *m);
    m->type = type;
    m->step = 3;
    m->stage = 1;
    m->mb = 2;
    m->dtype = dtype;
    m->ndim = ndim;
    for (uint32_t i = 0; i < ndim; i++) m->shape[i] = shape[i];
}

/* A valid header from rank `src` to `dst`, ACTIVATION f32 [2,3], with a CRC over `payload`. */
static inline void raw_header(sl_wire_header *h, int type, uint32_t src, uint32_t dst, uint64_t seq)
{
    memset(h, 0, sizeof *h);
    h->magic = SL_WIRE_MAGIC;
    h->version = SL_WIRE_VERSION;
    h->type = (uint16_t)type;
    h->run_id = RUN_ID;
    h->src = src;
    h->dst = dst;
    h->step = 3;
    h->stage = 1;
    h->mb = 2;
    h->seq = seq;
    h->dtype = SL_DTYPE_F32;
    h->ndim = 2;
    h->shape[0] = 2;
    h->shape[1] = 3;
    h->payload_len = 24;
    if (type == SL_MSG_HELLO) {
        h->ndim = 0;
        h->shape[0] = h->shape[1] = 0;
        h->dtype = SL_DTYPE_U8;
        h->payload_len = 1;
        h->aux = CFG_HASH;
    }
}

static inline void seal(sl_wire_header *h, uint8_t raw[SL_WIRE_HEADER_SIZE], const void *payload,
                        size_t n)
{
    h->crc = 0;
    sl_wire_encode(h, raw);
    h->crc = sl_crc32c(sl_crc32c(0, raw, SL_WIRE_HEADER_SIZE), payload, n);
    sl_wire_encode(h, raw);
}

#endif
