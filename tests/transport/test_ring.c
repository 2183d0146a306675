/* Shared-memory rings on ipc links (transport/ring.c): payloads of every size arrive as sent
 * whether the ring carries them or, when it is full, the socket does; through wrap-around, in
 * both directions, copied or borrowed; the ring exists only where both ends are on this host
 * (ipc) and asked for, and nothing of it is left in /dev/shm once the links are open or closed. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>

#include "helpers.h"

/* Whether this process maps a sluice ring, and whether /dev/shm still names one of its rings. */
static int mapped_rings(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    cr_assert_not_null(f);
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f)) n += strstr(line, "/dev/shm/sluice-") != NULL;
    fclose(f);
    return n;
}

static int named_rings(void)
{
    char prefix[32];
    int len = snprintf(prefix, sizeof prefix, "sluice-%d-", (int)getpid());
    DIR *d = opendir("/dev/shm");
    cr_assert_not_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += !strncmp(e->d_name, prefix, (size_t)len);
    closedir(d);
    return n;
}

static void open_pair(enum kind k, size_t ring_bytes, struct opener ops[2])
{
    char ep[2][128];
    make_endpoints(k, ep);
    memset(ops, 0, 2 * sizeof *ops);
    for (int r = 0; r < 2; r++) {
        pair_options(&ops[r].o, r, 2, ep, NULL);
        ops[r].o.ring_bytes = ring_bytes;
        ops[r].o.in_flight = 16;
        ops[r].o.max_tensor_bytes = 1 << 20;
    }
    open_all(ops, 2);
    for (int r = 0; r < 2; r++) cr_assert_eq(ops[r].status, SL_OK, "%s", ops[r].msg);
}

static void pattern(float *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) p[i] = (float)((i * 2654435761u + seed * 97u) % 10007u);
}

/* Whether p, which another thread is writing, holds want's n floats: each read once, in order
 * (memcmp may read a byte twice and, finding it changed in between, call unequal bytes equal). */
static bool holds(const volatile float *p, const float *want, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != want[i]) return false;
    return true;
}

/* Sends message i of n floats from `from` on link dir; the meta names i in its micro-batch. */
static void send_i(sl_transport *from, int dir, unsigned i, size_t n, float *buf)
{
    sl_tensor_meta m;
    int64_t shape[1] = {(int64_t)n};
    fill_meta(&m, SL_MSG_ACTIVATION, SL_DTYPE_F32, 1, shape);
    m.mb = i;
    pattern(buf, n, i);
    cr_assert_eq(sl_transport_send(from, dir, &m, buf, n * 4), SL_OK, "%s", sl_last_error());
}

/* Receives message i of n floats on `to`'s link dir, copied or (odd i) borrowed, and checks it. */
static void recv_i(sl_transport *to, int dir, unsigned i, size_t n, float *buf, float *want)
{
    sl_tensor_meta m;
    int64_t shape[1] = {(int64_t)n};
    fill_meta(&m, SL_MSG_ACTIVATION, SL_DTYPE_F32, 1, shape);
    m.mb = i;
    pattern(want, n, i);
    if (i % 2) {
        const void *p;
        size_t bytes;
        cr_assert_eq(sl_transport_recv_borrow(to, dir, &m, &p, &bytes, NULL), SL_OK, "%s",
                     sl_last_error());
        cr_assert_eq(bytes, n * 4);
        cr_assert_eq(memcmp(p, want, n * 4), 0, "message %u differs", i);
        sl_transport_release(to, dir);
    } else {
        cr_assert_eq(sl_transport_recv(to, dir, &m, buf, n * 4, NULL, NULL), SL_OK, "%s",
                     sl_last_error());
        cr_assert_eq(memcmp(buf, want, n * 4), 0, "message %u differs", i);
    }
}

/* Sizes from 4 KiB (over the socket: below zero_copy_bytes) to 200 KiB, in an order that makes
 * the payloads wrap around a 256 KiB ring at different places. */
static size_t size_of(unsigned i)
{
    return (i % 5 == 0 ? 1024 : 16384 + (size_t)(i * 7919u % 35000u));
}

