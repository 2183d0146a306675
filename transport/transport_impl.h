/* The transport's internals, shared by its files and by nothing else (tests of the wire format use
 * transport.h only):
 *
 *   open.c     options, sockets and the HELLO exchange that opens a transport
 *   link.c     the first failure, sending (framing, checksum, flow control), abort and close
 *   recv.c     receiving: frames, header checks against the link, CRC, the tensor expected
 *   monitor.c  socket monitor events: handshakes, disconnects, a second peer (liveness)
 *   curve.c    CURVE keys, key files and the ZAP handler that admits the run's keys
 *   wire.c     the header format, and crc32c.c its checksum (both free of libzmq)
 *   rendezvous.c  the rendezvous directory's messages (free of libzmq)
 *   pool.c     payload buffers reused between sends (pool.h)
 *   ring.c     shared-memory rings that carry large payloads between ranks on one host
 *   mover.c    the copy thread that fills ring slots for sends that return before their copy
 *
 * Functions shared between these files are named sl__*; the rest are static. */
#ifndef SL_TRANSPORT_IMPL_H
#define SL_TRANSPORT_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "core/core.h"
#include "transport/pool.h"
#include "transport/transport.h"

/* A shared-memory ring (ring.c): ours toward the peer, or the peer's toward us, mapped. */
struct sl__ring {
    uint8_t *map; /* the control page, then `size` data bytes; NULL: no ring */
    size_t size;
    uint64_t head;  /* ours: where the next payload may start */
    uint64_t floor; /* ours: the peer is done with every byte before it */
    uint64_t next;  /* the peer's: the least position its next payload may have */
    uint64_t count; /* ours: messages placed in it; the peer's: messages read from it */
    char name[64];  /* the shared-memory object's name ("" once unlinked, or none) */
};

/* What sl__read_message received: the payload frame and where the payload is (in the frame, or
 * in the peer's ring). */
struct sl__received {
    zmq_msg_t msg;
    const void *data;
    size_t len;
    uint64_t ring_end; /* a payload in the ring: where the ring's tail goes once it is used */
};

/* A receive posted ahead (sl_transport_recv_post): the copy thread copies message `seq`'s payload
 * to `data` as it lands, if it comes through the peer's ring and fits. The rank's thread writes
 * the fields and POSTED; then only the copy thread, until it leaves DONE or OFF (or the rank takes
 * a POSTED one back). */
enum { SL__PRE_NONE, SL__PRE_POSTED, SL__PRE_BUSY, SL__PRE_PARTIAL, SL__PRE_DONE, SL__PRE_OFF };
struct sl__prefetch {
    _Atomic int state;
    void *data;
    size_t capacity;
    _Atomic uint64_t seq;    /* the link's recv_seq when posted (the copy thread peeks at it) */
    uint64_t count, next;    /* the link's in.count and in.next when posted */
    uint64_t pos, len, have; /* PARTIAL, DONE: the payload's place, length and bytes copied */
    uint32_t crc;            /* PARTIAL, DONE: their CRC, continued from the header's */
};

/* One link: the bound side is a ROUTER, the connecting side a DEALER (see open.c for why). */
struct sl__link {
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
    struct sl__received held;    /* the message sl_transport_recv_borrow lent out */
    int holding;
    struct sl__ring out, in; /* shared-memory rings, where the link has them */
    struct sl__prefetch pre;
    uint64_t ring_sends, socket_sends; /* large payloads sent each way (logged on close) */
};

typedef struct sl__mover sl__mover;

struct sl_transport {
    sl_transport_options o;
    char bind_ep[256], next_ep[256];
    void *ctx;
    int own_ctx;
    struct sl__link links[2];
    int nlinks;
    sl__pool *pool;    /* payload buffers for large sends, reused once libzmq has sent them */
    sl__mover *mover;  /* the copy thread, once a send has used it */
    double last_drain; /* when monitor events were last read (sl_now) */
    int broken;
    int broken_status;
    char broken_msg[1536];
    /* CURVE */
    int curve;
    char pub[41], sec[41], next_pub[41];
    const char *const *allowed_keys; /* the options', until the key check copies them */
    size_t allowed_count;
    sl_zap *zap;
};

static inline const char *sl__dir_name(int dir)
{
    return dir == SL_LINK_NEXT ? "next" : "prev";
}

/* ------------------------------------------------------------------------------------------------
 * link.c */

/* Breaks the transport with the first failure (naming the link l, or only the rank when l is
 * NULL); every later call repeats that failure. Returns the failure's status. */
