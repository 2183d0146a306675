/* sluice transport: links between neighbouring pipeline ranks over libzmq.
 *
 * The ranks of a run form a ring: rank r binds one endpoint (where its previous neighbour
 * (r-1+D)%D connects) and connects to the endpoint of its next neighbour (r+1)%D. Every link
 * carries messages both ways, so a rank has two links, named by direction rather than by peer
 * rank: SL_LINK_NEXT (toward (r+1)%D: activations go forward on it, gradients come back on it)
 * and SL_LINK_PREV (toward (r-1+D)%D). With two ranks both links lead to the same peer, one in
 * each direction; with one rank there are no links.
 *
 * Each message is two frames: a fixed 144-byte little-endian header (see sl_wire_header) and the
 * payload (on a bound endpoint libzmq's ROUTER adds a routing-id frame in front, which the
 * transport uses to tell its peer from a stranger and never passes on). Over an ipc:// link a
 * message with a large payload may instead go through the sender's shared-memory ring, header and
 * payload (SL_WIRE_FLAG_RING, ring_bytes), ordered with the socket's by sequence number. The header
 * carries a CRC32C of itself and the payload. Every received header is checked before anything is
 * copied: structure, run id, ranks, per-link sequence number, size limit, frame count and payload
 * length, and the tensor the caller expected; the CRC is checked while the payload is copied. A
 * refusal is a status code with a message naming the peer and what was wrong; after any failure
 * the transport is broken (every later call fails with the same message) because a pipeline cannot
 * continue past a lost or foreign message.
 *
 * The rendezvous messages (further down) are the other wire format: JSON text that rank 0's
 * directory exchanges with the other ranks under an existing launcher.
 *
 * Liveness: ZMTP heartbeats plus a socket monitor. A peer that disconnects or stops answering
 * heartbeats, a second peer that connects to a bound endpoint, or a failed handshake (including a
 * CURVE key that is not admitted) is reported by the next send, recv or check as SL_EPEER or
 * SL_EPROTOCOL naming the rank. inproc:// links (tests) have no heartbeats.
 *
 * A transport is used by one thread at a time (it runs a copy thread of its own, see
 * sl_transport_send_lent). */
#ifndef SL_TRANSPORT_H
#define SL_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------------
 * The wire format */

#define SL_WIRE_MAGIC       0x45434c53u /* "SLCE" as little-endian bytes */
#define SL_WIRE_VERSION     3
#define SL_WIRE_HEADER_SIZE 144
#define SL_WIRE_MAX_NDIM    8

enum sl_msg_type {
    /* Sent by the transport on connect, the connecting side first: aux is the config hash, the
     * payload one zero byte (a U8 scalar). */
    SL_MSG_HELLO = 1,
    SL_MSG_ACTIVATION = 2, /* a stage's output, forward */
    SL_MSG_GRADIENT = 3,   /* the gradient of a stage's input, backward */
    /* 4 and 5 were LOSS and METRIC, which nothing sent (losses and metrics reach rank 0 as
     * reports, see runtime/launch): they are refused as unknown types and not to be reused. */
    SL_MSG_DONE = 6, /* a rank finished its actions */
    /* A rank failed; the payload is its reason as U8 text of shape [length], without a NUL. */
    SL_MSG_ABORT = 7,
    /* The schedule's TIED: the gradient of one copy of a tied parameter (F32 of the parameter's
     * shape, one or two dimensions), sent to the rank holding the other copy; stage is the
     * receiver's tied stage, mb 0. */
    SL_MSG_TIED = 8,
    /* The schedule's NORM: one F64 of shape [1], a partial sum of squared gradients (mb 0) or the
     * total (mb 1), passed around the ring; stage 0. */
    SL_MSG_NORM = 9,
    /* The schedule's SYNC (chimera): mb 0 carries the gradients of the two model stages of pair p
     * = stage (ranks p and D-1-p), from one of the two, passed on by the ranks between them (F32
     * of shape [n]: the sender's down replica's stage first, then its up replica's, each
     * parameter in order); mb 1, between the two ranks that hold the replicas' last stages, one
     * F64 of shape [1], the sender's sum of its last stage's losses, stage 0. */
    SL_MSG_SYNC = 10,
};