Test(ring, payloads_arrive_as_sent_both_ways)
{
    struct opener ops[2];
    open_pair(K_IPC, 256 << 10, ops);
    /* Both ranks live in this process: two links each, each with its ring out and the peer's in. */
    cr_assert_eq(mapped_rings(), 8);
    cr_assert_eq(named_rings(), 0, "a ring's name stays in /dev/shm after both ends mapped it");
    float *buf = malloc(1 << 20), *want = malloc(1 << 20);
    for (unsigned i = 0; i < 200; i++) {
        /* Up to three in flight each way before they are taken, so the ring holds several. */
        send_i(ops[0].t, SL_LINK_NEXT, i, size_of(i), buf);
        send_i(ops[1].t, SL_LINK_PREV, i, size_of(i + 1), buf);
        if (i >= 2) {
            recv_i(ops[1].t, SL_LINK_PREV, i - 2, size_of(i - 2), buf, want);
            recv_i(ops[0].t, SL_LINK_NEXT, i - 2, size_of(i - 1), buf, want);
        }
    }
    for (unsigned i = 198; i < 200; i++) {
        recv_i(ops[1].t, SL_LINK_PREV, i, size_of(i), buf, want);
        recv_i(ops[0].t, SL_LINK_NEXT, i, size_of(i + 1), buf, want);
    }
    sl_transport_close(ops[0].t);
    sl_transport_close(ops[1].t);
    cr_assert_eq(mapped_rings(), 0);
    free(buf);
    free(want);
}

/* A ring with room for one payload: those sent while it is taken go over the socket, in order. */
Test(ring, a_full_ring_hands_payloads_to_the_socket)
{
    struct opener ops[2];
    open_pair(K_IPC, 160 << 10, ops);
    float *buf = malloc(1 << 20), *want = malloc(1 << 20);
    const size_t n = 25000; /* 100 KB */
    for (unsigned round = 0; round < 3; round++) {
        for (unsigned i = 0; i < 10; i++) send_i(ops[0].t, SL_LINK_NEXT, round * 10 + i, n, buf);
        for (unsigned i = 0; i < 10; i++)
            recv_i(ops[1].t, SL_LINK_PREV, round * 10 + i, n, buf, want);
    }
    sl_transport_close(ops[0].t);
    sl_transport_close(ops[1].t);
    free(buf);
    free(want);
}

/* Where payload i of n floats lies in the receiver's view of the ring (borrowed, then given back).
 */
static const void *ring_place_of(sl_transport *to, unsigned i, size_t n, float *want)
{
    sl_tensor_meta m;
    int64_t shape[1] = {(int64_t)n};
    fill_meta(&m, SL_MSG_ACTIVATION, SL_DTYPE_F32, 1, shape);
    m.mb = i;
    pattern(want, n, i);
    const void *p;
    size_t bytes;
    cr_assert_eq(sl_transport_recv_borrow(to, SL_LINK_PREV, &m, &p, &bytes, NULL), SL_OK, "%s",
                 sl_last_error());
    cr_assert_eq(memcmp(p, want, n * 4), 0, "message %u differs", i);
    sl_transport_release(to, SL_LINK_PREV);
    return p;
}

/* A payload goes back to the ring's start whenever there is room there, so a link with one or two
 * in flight keeps reusing the same (cache-warm) bytes instead of cycling through the ring. */
Test(ring, payloads_reuse_the_start_when_it_is_free)
{
    struct opener ops[2];
    open_pair(K_IPC, 1 << 20, ops);
    float *buf = malloc(1 << 20), *want = malloc(1 << 20);
    const size_t n = 25000; /* 100 KB: ten fit in the ring */
    send_i(ops[0].t, SL_LINK_NEXT, 0, n, buf);
    const void *start = ring_place_of(ops[1].t, 0, n, want);
    for (unsigned i = 1; i < 30; i++) { /* one in flight at a time: always at the start */
        send_i(ops[0].t, SL_LINK_NEXT, i, n, buf);
        cr_assert_eq(ring_place_of(ops[1].t, i, n, want), start, "payload %u", i);
    }
    /* Two in flight: the second goes after the first, and the next pair back at the start. */
    for (unsigned i = 30; i < 60; i += 2) {
        send_i(ops[0].t, SL_LINK_NEXT, i, n, buf);
        send_i(ops[0].t, SL_LINK_NEXT, i + 1, n, buf);
        cr_assert_eq(ring_place_of(ops[1].t, i, n, want), start, "payload %u", i);
        /* after the first's 256-byte slot header and payload, rounded up to 64 bytes */
        cr_assert_eq(ring_place_of(ops[1].t, i + 1, n, want),
                     (const char *)start + 256 + (n * 4 + 63) / 64 * 64, "payload %u", i + 1);
    }
    sl_transport_close(ops[0].t);
    sl_transport_close(ops[1].t);
    free(buf);
    free(want);
}

