/* Shared-memory rings for links within one host.
 *
 * Over an ipc:// link both ranks are on one host, and a payload crossing the socket is copied
 * four times after the sender's CRC (into and out of the kernel, through libzmq's I/O threads),
 * and even a header takes four thread hand-offs. A sender with a ring instead puts a message with
 * a large payload, header and payload, in a ring of shared memory it owns; the receiver takes it
 * from there. Nothing of it crosses the socket, which carries the link's other messages; every
 * message keeps its sequence number, and the receiver takes them in that order from whichever
 * side holds the next.
 *
 * The ring is a POSIX shared-memory object (/dev/shm): a control page, then `size` data bytes.
 * The control page holds, from the sender, how many messages it has sent on the link, ring or
 * socket (`posted`, a futex word the receiver sleeps on), and a note per ring message (sequence
 * number, slot, payload length; message k in notes[k % 64]); from the receiver, `tail` (the end of
 * the last slot it is done with), how many ring messages it has read (`taken`, freeing their
 * notes) and whether it sleeps. A ring message lies in a slot at position p (a byte count since
 * the ring began, a multiple of 64; the slot at p % size, whole): a 256-byte slot header (how many
 * chunks of the payload are in, a futex word; the payload's CRC32C, continued from the header's;
 * the 144-byte wire header at byte 64), then the payload. The sender writes the header and the
 * note, posts, and only then copies the payload in, a 128 KiB chunk at a time, each published as
 * it lands (here, or on the copy thread, mover.c); the receiver checks the header as it would a
 * socket message's and copies each chunk out as it lands, checking the CRC as it copies. So a hop
 * costs about one copy and one wake-up.
 *
 * The sender skips to the ring's start rather than wrap a slot, goes back to the start whenever
 * there is room there (the bytes are still in the caches), and never places bytes past tail +
 * size (the whole ring being free from its start once the receiver is done with everything). A
 * message that does not fit now, or finds every note in use, goes over the socket as before.
 *
 * The sender names the ring in its HELLO (SL_WIRE_FLAG_RING, the name as the payload); the
 * receiver maps it while opening the link and unlinks the name, so nothing is left in /dev/shm
 * once both ranks hold it (the sender unlinks it too on close, for a receiver that never came, and
 * a local run's launcher sweeps the names of ranks that died before either could). */
#define _GNU_SOURCE
#include "transport/transport_impl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define RING_MAGIC "SLRING1"
#define RING_CTL   4096 /* the control page before the data */
#define RING_SLOT  256  /* a slot header before each payload; slots are 64-byte aligned */
#define RING_ALIGN 64
#define RING_NOTES 64          /* ring messages sent and not yet read, at most */
#define RING_CHUNK (128 << 10) /* the sender publishes the payload this many bytes at a time */

struct ring_ctl {
    char magic[8];
    uint64_t run_id;
    uint32_t src, dst;
    uint64_t size;
    uint8_t pad[32];
    /* At byte 64, written by the receiver: the end of the last slot it is done with, and how many
     * of the ring's messages it has read. */
    _Atomic uint64_t tail;
    _Atomic uint64_t taken;
    _Atomic uint32_t waiting; /* the receiver sleeps on `posted` */
    uint8_t pad2[44];
    /* At byte 128, written by the sender: how many messages it has sent on the link, through the
     * ring or the socket (the next sequence number, as a futex word), and where its ring
     * messages are, message k at notes[k % RING_NOTES]. */
    _Atomic uint32_t posted;
    uint8_t pad3[60];
    struct ring_note {
        _Atomic uint64_t seq; /* the message's sequence number, written last */
        uint64_t pos, len;    /* its slot and payload length */
    } notes[RING_NOTES];
};
_Static_assert(sizeof(struct ring_ctl) <= RING_CTL, "ring control page");
_Static_assert(offsetof(struct ring_ctl, tail) == 64 && offsetof(struct ring_ctl, taken) == 72 &&
                   offsetof(struct ring_ctl, posted) == 128 &&
                   offsetof(struct ring_ctl, notes) == 192 && sizeof(struct ring_note) == 24,
               "the control page's layout (tests/transport/test_refusals.c writes one)");
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "the ring's tail is shared between processes");

