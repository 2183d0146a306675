/* The report channel under a launcher admits only the run: a report without the run's id (a
 * forged "error") is dropped, a message over the size limit is refused by libzmq, and a file a
 * rank sends lands in the coordinator's directory under a name ranks write, nowhere else. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "runtime/launch/launch.h"

TestSuite(reports, .timeout = 0);

static char dir[] = "/tmp/sluice-reports-XXXXXX";

typedef struct collected {
    int n;
    char last[512];
} collected;

static int collect(void *ctx, const char *json, size_t len)
{
    collected *c = ctx;
    c->n++;
    snprintf(c->last, sizeof c->last, "%.*s", (int)len, json);
    return SL_OK;
}

static sl_launch *listen_on(char *endpoint, size_t cap, int64_t max)
{
    char host[64];
    int port;
    cr_assert_eq(sl_rendezvous_local(host, sizeof host, &port), SL_OK);
    snprintf(endpoint, cap, "tcp://127.0.0.1:%d", port);
    cr_assert_not_null(mkdtemp(dir));
    sl_launch_listen_options o = {
        .bind_endpoint = endpoint, .files_dir = dir, .max_msg = max, .run_id = 4242};
    sl_launch *l = NULL;
    cr_assert_eq(sl_launch_listen(&o, &l), SL_OK, "%s", sl_last_error());
    return l;
}

static void send_raw(const char *endpoint, const void *data, size_t len)
{
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_PUSH);
    int linger = 2000;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    cr_assert_eq(zmq_connect(s, endpoint), 0);
    cr_assert_eq(zmq_send(s, data, len, 0), (int)len);
    zmq_close(s);
    zmq_ctx_term(ctx);
}

Test(reports, forged_error_is_dropped)
{
    char ep[64];
    sl_launch *l = listen_on(ep, sizeof ep, 1 << 20);
    const char *forged = "{\"type\":\"error\",\"rank\":0,\"status\":-1,\"message\":\"forged\"}";
    send_raw(ep, forged, strlen(forged));
    const char *other_run =
        "{\"type\":\"error\",\"rank\":0,\"status\":-1,\"message\":\"x\",\"run_id\":\"1\"}";
    send_raw(ep, other_run, strlen(other_run));
    sl_reporter *r;
    cr_assert_eq(sl_reporter_open(ep, NULL, &r), SL_OK);
    cr_assert_eq(sl_reporter_send(r, "{\"type\":\"done\",\"rank\":0,\"run_id\":\"4242\"}"), SL_OK);
    collected c = {0};
    cr_assert_eq(sl_launch_wait_reports(l, 1, collect, &c), SL_OK, "%s", sl_last_error());
    cr_assert_eq(c.n, 1);
    cr_assert(strstr(c.last, "\"done\""), "%s", c.last);
    sl_reporter_close(r);
    sl_launch_destroy(l);
    sl_remove_tree(dir);
}

Test(reports, oversized_message_is_refused)
{
    char ep[64];
    sl_launch *l = listen_on(ep, sizeof ep, 4096);
    static char big[8192];
    memset(big, ' ', sizeof big);
    send_raw(ep, big, sizeof big);
    sl_reporter *r;
    cr_assert_eq(sl_reporter_open(ep, NULL, &r), SL_OK);
    cr_assert_eq(sl_reporter_send(r, "{\"type\":\"done\",\"rank\":0,\"run_id\":\"4242\"}"), SL_OK);
    collected c = {0};
    cr_assert_eq(sl_launch_wait_reports(l, 1, collect, &c), SL_OK, "%s", sl_last_error());
    cr_assert_eq(c.n, 1);
    sl_reporter_close(r);
    sl_launch_destroy(l);
    sl_remove_tree(dir);
}

/* A rank's file in its own directory (made in src), sent as `name`; returns the reporter. */
static sl_reporter *send_file_as(const char *ep, char *src, const char *name)
{
    char path[256], header[256];
    cr_assert_not_null(mkdtemp(src));
    snprintf(path, sizeof path, "%s/.weights-r1.safetensors", src);
    cr_assert_eq(sl_write_file(path, "weights!", 8, 0644), SL_OK);
    sl_reporter *r;
    cr_assert_eq(sl_reporter_open(ep, NULL, &r), SL_OK);
    snprintf(header, sizeof header,
             "{\"type\":\"file\",\"name\":\"%s\",\"rank\":1,\"run_id\":\"4242\"}", name);
    cr_assert_eq(sl_reporter_send_file(r, header, path), SL_OK, "%s", sl_last_error());
    cr_assert_neq(access(path, F_OK), 0, "the rank keeps no copy");
    return r;
}

Test(reports, files_reach_the_coordinator)
{
    char ep[64], src[] = "/tmp/sluice-rank-XXXXXX";
    sl_launch *l = listen_on(ep, sizeof ep, 1 << 20);
    sl_reporter *r = send_file_as(ep, src, ".weights-r1.safetensors");
    cr_assert_eq(sl_reporter_send(r, "{\"type\":\"done\",\"rank\":1,\"run_id\":\"4242\"}"), SL_OK);
    collected c = {0};
    cr_assert_eq(sl_launch_wait_reports(l, 1, collect, &c), SL_OK, "%s", sl_last_error());
    cr_assert_eq(c.n, 1, "the file is no report");
    char got[256], *data;
    size_t len;
    snprintf(got, sizeof got, "%s/.weights-r1.safetensors", dir);
    cr_assert_eq(sl_read_file(got, &data, &len), SL_OK, "%s", sl_last_error());
    cr_assert_eq(len, 8);
    cr_assert_eq(memcmp(data, "weights!", 8), 0);
    free(data);
    sl_reporter_close(r);
    sl_launch_destroy(l);
    sl_remove_tree(dir);
    sl_remove_tree(src);
}

/* A file named to land outside the directory, or as something ranks do not write, fails the
 * run. */
Test(reports, file_with_a_path_is_refused)
{
    char ep[64], src[] = "/tmp/sluice-rank-XXXXXX";
    sl_launch *l = listen_on(ep, sizeof ep, 1 << 20);
    sl_reporter *r = send_file_as(ep, src, ".weights-r1/../../x");
    collected c = {0};
    cr_assert_eq(sl_launch_wait_reports(l, 1, collect, &c), SL_EPROTOCOL);
    cr_assert(strstr(sl_last_error(), "not one ranks write"), "%s", sl_last_error());
    sl_reporter_close(r);
    sl_launch_destroy(l);
    sl_remove_tree(dir);
    sl_remove_tree(src);
}
