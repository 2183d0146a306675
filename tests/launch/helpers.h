/* Shared by the launch suites: a rendezvous served on a thread, ranks joining on threads, raw
 * ZeroMQ peers that are not sluice ranks. */
#ifndef SL_TESTS_LAUNCH_HELPERS_H
#define SL_TESTS_LAUNCH_HELPERS_H

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "runtime/launch/launch.h"

#define HASH 77ull
#define JOB  "job-1"

typedef struct served {
    sl_rendezvous_options o;
    sl_rendezvous dir;
    int status;
    char message[2048];
    pthread_t thread;
} served;

static void *serve_main(void *arg)
{
    served *s = arg;
    s->status =
        sl_rendezvous_serve(&s->o, "tcp://127.0.0.1:1000", "tcp://127.0.0.1:999", 4242, &s->dir);
    snprintf(s->message, sizeof s->message, "%s", sl_last_error());
    return NULL;
}

static void *join_main(void *arg)
{
    served *s = arg;
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", 1000 + s->o.rank);
    s->status = sl_rendezvous_join(&s->o, ep, &s->dir);
    snprintf(s->message, sizeof s->message, "%s", sl_last_error());
    return NULL;
}

/* A free port on 127.0.0.1 as "127.0.0.1:PORT" in master. */
static void free_master(char *master, size_t cap)
{
    char host[64];
    int port;
    cr_assert_eq(sl_rendezvous_local(host, sizeof host, &port), SL_OK);
    snprintf(master, cap, "127.0.0.1:%d", port);
}

static void start(served *s, const char *master, int rank, int world, int timeout_ms)
{
    memset(s, 0, sizeof *s);
    s->o = (sl_rendezvous_options){.master = master,
                                   .rank = rank,
                                   .world = world,
                                   .config_hash = HASH,
                                   .job = JOB,
                                   .timeout_ms = timeout_ms};
}

static void run(served *s)
{
    cr_assert_eq(pthread_create(&s->thread, NULL, s->o.rank == 0 ? serve_main : join_main, s), 0);
}

static void finish(served *s)
{
    pthread_join(s->thread, NULL);
}

/* Runs ranks s[0..n) (each set up by start) at once and waits for them all. */
static void run_all(served *const *s, int n)
{
    for (int i = 0; i < n; i++) run(s[i]);
    for (int i = 0; i < n; i++) finish(s[i]);
}

#endif