/* The slot header in front of each payload, written by the sender only, but `waiting`. */
struct ring_slot {
    _Atomic uint32_t done;    /* chunks of the payload in place (a futex word) */
    _Atomic uint32_t waiting; /* the receiver sleeps on `done` */
    uint32_t crc;             /* once every chunk is in: CRC32C of the header, then the payload */
    uint8_t pad[52];
    uint8_t header[SL_WIRE_HEADER_SIZE]; /* the message's header, its crc covering itself */
};
_Static_assert(sizeof(struct ring_slot) <= RING_SLOT && offsetof(struct ring_slot, crc) == 8 &&
                   offsetof(struct ring_slot, header) == 64,
               "the slot header's layout (tests/transport/test_refusals.c writes one)");
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "a slot's words are shared between processes");

static struct ring_ctl *ctl(const struct sl__ring *r)
{
    return (struct ring_ctl *)r->map;
}

static uint8_t *data(const struct sl__ring *r)
{
    return r->map + RING_CTL;
}

void sl__ring_create(sl_transport *t, struct sl__link *l)
{
    static atomic_int made;
    struct sl__ring *r = &l->out;
    size_t size = t->o.ring_bytes, total = size + RING_CTL;
    snprintf(r->name, sizeof r->name, "/sluice-%d-%d-r%dto%d", (int)getpid(),
             atomic_fetch_add(&made, 1), t->o.rank, l->peer);
    int fd = shm_open(r->name, O_RDWR | O_CREAT | O_EXCL, 0600);
    const char *what = "shm_open";
    int e = 0;
    if (fd >= 0) {
        /* Reserved now: a tmpfs that fills up later would end the process with SIGBUS. */
        if ((e = posix_fallocate(fd, 0, (off_t)total)) != 0) what = "reserving it";
        if (!e) {
            r->map = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
            if (r->map == MAP_FAILED) {
                e = errno;
                what = "mmap";
                r->map = NULL;
            }
        }
        close(fd);
    } else {
        e = errno;
    }
    if (!r->map) {
        if (fd >= 0) shm_unlink(r->name);
        sl_log(SL_LOG_INFO,
               "rank %d: no shared-memory ring toward rank %d (%s of %zu MiB in /dev/shm: %s); "
               "its payloads go over the socket",
               t->o.rank, l->peer, what, total >> 20, strerror(e));
        r->name[0] = 0;
        return;
    }
    r->size = size;
    struct ring_ctl *c = ctl(r);
    memcpy(c->magic, RING_MAGIC, sizeof c->magic);
    c->run_id = t->o.run_id;
    c->src = (uint32_t)t->o.rank;
    c->dst = (uint32_t)l->peer;
    c->size = size;
    atomic_store(&c->tail, 0);
}

int sl__ring_open(sl_transport *t, struct sl__link *l, const void *name, size_t len)
{
    struct sl__ring *r = &l->in;
    char path[sizeof r->name];
    static const char prefix[] = "/sluice-";
    bool ok = len > sizeof prefix - 1 && len < sizeof path && !memcmp(name, prefix, 8);
    for (size_t i = 1; ok && i < len; i++) {
        char ch = ((const char *)name)[i];
        ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-';
    }
    if (!ok) return sl__broke(t, l, SL_EPROTOCOL, "HELLO names a ring that is not a sluice ring");
    memcpy(path, name, len);
    path[len] = 0;
    int fd = shm_open(path, O_RDWR, 0);
    struct stat st;
    const char *why = NULL;
    if (fd < 0 || fstat(fd, &st) != 0) {
        why = strerror(errno);
    } else if (st.st_size <= RING_CTL) {
        why = "too small to be a ring";
    } else {
        r->map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                      fd, 0);
        if (r->map == MAP_FAILED) {
            r->map = NULL;
            why = strerror(errno);
        }
    }
    if (fd >= 0) close(fd);
    if (!r->map)
        return sl__broke(t, l, SL_EIO,
                         "cannot map rank %d's shared-memory ring %s: %s (set launch.shared_memory "
                         "false to carry payloads over the socket)",
                         l->peer, path, why);
    r->size = (size_t)st.st_size - RING_CTL;
    const struct ring_ctl *c = ctl(r);
    if (memcmp(c->magic, RING_MAGIC, sizeof c->magic) || c->run_id != t->o.run_id ||
        c->src != (uint32_t)l->peer || c->dst != (uint32_t)t->o.rank || c->size != r->size)
        return sl__broke(t, l, SL_EPROTOCOL,
                         "the shared-memory ring %s is not rank %d's ring toward us in this run",
                         path, l->peer);
    shm_unlink(path); /* ours and the peer's: both ranks hold it now */
    return SL_OK;
}

