/* The rendezvous over real sockets admits only the run: strangers (wrong frames, another job,
 * a frame announcing 2^62 bytes) are ignored without holding rank 0 up, a rank of this launch that
 * cannot join (another config, another world, registered twice) ends it at once on every rank
 * that registered, a rank that never comes is named at the deadline, an unreachable rank 0 is
 * named by address, and with CURVE only the run's keys get in. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "tests/launch/helpers.h"
#include "transport/transport.h"

TestSuite(rendezvous_sockets, .timeout = 0);

/* A DEALER that is not a sluice rank, connected to master. */
static void *stranger(void **ctx, const char *master)
{
    char ep[80];
    snprintf(ep, sizeof ep, "tcp://%s", master);
    *ctx = zmq_ctx_new();
    void *s = zmq_socket(*ctx, ZMQ_DEALER);
    int zero = 0, timeout = 5000;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    cr_assert_eq(zmq_connect(s, ep), 0);
    return s;
}

static void close_stranger(void *ctx, void *s)
{
    zmq_close(s);
    zmq_ctx_term(ctx);
}

/* Three ranks; `before` runs once rank 0 serves and before ranks 1 and 2 join. */
static void three_ranks(void (*before)(const char *master))
{
    char master[64];
    free_master(master, sizeof master);
    served s[3];
    for (int r = 0; r < 3; r++) start(&s[r], master, r, 3, 20000);
    run(&s[0]);
    if (before) before(master);
    run(&s[1]);
    run(&s[2]);
    for (int r = 0; r < 3; r++) finish(&s[r]);
    for (int r = 0; r < 3; r++) {
        cr_assert_eq(s[r].status, SL_OK, "rank %d: %s", r, s[r].message);
        cr_assert_eq(s[r].dir.run_id, 4242);
        cr_assert_str_eq(s[r].dir.endpoints[2], "tcp://127.0.0.1:1002");
        cr_assert_str_eq(s[r].dir.report, "tcp://127.0.0.1:999");
        sl_rendezvous_free(&s[r].dir);
    }
}

Test(rendezvous_sockets, three_ranks_meet)
{
    three_ranks(NULL);
}

/* One frame without the empty delimiter: ignored, and rank 0 goes on serving. */
static void frame_without_delimiter(const char *master)
{
    void *ctx, *s = stranger(&ctx, master);
    cr_assert_eq(zmq_send(s, "{\"rank\":1}", 10, 0), 10);
    usleep(200000);
    close_stranger(ctx, s);
}

Test(rendezvous_sockets, frame_without_delimiter_does_not_hold_rank0)
{
    three_ranks(frame_without_delimiter);
}

/* A stranger that registers as rank 1 of another job is refused and gets nothing else. */
static void stranger_as_rank1(const char *master)
{
    void *ctx, *s = stranger(&ctx, master);
    sl_rdv_directory d;
    cr_assert_eq(sl_rdv_directory_init(&d, 3, HASH, "another-job"), SL_OK);
    char body[SL_RDV_REGISTER_MAX + 1];
    size_t n;
    cr_assert_eq(sl_rdv_register_encode(&d, 1, "tcp://evil:1", body, sizeof body, &n), SL_OK);
    zmq_send(s, "", 0, ZMQ_SNDMORE);
    zmq_send(s, body, n, 0);
    char empty[8], answer[4096];
    cr_assert_eq(zmq_recv(s, empty, sizeof empty, 0), 0);
    int len = zmq_recv(s, answer, sizeof answer - 1, 0);
    cr_assert_gt(len, 0);
    answer[len] = '\0';
    cr_assert(strstr(answer, "\"kind\":\"refused\""), "%s", answer);
    cr_assert(strstr(answer, "launcher job 'another-job'"), "%s", answer);
    cr_assert_null(strstr(answer, "endpoints"), "%s", answer);
    cr_assert_eq(sl_rdv_directory_decode(answer, (size_t)len, &d), SL_EPEER);
    sl_rdv_directory_free(&d);
    /* Nothing more comes to the stranger, also once the real ranks have met. */
    int timeout = 300;
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    cr_assert_lt(zmq_recv(s, answer, sizeof answer, 0), 0);
    close_stranger(ctx, s);
}

Test(rendezvous_sockets, stranger_as_rank1_gets_nothing)
{
    three_ranks(stranger_as_rank1);
}