int sl__broke(sl_transport *t, struct sl__link *l, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Repeats the failure the transport broke on. */
int sl__repeat_broken(sl_transport *t);

/* The link in direction dir, or a failure (no transport, broken, bad direction, no links). */
int sl__get_link(sl_transport *t, int dir, struct sl__link **l);

/* A header of `type` from this rank to l's peer, every other field zero (dtype U8). */
void sl__fill_header(sl_transport *t, struct sl__link *l, sl_wire_header *h, int type);

/* Sends header h and *payload on l (taking ownership of *payload) at the link's next sequence
 * number. `crc`: the CRC of header and payload when the caller computed it while copying the
 * payload (or the payload is in the ring), or NULL to compute it here over the frame. With
 * `dontwait`, gives up with 0 when the queue is full; otherwise waits, watching the monitor.
 * Returns 1 when sent, or a failure. */
int sl__send_frames(sl_transport *t, struct sl__link *l, sl_wire_header *h, zmq_msg_t *payload,
                    int dontwait, const uint32_t *crc);

/* ------------------------------------------------------------------------------------------------
 * open.c */

int sl__setopt_int(void *sock, int opt, int value);

/* ------------------------------------------------------------------------------------------------
 * recv.c */

/* Where sl__read_message may copy a payload while checking its CRC (defined in recv.c). */
struct sl__dest;

/* Reads one message from l and runs every check that needs no caller's expectation: frames,
 * header structure, run id, ranks, sequence number, size limit, payload length, CRC. Returns 1
 * with *h filled and *got holding the payload (the caller gives it back with sl__received_done),
 * 0 if nothing came, or a failure. With `wait` it blocks for one receive slice (see open.c); dst
 * may be NULL. *got comes from sl__received_init. */
int sl__read_message(sl_transport *t, struct sl__link *l, sl_wire_header *h,
                     struct sl__received *got, struct sl__dest *dst, int wait);

/* An empty received message, for sl__read_message; sl__received_done closes its frame and, for a
 * payload in the peer's ring, frees its place. */
void sl__received_init(struct sl__received *got);
void sl__received_done(struct sl__link *l, struct sl__received *got);

/* Discards the rest of a multipart message; returns how many frames it had. */
int sl__drain_frames(void *sock);

/* Gives back the message sl_transport_recv_borrow lent on l, if any. */
void sl__release_held(struct sl__link *l);

/* ------------------------------------------------------------------------------------------------
 * ring.c */

/* Makes l's ring toward its peer (t->o.ring_bytes of data). Without shared memory (none, or
 * /dev/shm full) the link has no ring, which is said at info level. */
void sl__ring_create(sl_transport *t, struct sl__link *l);

/* Maps the peer's ring named in its HELLO (`len` bytes, no NUL) as l->in and checks its control
 * page; a failure breaks the transport. */
int sl__ring_open(sl_transport *t, struct sl__link *l, const void *name, size_t len);

/* Unmaps a ring; the owner also unlinks its name if the receiver has not. */
void sl__ring_close(struct sl__ring *r, bool owner);

/* The bytes a payload of `len` bytes takes in a ring: its slot header, then the payload, rounded
 * up so that the next slot is 64-byte aligned. */
uint64_t sl__ring_span(uint64_t len);

/* A slot for a payload of `len` bytes in l's ring: *slot (NULL when it does not fit now) at *pos,
 * its header reset. Fails (breaking the transport) only when the peer's tail is impossible. */
int sl__ring_place(sl_transport *t, struct sl__link *l, size_t len, uint64_t *pos, void **slot);

/* Writes the header of the message in `slot` (its payload at `pos`, `len` bytes, sequence number
 * `seq`) and its note in the control page, where the receiver finds it once sl__ring_post says
 * the message is sent. */
void sl__ring_note(struct sl__link *l, void *slot, uint64_t pos, uint64_t len, uint64_t seq,
                   const uint8_t header[SL_WIRE_HEADER_SIZE]);

/* Tells l's peer, through our ring's control page, that `sent` messages have been sent on l (ring
 * or socket), waking it if it sleeps there. Nothing without a ring. */
void sl__ring_post(struct sl__link *l, uint64_t sent);

/* Where message `seq` from l's peer is, once sent: 1 in its ring (*pos, *len; its note is read
 * then), 2 on the socket, 0 not sent yet after waiting up to `ms`. */
int sl__ring_next(struct sl__link *l, uint64_t seq, int ms, uint64_t *pos, uint64_t *len);

/* The header a ring message's slot holds. */
const uint8_t *sl__ring_header(const void *slot);

/* Copies the payload src into its slot a chunk at a time, publishing each chunk (and waking the
 * receiver if it sleeps), while computing its CRC from `crc` (the header's). Touches nothing but
 * the slot and src: safe on another thread (the mover's). */
void sl__ring_fill(void *slot, const void *src, size_t len, uint32_t crc);

/* The slot of a payload of `len` bytes the peer placed at `pos` in its ring, checked to lie inside
 * it and after the last one, in *slot; a failure breaks the transport. */
int sl__ring_take(sl_transport *t, struct sl__link *l, uint64_t pos, uint64_t len, void **slot);

/* Reads the payload of a slot from sl__ring_take as the sender places it: copies it to dst (or,
 * with dst NULL, only checks it), from byte `have` on (the bytes before it copied already, `crc`
 * their CRC continued from the header's), and compares
 * that with the CRC the sender left in the slot. Waits for the sender's chunks, watching that the
 * peer is alive and recv_timeout_ms. A failure breaks the transport. */
int sl__ring_read(sl_transport *t, struct sl__link *l, void *slot, uint64_t len, uint32_t crc,
                  void *dst, uint64_t have);

/* The copy thread's part of a receive posted ahead on l (state POSTED or PARTIAL): once its
 * message is in the peer's ring, takes it (BUSY) and copies the payload to its destination as it
 * lands: DONE; PARTIAL when the sender stalls a millisecond or *jobs says a send waits (resumed
 * later, by the copy thread or the rank's receive); OFF when the message came over the socket or
 * does not fit. 0, with the state unchanged and *seen the peer's posted count, when the message
 * is not sent yet; else 1. Touches nothing of the link but l->pre. */
int sl__ring_prefetch(struct sl__link *l, const _Atomic unsigned *jobs, uint32_t *seen);

/* Sleeps until one of the n (at most 2) links' peers has sent more than seen[i] messages, or
 * *wakes no longer holds wakes_seen (sl__ring_wake), for at most `ms`. */
void sl__ring_wait_posted(struct sl__link *const *ls, const uint32_t *seen, int n,
                          _Atomic uint32_t *wakes, uint32_t wakes_seen, int ms);

/* Raises *wakes, and wakes a thread in sl__ring_wait_posted on it if `sleeper` says there may be
 * one. */
void sl__ring_wake(_Atomic uint32_t *wakes, bool sleeper);

/* Where a slot's payload lies. */
const void *sl__ring_payload(const void *slot);

/* Tells the peer its ring is free up to `end` (0: nothing to free). */
void sl__ring_done(struct sl__link *l, uint64_t end);

/* ------------------------------------------------------------------------------------------------
 * mover.c */

/* sl__ring_fill(slot, src, len, crc) on the copy thread (started on first use), then
 * free_fn(src, hint) there if free_fn; done here instead when the thread cannot start or has 64
 * jobs queued. */
void sl__mover_fill(sl_transport *t, void *slot, const void *src, size_t len, uint32_t crc,
                    sl_free_fn *free_fn, void *hint);

/* Posts l->pre (its fields filled) to the copy thread, starting it if need be; SL_ENOMEM when it
 * cannot start. */
int sl__mover_post(sl_transport *t, struct sl__link *l);

/* The final state of l->pre (NONE, PARTIAL, DONE or OFF), waiting while the copy thread has it;
 * the post is over then. */
int sl__mover_settle(sl_transport *t, struct sl__link *l);

/* How many jobs handed to the copy thread have not run yet. */
unsigned sl__mover_pending(sl_transport *t);

/* Waits until every job handed to the copy thread has run. */
void sl__mover_flush(sl_transport *t);

/* Runs the jobs left and ends the copy thread. */
void sl__mover_stop(sl_transport *t);

/* ------------------------------------------------------------------------------------------------
 * monitor.c */

/* Attaches a monitor to l's socket (before it binds or connects, so no event is missed). */
int sl__monitor_attach(sl_transport *t, struct sl__link *l);

/* Reads every pending monitor event of one link, or of all: SL_OK or the failure they break on. */
int sl__drain_events(sl_transport *t, struct sl__link *l);
int sl__drain_all_events(sl_transport *t);

/* sl__drain_all_events at most every 20 ms, for the fast paths. */
int sl__maybe_drain(sl_transport *t);

/* ------------------------------------------------------------------------------------------------
 * curve.c */

/* Checks the keys of c and keeps them in t (t->curve set), before any socket exists. */
int sl__curve_load(sl_transport *t, const sl_transport_curve *c);

/* Starts the key check on t->ctx, which admits only the allowed keys sl__curve_load kept. */
int sl__curve_start(sl_transport *t);

/* Sets l's socket up as a CURVE server (bound) or client (connecting). */
void sl__curve_socket(sl_transport *t, struct sl__link *l);

/* Stops the ZAP handler and wipes the secret key. Safe when CURVE was never started. */
void sl__curve_stop(sl_transport *t);

#endif