/* Whether `type` is one of enum sl_msg_type (1, 2, 3, 6, 7, 8, 9 or 10). */
int sl_msg_type_known(int type);

/* The high bits of a header's step say what it counts: SL_STEP_EVAL, the run's evaluation batches
 * (the executor's forward-only passes between steps); SL_STEP_VOTE, the stop vote after that
 * training step (runtime/exec/stop.c). Neither is ever a training step. */
#define SL_STEP_EVAL (UINT64_C(1) << 62)
#define SL_STEP_VOTE (UINT64_C(1) << 61)

/* A step for messages: "step 7", "evaluation batch 3" or "the stop vote after step 7". */
const char *sl_step_text(uint64_t step, char *buf, size_t cap);

/* Header flags. SL_WIRE_FLAG_RING: on a HELLO, the sender has a shared-memory ring for its
 * large payloads on this link and the payload is the ring's name (U8 of shape [n], "/sluice-"
 * and then a-z, 0-9 and '-'); on an ACTIVATION, GRADIENT, TIED or SYNC, the message lies in that
 * ring, header and payload, and never crosses the socket: its crc covers the header alone, and
 * the payload's CRC32C, continued from the header's, is in the ring beside it (see
 * transport/ring.c). On the socket it is refused on any type but HELLO, as is any other bit. */
#define SL_WIRE_FLAG_RING 1u

/* The decoded header. Field order is the wire order; offsets are in wire.c. Bytes 140..143
 * (after crc) are reserved: written as zero, not read. */
typedef struct sl_wire_header {
    uint32_t magic;
    uint16_t version;
    uint16_t type;     /* enum sl_msg_type */
    uint64_t run_id;   /* refuses leftovers of an earlier run */
    uint32_t src, dst; /* ranks */
    uint64_t step;
    uint32_t stage;                  /* the chunk (virtual stage) */
    uint32_t mb;                     /* micro-batch */
    uint64_t seq;                    /* per link and direction: HELLO is 0, then 1, 2, ... */
    uint16_t dtype;                  /* enum sl_dtype */
    uint16_t ndim;                   /* 0 (a scalar) .. SL_WIRE_MAX_NDIM */
    uint32_t flags;                  /* SL_WIRE_FLAG_* */
    int64_t shape[SL_WIRE_MAX_NDIM]; /* unused entries are 0 */
    uint64_t payload_len;            /* bytes = product(shape) * dtype size */
    uint64_t aux;                    /* HELLO: config hash; otherwise 0 */
    uint32_t crc; /* CRC32C of the header (this field as 0) followed by the payload */
} sl_wire_header;

const char *sl_msg_type_name(int type);

/* Writes h as SL_WIRE_HEADER_SIZE bytes (the crc field as given). */
void sl_wire_encode(const sl_wire_header *h, uint8_t out[SL_WIRE_HEADER_SIZE]);

/* The CRC32C of an encoded header, its crc field counted as zero: what the header's crc covers
 * before the payload (all of it, for a message in a shared-memory ring). */
uint32_t sl_wire_header_crc(const uint8_t raw[SL_WIRE_HEADER_SIZE]);

/* Decodes and checks the structure of a header of `len` bytes before anything trusts it: size,
 * magic, version, type (sl_msg_type_known), dtype, ndim, every dimension below ndim > 0 and every
 * one from ndim on 0, no overflow of the element count or the byte count, and payload_len equal to
 * the shape's bytes; a TIED must carry F32 of one or two dimensions and a NORM one F64 of shape
 * [1]. The link's checks (run id, ranks, sequence, CRC) are the receiver's. Returns
 * SL_OK, SL_EPROTOCOL for another wire version, or SL_EFORMAT, with a message saying which field
 * was wrong. Never reads past buf[len-1]. */
int sl_wire_decode(const void *buf, size_t len, sl_wire_header *h);

/* CRC32C (Castagnoli), as in iSCSI/ext4: sl_crc32c(0, "123456789", 9) == 0xe3069283. Chain
 * calls by passing the previous result. Folds with VPCLMULQDQ (on AVX-512 registers, or AVX2
 * ones) where the processor has it, uses SSE4.2 crc32 (three interleaved streams) otherwise and
 * for tails, a table without either. */