/* A raw TCP peer that speaks ZMTP 3.0 and announces a frame of 2^62 bytes: libzmq drops it at
 * ZMQ_MAXMSGSIZE instead of trying to allocate it. */
static void huge_frame(const char *master)
{
    int port = atoi(strchr(master, ':') + 1);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = -1;
    for (int tries = 0; fd < 0 && tries < 600; tries++) { /* until rank 0 has bound its port */
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
            close(fd);
            fd = -1;
            usleep(50000);
        }
    }
    cr_assert_geq(fd, 0, "cannot connect to rank 0's rendezvous");
    unsigned char greeting[64] = {0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 0, 'N', 'U', 'L', 'L'};
    cr_assert_eq(write(fd, greeting, sizeof greeting), 64);
    unsigned char theirs[64];
    size_t got = 0;
    while (got < sizeof theirs) {
        ssize_t n = read(fd, theirs + got, sizeof theirs - got);
        cr_assert_gt(n, 0);
        got += (size_t)n;
    }
    /* READY with Socket-Type DEALER, then a long frame's header: flags 0x02, 8-byte size. */
    static const unsigned char ready[] = {0x04, 28,  5,   'R', 'E', 'A', 'D', 'Y', 11,  'S',
                                          'o',  'c', 'k', 'e', 't', '-', 'T', 'y', 'p', 'e',
                                          0,    0,   0,   6,   'D', 'E', 'A', 'L', 'E', 'R'};
    static const unsigned char frame[] = {0x02, 0x40, 0, 0, 0, 0, 0, 0, 0};
    cr_assert_eq(write(fd, ready, sizeof ready), (ssize_t)sizeof ready);
    cr_assert_eq(write(fd, frame, sizeof frame), (ssize_t)sizeof frame);
    usleep(200000);
    close(fd);
}

Test(rendezvous_sockets, frame_of_2_62_bytes_is_dropped)
{
    three_ranks(huge_frame);
}

/* A rank of this launch that cannot join ends the rendezvous at once: rank 0 fails naming it and
 * the refused rank learns why. */
static void refused_at_once(int world_of_1, uint64_t hash_of_1, const char *needle)
{
    char master[64];
    free_master(master, sizeof master);
    served s0, s1;
    start(&s0, master, 0, 3, 600000); /* the test would hang here if rank 0 waited it out */
    start(&s1, master, 1, world_of_1, 600000);
    s1.o.config_hash = hash_of_1;
    run_all((served *const[]){&s0, &s1}, 2);
    cr_assert_eq(s0.status, SL_EPROTOCOL, "%s", s0.message);
    cr_assert(strstr(s0.message, "refused a registration from 127.0.0.1"), "%s", s0.message);
    cr_assert(strstr(s0.message, needle), "'%s' lacks '%s'", s0.message, needle);
    cr_assert_eq(s1.status, SL_EPEER, "%s", s1.message);
    cr_assert(strstr(s1.message, "rank 0 refused this rank"), "%s", s1.message);
    cr_assert(strstr(s1.message, needle), "'%s' lacks '%s'", s1.message, needle);
}

Test(rendezvous_sockets, wrong_world_refused_at_once)
{
    refused_at_once(4, HASH, "a world of 4 ranks, this run has 3");
}

Test(rendezvous_sockets, other_config_refused_at_once)
{
    refused_at_once(3, HASH + 1, "config hash 78");
}

Test(rendezvous_sockets, rank_registered_twice)
{
    char master[64];
    free_master(master, sizeof master);
    served s0, a, b;
    start(&s0, master, 0, 3, 600000);
    start(&a, master, 1, 3, 600000);
    start(&b, master, 1, 3, 600000);
    run_all((served *const[]){&s0, &a, &b}, 3);
    cr_assert_eq(s0.status, SL_EPROTOCOL, "%s", s0.message);
    cr_assert(strstr(s0.message, "rank 1 registered twice"), "%s", s0.message);
    /* One was refused as the second, the other told that the rendezvous failed. */
    cr_assert_eq(a.status, SL_EPEER, "%s", a.message);
    cr_assert_eq(b.status, SL_EPEER, "%s", b.message);
    cr_assert(strstr(a.message, "registered twice") && strstr(b.message, "registered twice"),
              "%s / %s", a.message, b.message);
}