void sl_transport_remove_rings(int pid)
{
    char prefix[32];
    int n = snprintf(prefix, sizeof prefix, "sluice-%d-", pid);
    DIR *d = opendir("/dev/shm");
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        char name[300];
        if (strncmp(e->d_name, prefix, (size_t)n)) continue;
        snprintf(name, sizeof name, "/%s", e->d_name);
        shm_unlink(name);
    }
    closedir(d);
}

void sl__ring_close(struct sl__ring *r, bool owner)
{
    if (owner && r->name[0]) shm_unlink(r->name); /* gone already if the receiver mapped it */
    if (r->map) munmap(r->map, r->size + RING_CTL);
    memset(r, 0, sizeof *r);
}

uint64_t sl__ring_span(uint64_t len)
{
    return RING_SLOT + (len + RING_ALIGN - 1) / RING_ALIGN * RING_ALIGN;
}

int sl__ring_place(sl_transport *t, struct sl__link *l, size_t bytes, uint64_t *pos, void **slot)
{
    struct sl__ring *r = &l->out;
    *slot = NULL;
    uint64_t len = sl__ring_span(bytes);
    if (!r->map || len > r->size) return SL_OK;
    uint64_t tail = atomic_load_explicit(&ctl(r)->tail, memory_order_acquire);
    uint64_t start = r->head, off = start % r->size;
    uint64_t lap = off ? start + (r->size - off) : start; /* the ring's start, next time round */
    if (tail == r->head) r->floor = lap;                  /* the peer is done with all of it */
    uint64_t done = SL_MAX(tail, r->floor);               /* every byte before it is free */
    if (tail > r->head || (done < r->head && r->head - done > r->size))
        return sl__broke(t, l, SL_EPROTOCOL,
                         "rank %d's tail in our shared-memory ring (%llu) is outside what we "
                         "placed (up to %llu): the ring was written by someone else",
                         l->peer, (unsigned long long)tail, (unsigned long long)r->head);
    /* At the ring's start whenever it has room there: a link with one or two payloads in
     * flight then reuses the same bytes, still in the caches, rather than cycling through the
     * whole ring into bytes last touched a lap ago (bench/pipeline.md). */
    if (lap + len - done <= r->size || off + len > r->size) start = lap;
    if (start + len - done > r->size) return SL_OK; /* full for now */
    if (r->count - atomic_load_explicit(&ctl(r)->taken, memory_order_acquire) >= RING_NOTES)
        return SL_OK; /* every note is in use */
    r->head = start + len;
    *pos = start;
    struct ring_slot *sl = (struct ring_slot *)(data(r) + start % r->size);
    atomic_store_explicit(&sl->done, 0, memory_order_relaxed);
    atomic_store_explicit(&sl->waiting, 0, memory_order_relaxed);
    *slot = sl;
    return SL_OK;
}

const void *sl__ring_payload(const void *slot)
{
    return (const uint8_t *)slot + RING_SLOT;
}

const uint8_t *sl__ring_header(const void *slot)
{
    return ((const struct ring_slot *)slot)->header;
}

static long futex(_Atomic uint32_t *word, int op, uint32_t val, const struct timespec *timeout)
{
    return syscall(SYS_futex, (uint32_t *)word, op, val, timeout, NULL, 0);
}

void sl__ring_note(struct sl__link *l, void *slot, uint64_t pos, uint64_t len, uint64_t seq,
                   const uint8_t header[SL_WIRE_HEADER_SIZE])
{
    struct sl__ring *r = &l->out;
    memcpy(((struct ring_slot *)slot)->header, header, SL_WIRE_HEADER_SIZE);
    struct ring_note *n = &ctl(r)->notes[r->count++ % RING_NOTES];
    n->pos = pos;
    n->len = len;
    atomic_store_explicit(&n->seq, seq, memory_order_release);
}