uint32_t sl_crc32c(uint32_t crc, const void *data, size_t len);

/* The path sl_crc32c takes on this processor: "avx512-vpclmulqdq", "avx2-vpclmulqdq", "sse4.2"
 * or "table". The environment variable SLUICE_CRC, set to one of the slower names, makes the
 * process use that one instead. */
const char *sl_crc32c_path(void);

/* Copies len bytes from src to dst (not overlapping) and returns the CRC32C of them chained on
 * `crc`, reading src once. Copies of SL_CRC_STREAM_BYTES or more store past the caches on the
 * folding paths (dst is then not left in the cache); smaller ones leave dst in the cache. */
#define SL_CRC_STREAM_BYTES ((size_t)4 << 20)
uint32_t sl_crc32c_copy(uint32_t crc, void *dst, const void *src, size_t len);

/* ------------------------------------------------------------------------------------------------
 * Rendezvous messages
 *
 * Under an existing launcher rank 0 hosts a small directory on which the other ranks register the
 * endpoint each binds for its link (runtime/launch moves the messages; this is their format).
 * Every message is one JSON object in one ZeroMQ frame (cJSON, unformatted) with
 *   "magic": "sluice-rendezvous", "version": 2, "kind": ...
 * and, by kind:
 *   "register"  (rank r -> rank 0): "rank", "world", "config_hash", "job", "endpoint"
 *   "directory" (rank 0 -> every rank, once all registered): "world", "config_hash", "job",
 *               "run_id", "endpoints": [EP0, ..., EPW-1], "report"
 *   "refused"   (rank 0 -> a rank it will not admit): "message"
 * config_hash (the plan's, sl_plan_hash) and run_id are decimal strings because JSON numbers do
 * not hold 64 bits; "job" is the launcher's own id of the run (TORCHELASTIC_RUN_ID,
 * SLURM_JOB_ID.SLURM_STEP_ID, Open MPI's job id; "" without one). Rank 0 checks every field of a
 * registration against its own: a sender of another job is a stranger (refused and ignored), a
 * sender of the same job with another config, world, rank out of range or a rank registered twice
 * is a rank of this run that cannot join (refused, and the rendezvous fails at once). An
 * endpoint is 1 to SL_RDV_ENDPOINT_BYTES-1 bytes without quotes, backslashes or control
 * characters. */

#define SL_RDV_MAGIC          "sluice-rendezvous"
#define SL_RDV_VERSION        2
#define SL_RDV_ENDPOINT_BYTES 256  /* an endpoint with its NUL */
#define SL_RDV_JOB_BYTES      128  /* a launcher job id with its NUL */
#define SL_RDV_REGISTER_MAX   1022 /* the longest registration rank 0 reads, in bytes */
/* The longest directory (or refusal) a rank of a world of w reads, in bytes. */
#define SL_RDV_DIRECTORY_MAX(w) ((size_t)(w) * (SL_RDV_ENDPOINT_BYTES + 4) + 2048)

/* The directory: every rank's endpoint, rank 0's report endpoint and the run id, with what every
 * message is checked against (world, config hash, launcher job). */
typedef struct sl_rdv_directory {
    int world;
    uint64_t config_hash;
    char job[SL_RDV_JOB_BYTES];
    char (*endpoints)[SL_RDV_ENDPOINT_BYTES]; /* [world]; "" where no rank registered yet */
    char report[SL_RDV_ENDPOINT_BYTES];
    uint64_t run_id;
} sl_rdv_directory;

/* An empty directory for `world` ranks of this config and launcher job (NULL or "": none).
 * SL_ENOMEM, SL_EINVAL for world < 1 or a job id the format cannot carry; free it with
 * sl_rdv_directory_free, which also takes a zeroed or already freed one. */
int sl_rdv_directory_init(sl_rdv_directory *d, int world, uint64_t config_hash, const char *job);
void sl_rdv_directory_free(sl_rdv_directory *d);

/* Writes rank's registration (d's world, config hash and job) into out[0..cap), NUL-terminated;
 * *len (may be NULL) its length. SL_EINVAL for a rank outside 1..world-1 or an endpoint the format
 * cannot carry; SL_ERANGE when it does not fit (SL_RDV_REGISTER_MAX + 1 bytes always suffice). */