Test(rendezvous_sockets, missing_rank_named_at_the_deadline)
{
    char master[64];
    free_master(master, sizeof master);
    served s0, s1;
    start(&s0, master, 0, 3, 1500);
    start(&s1, master, 1, 3, 600000);
    run_all((served *const[]){&s0, &s1}, 2);
    cr_assert_eq(s0.status, SL_ETIMEOUT, "%s", s0.message);
    cr_assert(strstr(s0.message, "rank 2 of 3 never registered within 2 s (launch.timeout_s)"),
              "%s", s0.message);
    /* The rank that came is not left waiting. */
    cr_assert_eq(s1.status, SL_EPEER, "%s", s1.message);
    cr_assert(strstr(s1.message, "the rendezvous failed"), "%s", s1.message);
}

Test(rendezvous_sockets, unreachable_rank0_named_by_address)
{
    char master[64];
    free_master(master, sizeof master); /* nothing listens there */
    served s1;
    start(&s1, master, 1, 2, 1500);
    run(&s1);
    finish(&s1);
    cr_assert_eq(s1.status, SL_ETIMEOUT, "%s", s1.message);
    char want[128];
    snprintf(want, sizeof want, "could not reach the rendezvous at tcp://%s", master);
    cr_assert(strstr(s1.message, want), "'%s' lacks '%s'", s1.message, want);
    cr_assert(strstr(s1.message, "connection attempts failed, retried with backoff"), "%s",
              s1.message);
}

/* ------------------------------------------------------------------------------------------------
 * CURVE */

typedef struct keyring {
    char pub[3][41], sec[3][41];
    const char *allowed[3];
    sl_transport_curve curve[3];
} keyring;

static void make_keys(keyring *k)
{
    for (int r = 0; r < 3; r++) {
        cr_assert_eq(sl_transport_keypair(k->pub[r], k->sec[r]), SL_OK);
        k->allowed[r] = k->pub[r];
    }
    for (int r = 0; r < 3; r++)
        k->curve[r] = (sl_transport_curve){.public_key = k->pub[r],
                                           .secret_key = k->sec[r],
                                           .next_public_key = k->pub[0],
                                           .allowed_keys = k->allowed,
                                           .allowed_count = 3};
}

Test(rendezvous_sockets, curve_admits_the_run)
{
    keyring k;
    make_keys(&k);
    char master[64];
    free_master(master, sizeof master);
    served s[3];
    for (int r = 0; r < 3; r++) {
        start(&s[r], master, r, 3, 20000);
        s[r].o.curve = &k.curve[r];
        run(&s[r]);
    }
    for (int r = 0; r < 3; r++) finish(&s[r]);
    for (int r = 0; r < 3; r++) {
        cr_assert_eq(s[r].status, SL_OK, "rank %d: %s", r, s[r].message);
        sl_rendezvous_free(&s[r].dir);
    }
}

/* A rank whose key is not among the run's is refused at the handshake and says so at once. */
Test(rendezvous_sockets, curve_refuses_a_foreign_key)
{
    keyring k, other;
    make_keys(&k);
    make_keys(&other);
    other.curve[1].next_public_key = k.pub[0]; /* it knows rank 0's public key, not a run key */
    char master[64];
    free_master(master, sizeof master);
    served s0, s1;
    start(&s0, master, 0, 2, 1500);
    s0.o.curve = &k.curve[0];
    start(&s1, master, 1, 2, 600000);
    s1.o.curve = &other.curve[1];
    run_all((served *const[]){&s0, &s1}, 2);
    cr_assert_eq(s1.status, SL_EPEER, "%s", s1.message);
    cr_assert(strstr(s1.message, "CURVE handshake failed"), "%s", s1.message);
    cr_assert_eq(s0.status, SL_ETIMEOUT, "%s", s0.message);
    cr_assert(strstr(s0.message, "rank 1 of 2 never registered"), "%s", s0.message);
}

/* A plain rank cannot talk to a CURVE rendezvous. */
Test(rendezvous_sockets, curve_refuses_plain_text)
{
    keyring k;
    make_keys(&k);
    char master[64];
    free_master(master, sizeof master);
    served s0, s1;
    start(&s0, master, 0, 2, 1500);
    s0.o.curve = &k.curve[0];
    start(&s1, master, 1, 2, 1500);
    run_all((served *const[]){&s0, &s1}, 2);
    cr_assert_eq(s0.status, SL_ETIMEOUT, "%s", s0.message);
    cr_assert_eq(s1.status, SL_ETIMEOUT, "%s", s1.message);
}