void sl__ring_post(struct sl__link *l, uint64_t sent)
{
    if (!l->out.map) return;
    struct ring_ctl *c = ctl(&l->out);
    /* Sequentially consistent, as is the receiver's store to `waiting` before it reads `posted`
     * again: one of the two sees the other, so no wake-up is lost. */
    atomic_store(&c->posted, (uint32_t)sent);
    if (atomic_load(&c->waiting)) futex(&c->posted, FUTEX_WAKE, INT_MAX, NULL);
}

/* Sleeps on futex word `word` while it holds `seen`, for at most `ms`, with bit `who` of
 * `waiting` set so that the writer wakes it (the writer stores the word, then reads `waiting`;
 * both sequentially consistent, so one of the two sees the other). 1 when it timed out. */
static int sleep_on(_Atomic uint32_t *word, _Atomic uint32_t *waiting, uint32_t who, uint32_t seen,
                    int ms)
{
    atomic_fetch_or(waiting, who);
    int timed_out = 0;
    if (atomic_load(word) == seen) {
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
        timed_out = futex(word, FUTEX_WAIT, seen, &ts) < 0 && errno == ETIMEDOUT;
    }
    atomic_fetch_and(waiting, ~who);
    return timed_out;
}

void sl__ring_wait_posted(struct sl__link *const *ls, const uint32_t *seen, int n,
                          _Atomic uint32_t *wakes, uint32_t wakes_seen, int ms)
{
    struct ring_ctl *c[2];
    bool changed = atomic_load(wakes) != wakes_seen;
    for (int i = 0; i < n; i++) {
        c[i] = ctl(&ls[i]->in);
        atomic_fetch_or(&c[i]->waiting, 2); /* 2: the copy thread; then `posted` read again */
        changed |= atomic_load(&c[i]->posted) != seen[i];
    }
    static atomic_bool no_waitv; /* the kernel (before 5.16) or a seccomp filter refused it */
    bool done = changed;         /* nothing to wait for, or waited */
#if defined(SYS_futex_waitv) && defined(FUTEX_32)
    if (!done && !atomic_load(&no_waitv)) { /* every word at once */
        struct futex_waitv w[3] = {
            {.val = wakes_seen, .uaddr = (uintptr_t)wakes, .flags = FUTEX_32 | FUTEX_PRIVATE_FLAG}};
        for (int i = 0; i < n; i++)
            w[i + 1] = (struct futex_waitv){
                .val = seen[i], .uaddr = (uintptr_t)&c[i]->posted, .flags = FUTEX_32};
        struct timespec end;
        clock_gettime(CLOCK_MONOTONIC, &end);
        end.tv_nsec += (long)ms * 1000000L;
        end.tv_sec += end.tv_nsec / 1000000000L;
        end.tv_nsec %= 1000000000L;
        done = syscall(SYS_futex_waitv, w, (unsigned)n + 1, 0, &end, CLOCK_MONOTONIC) >= 0 ||
               errno == ETIMEDOUT || errno == EAGAIN || errno == EINTR;
        if (!done) atomic_store(&no_waitv, true);
    }
#endif
    if (!done) { /* without futex_waitv: a look every 200 us */
        struct timespec ts = {0, 200000};
        futex(wakes, FUTEX_WAIT_PRIVATE, wakes_seen, &ts);
    }
    for (int i = 0; i < n; i++) atomic_fetch_and(&c[i]->waiting, ~2u);
}