int sl_rdv_register_encode(const sl_rdv_directory *d, int rank, const char *endpoint, char *out,
                           size_t cap, size_t *len);

/* Reads a registration of `len` bytes (not NUL-terminated) against the directory so far: at most
 * SL_RDV_REGISTER_MAX bytes, magic, version, kind, job, config hash and world equal to d's, rank
 * in 1..world-1 and not yet registered, an endpoint the format carries. On SL_OK *rank and
 * endpoint hold it (the caller enters it into d); otherwise SL_EPROTOCOL saying what was wrong,
 * *rank -1, and *of_this_run 1 when the sender is a sluice rank of this job (see above). */
int sl_rdv_register_decode(const void *buf, size_t len, const sl_rdv_directory *d, int *rank,
                           char endpoint[SL_RDV_ENDPOINT_BYTES], int *of_this_run);

/* The directory as text in *out (free it with free()). SL_EINVAL when an endpoint is one the
 * other ranks would refuse (so rank 0 reports it), SL_ENOMEM. */
int sl_rdv_directory_encode(const sl_rdv_directory *d, char **out);

/* A refusal carrying `message` (cut to 1023 bytes) in *out (free it with free()). */
int sl_rdv_refusal_encode(const char *message, char **out);

/* Reads rank 0's answer of `len` bytes into d, made by sl_rdv_directory_init with what this rank
 * expects: at most SL_RDV_DIRECTORY_MAX(d->world) bytes, magic, version, job, config hash and
 * world equal to d's, exactly d->world endpoints, each one the format carries, a report endpoint,
 * and a run id of decimal digits within 64 bits. SL_EPROTOCOL saying what was wrong (d's entries
 * are then not to be used); SL_EPEER with rank 0's message when it is a refusal. */
int sl_rdv_directory_decode(const void *buf, size_t len, sl_rdv_directory *d);

/* ------------------------------------------------------------------------------------------------
 * Links */

enum sl_link_dir {
    SL_LINK_NEXT = 0, /* toward rank (r+1)%D: we connected to its bound endpoint */
    SL_LINK_PREV = 1, /* toward rank (r-1+D)%D: it connected to our bound endpoint */
};

/* What a message carries, as the sender states it and as the receiver expects it. */
typedef struct sl_tensor_meta {
    int type; /* enum sl_msg_type, not HELLO */
    uint64_t step;
    uint32_t stage; /* chunk */
    uint32_t mb;
    int dtype; /* enum sl_dtype */
    uint32_t ndim;
    int64_t shape[SL_WIRE_MAX_NDIM];
} sl_tensor_meta;

/* CURVE keys, all as 40-character Z85 text (see `sluice keys`). */
typedef struct sl_transport_curve {
    const char *public_key; /* this rank's key pair */
    const char *secret_key;
    const char *next_public_key;     /* the next rank's public key (it is the server there) */
    const char *const *allowed_keys; /* public keys admitted on our bound endpoint */
    size_t allowed_count;
} sl_transport_curve;

typedef struct sl_transport_options {
    uint64_t run_id;           /* any value unique to this run (e.g. random at launch) */
    uint64_t config_hash;      /* both ends of a link must agree */
    int rank, world;           /* 0 <= rank < world */
    const char *bind_endpoint; /* ours: "ipc:///tmp/sluice-XXXX/r0", "tcp://10.0.0.1:5555" */
    const char *next_endpoint; /* the bind endpoint of rank (rank+1)%world */
    int heartbeat_ivl_ms;      /* default 500 */
    int heartbeat_timeout_ms;  /* a silent peer is declared dead after this; default 3000 */
    int connect_timeout_ms;    /* sl_transport_open waits this long for both HELLOs; 60000 */
    int recv_timeout_ms;       /* 0 (default): wait as long as the peer is alive */
    int in_flight;             /* messages a send may queue per link and direction before it
                                  blocks; default 8 */
    size_t max_tensor_bytes;   /* largest payload a link carries (ZMQ_MAXMSGSIZE); 256 MiB */
    int linger_ms;             /* how long close waits to flush queued messages; 2000 */
    size_t zero_copy_bytes;    /* sl_transport_send_owned copies below this; 65536 */
    /* A TCP socket already bound to bind_endpoint's address and listening, which the bound link
     * takes over (ZMQ_USE_FD) and closes with it; -1 (the default): the link binds its own. A
     * launcher that chose the port by binding it passes that socket, so no other process can
     * take the port between the choice and the bind. */
    int bind_fd;
    /* Over an ipc:// link without CURVE, payloads of zero_copy_bytes or more go through a ring of
     * this many bytes of shared memory (/dev/shm) instead of the socket, where they fit
     * (transport/ring.c); 0 (the default): every payload goes over the socket. */
    size_t ring_bytes;
    const sl_transport_curve *curve; /* NULL: no encryption (ipc, inproc, trusted networks) */
    void *zmq_context;               /* NULL: the transport makes its own (needed for CURVE); share
                                        one for inproc:// */
} sl_transport_options;

