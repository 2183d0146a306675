/* Shared-memory rings for links within one host.
 *
 * Over an ipc:// link both ranks are on one host, and a payload crossing the socket is copied
 * four times after the sender's CRC (into and out of the kernel, through libzmq's I/O threads).
 * A sender with a ring instead copies a large payload into a ring of shared memory it owns,
 * computing the CRC as it copies, and sends only the header and the payload's place over the
 * socket; the receiver copies it out, checking the CRC as it copies. The socket still carries
 * every message in order, so sequence numbers, flow control and liveness are unchanged.
 *
 * The ring is a POSIX shared-memory object (/dev/shm): a control page, then `size` data bytes.
 * The sender names it in its HELLO (SL_WIRE_FLAG_RING, the name as the payload); the receiver
 * maps it while opening the link and unlinks the name, so nothing is left in /dev/shm once both
 * ranks hold it (the sender unlinks it too on close, for a receiver that never came, and a local
 * run's launcher sweeps the names of ranks that died before either could). Positions
 * are byte counts since the ring began: a payload at position p lies at p % size, whole (the
 * sender skips to the ring's start rather than wrap one, and goes back to the start whenever
 * there is room there), and the receiver publishes the end of the last payload it is done with as
 * `tail` in the control page; the sender never places bytes past tail + size (the whole ring being
 * free from its start once the receiver is done with everything). A payload that does not fit now
 * goes over the socket as before. */
#define _GNU_SOURCE
#include "transport/transport_impl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define RING_MAGIC "SLRING1"
#define RING_CTL   4096 /* the control page before the data */

struct ring_ctl {
    char magic[8];
    uint64_t run_id;
    uint32_t src, dst;
    uint64_t size;
    uint8_t pad[32];
    _Atomic uint64_t tail; /* at byte 64: written by the receiver only */
};
_Static_assert(sizeof(struct ring_ctl) <= RING_CTL, "ring control page");
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "the ring's tail is shared between processes");

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

int sl__ring_place(sl_transport *t, struct sl__link *l, size_t len, uint64_t *pos, void **dst)
{
    struct sl__ring *r = &l->out;
    *dst = NULL;
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
    r->head = start + len;
    *pos = start;
    *dst = data(r) + start % r->size;
    return SL_OK;
}

int sl__ring_take(sl_transport *t, struct sl__link *l, uint64_t pos, uint64_t len, const void **src)
{
    struct sl__ring *r = &l->in;
    *src = NULL;
    if (!r->map)
        return sl__broke(t, l, SL_EPROTOCOL,
                         "refused a payload placed in a shared-memory ring rank %d never offered",
                         l->peer);
    if (pos < r->next || len > r->size || pos % r->size + len > r->size)
        return sl__broke(t, l, SL_EPROTOCOL,
                         "refused a payload at ring position %llu of %llu bytes (the ring holds "
                         "%zu, the next may start at %llu)",
                         (unsigned long long)pos, (unsigned long long)len, r->size,
                         (unsigned long long)r->next);
    r->next = pos + len;
    *src = data(r) + pos % r->size;
    return SL_OK;
}

void sl__ring_done(struct sl__link *l, uint64_t end)
{
    if (l->in.map && end) atomic_store_explicit(&ctl(&l->in)->tail, end, memory_order_release);
}