void sl__ring_wake(_Atomic uint32_t *wakes, bool sleeper)
{
    atomic_fetch_add(wakes, 1);
    if (sleeper) futex(wakes, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
}

/* Whether message `seq` is among the `posted` sent (sequence numbers compared modulo 2^32). */
static bool is_posted(uint32_t posted, uint64_t seq)
{
    return (int32_t)(posted - (uint32_t)seq) > 0;
}

int sl__ring_next(struct sl__link *l, uint64_t seq, int ms, uint64_t *pos, uint64_t *len)
{
    struct sl__ring *r = &l->in;
    struct ring_ctl *c = ctl(r);
    uint32_t posted = atomic_load(&c->posted);
    for (int spins = 0; !is_posted(posted, seq) && spins < 20; spins++) {
        sched_yield(); /* the message is often a few microseconds away */
        posted = atomic_load(&c->posted);
    }
    if (!is_posted(posted, seq)) {
        sleep_on(&c->posted, &c->waiting, 1, posted, ms); /* 1: the rank's thread */
        if (!is_posted(atomic_load(&c->posted), seq)) return 0;
    }
    struct ring_note *n = &c->notes[r->count % RING_NOTES];
    if (atomic_load_explicit(&n->seq, memory_order_acquire) != seq) return 2; /* the socket's */
    *pos = n->pos;
    *len = n->len;
    atomic_store_explicit(&c->taken, ++r->count, memory_order_release);
    return 1;
}

void sl__ring_fill(void *slot, const void *src, size_t len, uint32_t crc)
{
    struct ring_slot *s = slot;
    uint8_t *dst = (uint8_t *)slot + RING_SLOT;
    uint32_t k = 0;
    for (size_t off = 0; off < len; off += RING_CHUNK) {
        size_t n = SL_MIN(len - off, (size_t)RING_CHUNK);
        crc = sl_crc32c_copy(crc, dst + off, (const uint8_t *)src + off, n);
        if (off + n == len) s->crc = crc;
        /* Sequentially consistent, as is the receiver's store to `waiting` before it reads
         * `done` again: one of the two sees the other, so no wake-up is lost. */
        atomic_store(&s->done, ++k);
        if (atomic_load(&s->waiting)) futex(&s->done, FUTEX_WAKE, INT_MAX, NULL);
    }
}

/* Whether a slot at `pos` for `len` payload bytes lies whole in the peer's ring r, aligned, at or
 * after `next`. */
static bool fits(const struct sl__ring *r, uint64_t next, uint64_t pos, uint64_t len)
{
    uint64_t span = sl__ring_span(len);
    return pos >= next && pos % RING_ALIGN == 0 && len <= r->size && span <= r->size &&
           pos % r->size + span <= r->size;
}

int sl__ring_take(sl_transport *t, struct sl__link *l, uint64_t pos, uint64_t len, void **slot)
{
    struct sl__ring *r = &l->in;
    *slot = NULL;
    if (!fits(r, r->next, pos, len))
        return sl__broke(t, l, SL_EPROTOCOL,
                         "refused a payload at ring position %llu of %llu bytes (the ring holds "
                         "%zu, slots are 64-byte aligned, the next may start at %llu)",
                         (unsigned long long)pos, (unsigned long long)len, r->size,
                         (unsigned long long)r->next);
    r->next = pos + sl__ring_span(len);
    *slot = data(r) + pos % r->size;
    return SL_OK;
}

/* Compares the CRC computed over a slot's payload with the one the sender left there. */
static int check_crc(sl_transport *t, struct sl__link *l, const struct ring_slot *s, uint32_t crc)
{
    if (crc != s->crc)
        return sl__broke(t, l, SL_EPROTOCOL,
                         "refused a payload in the shared-memory ring: CRC32C mismatch (computed "
                         "%08x, the ring says %08x): corrupted in place",
                         crc, s->crc);
    return SL_OK;
}

/* Copies out (or, with dst NULL, only checksums) what the sender has placed of a slot's payload
 * beyond *have, into *crc, waiting for its chunks `ms` at a time: 1 when all of it is read, 0
 * after `ms` without a chunk or, with `jobs`, as soon as *jobs is not 0, -1 when the slot says
 * more chunks are in than the payload has. */
static int copy_out(struct ring_slot *s, uint64_t len, uint32_t *crc, void *dst, uint64_t *have,
                    int ms, const _Atomic unsigned *jobs)
{
    const uint8_t *src = (const uint8_t *)s + RING_SLOT;
    uint64_t chunks = (len + RING_CHUNK - 1) / RING_CHUNK;
    for (int spins = 0;;) {
        uint32_t done = atomic_load_explicit(&s->done, memory_order_acquire);
        if (done > chunks) return -1;
        uint64_t upto = SL_MIN(len, (uint64_t)done * RING_CHUNK);
        if (upto > *have) {
            *crc = dst ? sl_crc32c_copy(*crc, (uint8_t *)dst + *have, src + *have, upto - *have)
                       : sl_crc32c(*crc, src + *have, upto - *have);
            *have = upto;
            spins = 0;
        }
        if (*have == len) return 1;
        if (jobs && atomic_load(jobs)) return 0;
        if (spins++ < 20) { /* the next chunk is a few microseconds away */
            sched_yield();
            continue;
        }
        if (sleep_on(&s->done, &s->waiting, 1, done, ms)) return 0;
    }
}

int sl__ring_read(sl_transport *t, struct sl__link *l, void *slot, uint64_t len, uint32_t crc,
                  void *dst, uint64_t have)
{
    struct ring_slot *s = slot;
    double deadline = t->o.recv_timeout_ms > 0 ? sl_now() + t->o.recv_timeout_ms / 1000.0 : 0;
    for (;;) {
        int r = copy_out(s, len, &crc, dst, &have, 50, NULL);
        if (r > 0) break;
        if (r < 0)
            return sl__broke(t, l, SL_EPROTOCOL,
                             "rank %d's slot in its shared-memory ring says more chunks are in "
                             "than its payload of %llu bytes has: the ring was written by someone "
                             "else",
                             l->peer, (unsigned long long)len);
        /* 50 ms without a chunk: is the sender still there? */
        SL_TRY(sl__drain_events(t, l));
        if (l->lost)
            return sl__broke(t, l, SL_EPEER,
                             "rank %d disconnected while placing a payload in its shared-memory "
                             "ring (process ended)",
                             l->peer);
        if (deadline && sl_now() > deadline)
            return sl__broke(t, l, SL_ETIMEOUT,
                             "rank %d placed only %llu of %llu bytes of a payload in its "
                             "shared-memory ring within %d ms",
                             l->peer, (unsigned long long)have, (unsigned long long)len,
                             t->o.recv_timeout_ms);
    }
    return check_crc(t, l, s, crc);
}

int sl__ring_prefetch(struct sl__link *l, const _Atomic unsigned *jobs, uint32_t *seen)
{
    struct sl__prefetch *p = &l->pre;
    struct sl__ring *r = &l->in;
    struct ring_ctl *c = ctl(r);
    int state = atomic_load(&p->state);
    if (state != SL__PRE_POSTED && state != SL__PRE_PARTIAL) return 1;
    if (state == SL__PRE_POSTED) {
        *seen = atomic_load(&c->posted);
        if (!is_posted(*seen, atomic_load(&p->seq))) return 0;
    }
    /* Claimed: while it is BUSY the rank neither takes the post back nor posts again, so its
     * fields hold still. */
    if (!atomic_compare_exchange_strong(&p->state, &state, SL__PRE_BUSY)) return 1;
    if (state == SL__PRE_POSTED) { /* not yet begun (PARTIAL: resumed where a send stopped it) */
        if (!is_posted(atomic_load(&c->posted), p->seq)) { /* posted again since looked at */
            atomic_store(&p->state, SL__PRE_POSTED);
            return 1;
        }
        struct ring_note *n = &c->notes[p->count % RING_NOTES];
        uint64_t pos = n->pos, len = n->len;
        if (atomic_load_explicit(&n->seq, memory_order_acquire) != p->seq ||
            !fits(r, p->next, pos, len) || len > p->capacity) {
            /* The socket's, or for the rank's own checks to refuse. */
            atomic_store(&p->state, SL__PRE_OFF);
            return 1;
        }
        p->crc = sl_wire_header_crc(((struct ring_slot *)(data(r) + pos % r->size))->header);
        p->pos = pos;
        p->len = len;
        p->have = 0;
    }
    /* A send to fill (jobs) comes first: the copy stops there, to be resumed, by this thread or
     * by the rank's receive. */
    struct ring_slot *s = (struct ring_slot *)(data(r) + p->pos % r->size);
    int got = copy_out(s, p->len, &p->crc, p->data, &p->have, 1, jobs);
    atomic_store_explicit(&p->state,
                          got > 0   ? SL__PRE_DONE
                          : got < 0 ? SL__PRE_OFF
                                    : SL__PRE_PARTIAL,
                          memory_order_release);
    return 1;
}

void sl__ring_done(struct sl__link *l, uint64_t end)
{
    if (l->in.map && end) atomic_store_explicit(&ctl(&l->in)->tail, end, memory_order_release);
}