typedef struct sl_transport sl_transport;
typedef void sl_free_fn(void *data, void *hint);

/* Fills the defaults above; rank, world and endpoints must still be set. */
void sl_transport_options_init(sl_transport_options *o);

/* Binds, connects and exchanges HELLO on both links (magic, version, run id, config hash and
 * ranks checked on both sides). Blocks until both links are up or connect_timeout_ms passes.
 * An endpoint that cannot be bound (in use, ipc path too long, unparsable) is SL_EIO naming it. */
int sl_transport_open(const sl_transport_options *o, sl_transport **out);

/* The rank at the other end of a link. */
int sl_transport_peer(const sl_transport *t, int dir);

/* Sends one message on a link (dir is enum sl_link_dir). `bytes` must equal the bytes of
 * meta's shape and dtype. The data is copied; the call blocks only while `in_flight` messages
 * are already queued toward that peer in that direction, and fails if the peer is lost. */
int sl_transport_send(sl_transport *t, int dir, const sl_tensor_meta *meta, const void *data,
                      size_t bytes);

/* Like sl_transport_send, but the copy of a payload that goes through the shared-memory ring
 * runs on the transport's copy thread, so the call returns once the receiver has been told (the
 * receiver copies the payload out as it lands). `data` must stay unchanged, and mapped, until
 * sl_transport_flush returns; a payload over the socket is copied before the call returns. */
int sl_transport_send_lent(sl_transport *t, int dir, const sl_tensor_meta *meta, const void *data,
                           size_t bytes);

/* Waits until the copy thread has copied every payload lent to it. */
void sl_transport_flush(sl_transport *t);

/* Whether sl_transport_flush would return at once. */
bool sl_transport_flushed(sl_transport *t);

/* Like sl_transport_send, but takes ownership of `data`: at or above zero_copy_bytes it is sent
 * without copying (or, through the ring, copied there on the copy thread). free_fn(data, hint)
 * runs exactly once, whatever the outcome, possibly on a libzmq thread or the copy thread and
 * possibly after this call returns. free_fn may be NULL. */
int sl_transport_send_owned(sl_transport *t, int dir, const sl_tensor_meta *meta, void *data,
                            size_t bytes, sl_free_fn *free_fn, void *hint);

/* A buffer of `bytes` for sl_transport_send_owned from the transport's pool. Sent with free_fn
 * sl_transport_free, it comes back to the pool once libzmq is done with it, so steady traffic
 * reuses warm pages instead of faulting in fresh ones for every message. NULL (SL_ENOMEM recorded)
 * when out of memory. */
void *sl_transport_alloc(sl_transport *t, size_t bytes);

/* Gives back a buffer from sl_transport_alloc (an sl_free_fn; hint is unused). Safe on any
 * thread, also after sl_transport_close; NULL is fine. */
void sl_transport_free(void *data, void *hint);

/* Receives the next message on a link into data[0..capacity). With `expected` the header must
 * match it exactly (type, step, stage, mb, dtype, ndim, shape); with NULL any tensor that fits is
 * taken. `got` (may be NULL) receives what arrived; `*got_bytes` (may be NULL) its length.
 * Blocks until a message arrives, the peer is lost (SL_EPEER), or recv_timeout_ms passes
 * (SL_ETIMEOUT). An ABORT from the peer is SL_EPEER with the peer's reason. The payload's
 * checksum is verified while it is copied, so after a CRC failure data[] holds the refused bytes
 * (never report them as received); every other check runs before anything is copied. */