/* ------------------------------------------------------------------------------------------------
 * Where rank 0 binds */

/* bind(2), under a name the tests' `bind` buffers do not shadow. */
static int bind_to(int fd, const struct sockaddr_in *sa)
{
    return bind(fd, (const struct sockaddr *)sa, sizeof *sa);
}

/* Whether a plain TCP connection to addr:port is accepted. */
static int accepts(const char *addr, int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, addr, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

/* Rank 0 binds the rendezvous on MASTER_ADDR's address, not on every interface: 127.0.0.2 (also
 * this host's loopback) is refused while 127.0.0.1 is served. */
static void only_on_master_addr(const char *master)
{
    int port = atoi(strchr(master, ':') + 1);
    for (int tries = 0; tries < 600 && !accepts("127.0.0.1", port); tries++) usleep(50000);
    cr_assert(accepts("127.0.0.1", port));
    cr_assert_not(accepts("127.0.0.2", port), "the rendezvous listens beyond 127.0.0.1");
}

Test(rendezvous_sockets, binds_only_where_master_addr_says)
{
    three_ranks(only_on_master_addr);
}

Test(rendezvous_sockets, bind_address)
{
    char out[64];
    cr_assert_eq(sl_launch_bind_address(NULL, "127.0.0.1", out, sizeof out), SL_OK);
    cr_assert_str_eq(out, "127.0.0.1");
    cr_assert_eq(sl_launch_bind_address(NULL, "localhost", out, sizeof out), SL_OK);
    cr_assert_str_eq(out, "127.0.0.1");
    cr_assert_eq(sl_launch_bind_address("10.1.2.3", "localhost", out, sizeof out), SL_OK);
    cr_assert_str_eq(out, "10.1.2.3");
    /* A rank's link and report sockets bind where SLUICE_HOST says. */
    char bind[128], adv[128];
    setenv("SLUICE_HOST", "127.0.0.1", 1);
    int fd;
    cr_assert_eq(sl_launch_tcp_endpoint(NULL, NULL, bind, adv, sizeof bind, &fd), SL_OK);
    cr_assert_eq(strncmp(bind, "tcp://127.0.0.1:", 16), 0, "%s", bind);
    cr_assert_str_eq(strchr(bind + 6, ':'), strchr(adv + 6, ':'));
    /* The port is held from the moment it is chosen (two ranks choosing at once once got the
     * same one, and one rank's neighbour connected to the other): nobody else binds it ... */
    cr_assert_geq(fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)atoi(strrchr(bind, ':') + 1)),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int other = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_neq(bind_to(other, &sa), 0, "another socket bound the chosen port");
    close(other);
    /* ... until a ZeroMQ socket takes the listening socket over and serves on it. */
    void *ctx = zmq_ctx_new(), *pull = zmq_socket(ctx, ZMQ_PULL), *push = zmq_socket(ctx, ZMQ_PUSH);
    cr_assert_eq(zmq_setsockopt(pull, ZMQ_USE_FD, &fd, sizeof fd), 0);
    cr_assert_eq(zmq_bind(pull, bind), 0, "%s", zmq_strerror(zmq_errno()));
    cr_assert_eq(zmq_connect(push, adv), 0);
    cr_assert_eq(zmq_send(push, "hi", 2, 0), 2);
    char got[4];
    cr_assert_eq(zmq_recv(pull, got, sizeof got, 0), 2);
    zmq_close(push);
    zmq_close(pull);
    zmq_ctx_term(ctx);
    /* An address only ZeroMQ understands (an interface's name) holds nothing: it is bound later. */
    cr_assert_eq(sl_launch_tcp_endpoint(NULL, "lo", bind, adv, sizeof bind, &fd), SL_OK);
    cr_assert_eq(fd, -1);
    cr_assert_eq(strncmp(bind, "tcp://lo:", 9), 0, "%s", bind);
    /* ... and others still reach it at the host asked for. */
    cr_assert_eq(sl_launch_tcp_endpoint("node7.example", "lo", bind, adv, sizeof bind, &fd), SL_OK);
    cr_assert_eq(strncmp(adv, "tcp://node7.example:", 20), 0, "%s", adv);
    cr_assert_eq(sl_launch_bind_address(NULL, "no-such-host.invalid", out, sizeof out), SL_ECONFIG);
    cr_assert(strstr(sl_last_error(), "cannot resolve host 'no-such-host.invalid'"), "%s",
              sl_last_error());
}