/* Sends that return before the copy into the ring (the copy thread's): a lent payload arrives as it
 * was when sent, the sender taking its buffer back once sl_transport_flush returns; an owned one is
 * freed on the copy thread once copied, also before flush returns. */
Test(ring, lent_and_owned_payloads_arrive_and_come_back)
{
    struct opener ops[2];
    open_pair(K_IPC, 1 << 20, ops);
    const size_t n = 50000; /* 200 KB: four fit in the ring */
    float *buf = malloc(n * 4), *got = malloc(n * 4), *want = malloc(n * 4);
    sl_tensor_meta m;
    int64_t shape[1] = {(int64_t)n};
    fill_meta(&m, SL_MSG_ACTIVATION, SL_DTYPE_F32, 1, shape);
    freed = 0;
    for (unsigned i = 0; i < 20; i += 2) {
        m.mb = i;
        pattern(buf, n, i);
        cr_assert_eq(sl_transport_send_lent(ops[0].t, SL_LINK_NEXT, &m, buf, n * 4), SL_OK, "%s",
                     sl_last_error());
        float *owned = malloc(n * 4);
        pattern(owned, n, i + 1);
        m.mb = i + 1;
        cr_assert_eq(
            sl_transport_send_owned(ops[0].t, SL_LINK_NEXT, &m, owned, n * 4, count_free, &freed),
            SL_OK, "%s", sl_last_error());
        sl_transport_flush(ops[0].t);
        cr_assert_eq(__atomic_load_n(&freed, __ATOMIC_SEQ_CST), (int)i / 2 + 1);
        memset(buf, 0xff, n * 4); /* ours again */
        recv_i(ops[1].t, SL_LINK_PREV, i, n, got, want);
        recv_i(ops[1].t, SL_LINK_PREV, i + 1, n, got, want);
    }
    sl_transport_close(ops[0].t);
    sl_transport_close(ops[1].t);
    free(buf);
    free(got);
    free(want);
}

/* A receive posted ahead: the copy thread fills the buffer as the message lands in the ring,
 * before the receive asks (which then finds it copied); a posted receive whose message comes over
 * the socket, or that a borrowed receive takes, still gets its message whole. */
Test(ring, a_posted_receive_is_filled_as_it_lands)
{
    struct opener ops[2];
    open_pair(K_IPC, 1 << 20, ops);
    const size_t n = 50000; /* 200 KB */
    float *post = malloc(n * 4), *buf = malloc(n * 4), *want = malloc(n * 4);
    sl_tensor_meta m;
    int64_t shape[1] = {(int64_t)n};
    fill_meta(&m, SL_MSG_ACTIVATION, SL_DTYPE_F32, 1, shape);
    for (unsigned i = 0; i < 10; i++) {
        memset(post, 0, n * 4);
        cr_assert_eq(sl_transport_recv_post(ops[1].t, SL_LINK_PREV, post, n * 4), SL_OK);
        send_i(ops[0].t, SL_LINK_NEXT, i, n, buf);
        pattern(want, n, i);
        /* No receive yet: only the copy thread can fill it (30 s for a thread to be scheduled). */
        for (double t0 = sl_now(); sl_now() - t0 < 30 && !holds(post, want, n);) sched_yield();
        cr_assert_eq(memcmp(post, want, n * 4), 0, "message %u was not copied ahead", i);
        m.mb = i;
        cr_assert_eq(sl_transport_recv(ops[1].t, SL_LINK_PREV, &m, post, n * 4, NULL, NULL), SL_OK,
                     "%s", sl_last_error());
        cr_assert_eq(memcmp(post, want, n * 4), 0);
    }
    cr_assert_eq(sl_transport_recv_post(ops[1].t, SL_LINK_PREV, post, n * 4), SL_OK);
    send_i(ops[0].t, SL_LINK_NEXT, 10, 1000, buf); /* 4 KB: over the socket */
    recv_i(ops[1].t, SL_LINK_PREV, 10, 1000, buf, want);
    cr_assert_eq(sl_transport_recv_post(ops[1].t, SL_LINK_PREV, post, n * 4), SL_OK);
    send_i(ops[0].t, SL_LINK_NEXT, 11, n, buf);
    recv_i(ops[1].t, SL_LINK_PREV, 11, n, buf, want); /* odd: borrowed */
    cr_assert_eq(sl_transport_recv_post(ops[1].t, SL_LINK_PREV, post, n * 4), SL_OK);
    sl_transport_close(ops[0].t);
    sl_transport_close(ops[1].t); /* with a receive still posted */
    free(post);
    free(buf);
    free(want);
}