int sl_transport_recv(sl_transport *t, int dir, const sl_tensor_meta *expected, void *data,
                      size_t capacity, sl_tensor_meta *got, size_t *got_bytes);

/* Like sl_transport_recv, but without copying the payload: *data points at it inside the received
 * message and *bytes is its length. Every check, the CRC included, has passed when this returns
 * SL_OK (the CRC runs over the message in place). The pointer stays valid until the next
 * sl_transport_recv, sl_transport_recv_borrow or sl_transport_release on the same link, or
 * sl_transport_close; the bytes must not be written. On failure *data is NULL. */
int sl_transport_recv_borrow(sl_transport *t, int dir, const sl_tensor_meta *expected,
                             const void **data, size_t *bytes, sl_tensor_meta *got);

/* Names where the next message on a link goes, before sl_transport_recv asks for it with the same
 * data and capacity: where it comes through the shared-memory ring, the copy thread copies its
 * payload there as it lands (its CRC computed as it copies, compared by the receive), so that the
 * receive finds it copied. `data` must stay unwritten, and mapped, until that receive returns;
 * any other receive on the link takes the post back first. Without a ring it does nothing. */
int sl_transport_recv_post(sl_transport *t, int dir, void *data, size_t capacity);

/* Gives back the message lent by sl_transport_recv_borrow on a link (nothing if none is lent). */
void sl_transport_release(sl_transport *t, int dir);

/* Tells both neighbours this rank failed (an ABORT with `reason`), without blocking; they
 * report it from their next recv. Best effort: a neighbour that cannot take it sees the link
 * close instead. */
int sl_transport_abort(sl_transport *t, const char *reason);

/* Processes liveness events without blocking: SL_OK, or the failure a send/recv would report. */
int sl_transport_check(sl_transport *t);

/* Flushes queued messages (up to linger_ms), closes the links and frees t. NULL is fine. */
void sl_transport_close(sl_transport *t);

/* Removes the names of the shared-memory rings process `pid` made (ring_bytes) that are still in
 * /dev/shm: a process killed while its links were opening leaves them there. For launchers, once
 * the process has exited. */
void sl_transport_remove_rings(int pid);

/* A new CURVE key pair as Z85 text (40 characters + NUL each). SL_EUNAVAILABLE if libzmq was
 * built without CURVE. */
int sl_transport_keypair(char public_key[41], char secret_key[41]);

/* The CURVE key check (a ZAP handler) for every CURVE server socket of one libzmq context: it
 * admits only `allowed_keys` (Z85) and logs each refusal as "<where> refused a connection from
 * ADDRESS: CURVE public key KEY ...". SL_EUNAVAILABLE without CURVE in libzmq, SL_ECONFIG for a
 * malformed key, SL_EIO. Stop it (sl_zap_stop, which takes NULL) before terminating the
 * context. */
typedef struct sl_zap sl_zap;
int sl_zap_start(void *zmq_context, const char *const *allowed_keys, size_t count,
                 const char *where, sl_zap **out);
void sl_zap_stop(sl_zap *z);

/* SL_ECONFIG naming `what` unless key is 40 characters of valid Z85. */
int sl_curve_check_key(const char *key, const char *what);
/* Sets a socket up, before bind or connect, as a CURVE server with its secret key (its clients
 * checked by the context's sl_zap) or as a client with its key pair and the server's public key. */
void sl_curve_server(void *sock, const char *secret_key);
void sl_curve_client(void *sock, const char *public_key, const char *secret_key,
                     const char *server_key);

/* Key files, as `sluice keys --out DIR` writes them and launch.keys names them: 40 Z85
 * characters and a newline. sl_transport_write_keypair makes a new pair (its public key also in
 * `public_key`) and writes the secret key with mode 0600; sl_transport_read_key reads either
 * back, refusing anything but a 40-character key. */
int sl_transport_write_keypair(const char *secret_path, const char *public_path,
                               char public_key[41]);
int sl_transport_read_key(const char *path, char key[41]);

#ifdef __cplusplus
}
#endif
#endif