/* The copy thread watches every link with a receive posted: rank 1's receive on its next link
 * waits for a message that does not come, and the one on its previous link is filled all the
 * same as its message lands. */
Test(ring, a_posted_receive_is_filled_while_the_other_link_waits)
{
    struct opener ops[2];
    open_pair(K_IPC, 1 << 20, ops);
    const size_t n = 50000;
    float *post = calloc(n, 4), *idle = calloc(n, 4), *buf = malloc(n * 4), *want = malloc(n * 4);
    cr_assert_eq(sl_transport_recv_post(ops[1].t, SL_LINK_NEXT, idle, n * 4), SL_OK);
    cr_assert_eq(sl_transport_recv_post(ops[1].t, SL_LINK_PREV, post, n * 4), SL_OK);
    send_i(ops[0].t, SL_LINK_NEXT, 0, n, buf);
    pattern(want, n, 0);
    for (double t0 = sl_now(); sl_now() - t0 < 30 && !holds(post, want, n);) sched_yield();
    cr_assert(holds(post, want, n), "the message was not copied ahead");
    recv_i(ops[1].t, SL_LINK_PREV, 0, n, buf, want);
    sl_transport_close(ops[0].t);
    sl_transport_close(ops[1].t); /* with the next link's receive still posted */
    free(post);
    free(idle);
    free(buf);
    free(want);
}

/* Only ipc links get rings, and only when asked for. */
Test(ring, none_over_tcp_or_when_not_asked)
{
    struct opener ops[2];
    open_pair(K_TCP, 256 << 10, ops);
    cr_assert_eq(mapped_rings(), 0);
    float *buf = malloc(1 << 20), *want = malloc(1 << 20);
    send_i(ops[0].t, SL_LINK_NEXT, 0, 30000, buf);
    recv_i(ops[1].t, SL_LINK_PREV, 0, 30000, buf, want);
    sl_transport_close(ops[0].t);
    sl_transport_close(ops[1].t);
    open_pair(K_IPC, 0, ops);
    cr_assert_eq(mapped_rings(), 0);
    sl_transport_close(ops[0].t);
    sl_transport_close(ops[1].t);
    free(buf);
    free(want);
}

/* A launcher sweeps the ring names a dead rank left: those of that process only. */
Test(ring, names_left_by_a_process_are_removed)
{
    char mine[64], other[64];
    int pid = 999999999; /* above any pid_max, so no process of ours */
    snprintf(mine, sizeof mine, "/sluice-%d-0-r0to1", pid);
    snprintf(other, sizeof other, "/sluice-%d1-0-r0to1", pid);
    for (int i = 0; i < 2; i++) {
        int fd = shm_open(i ? other : mine, O_RDWR | O_CREAT, 0600);
        cr_assert(fd >= 0);
        close(fd);
    }
    sl_transport_remove_rings(pid);
    int fd = shm_open(mine, O_RDONLY, 0);
    cr_assert(fd < 0, "the dead process's ring is still named");
    fd = shm_open(other, O_RDONLY, 0);
    cr_assert(fd >= 0, "another process's ring was removed");
    close(fd);
    shm_unlink(other);
}
