/* A training run under an existing launcher (mpirun, srun, torchrun, or static endpoints with
 * --rank): this process is one rank; rank 0 also hosts the rendezvous and coordinates, and
 * gathers what the other ranks write (weights, checkpoints; traces come as reports) over the
 * report channel, so no filesystem needs to be shared. See train.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/exec/exec.h"
#include "runtime/launch/launch.h"
#include "runtime/train/train_impl.h"
#include "transport/transport.h"

/* Under launch.curve: this rank's key pair and every rank's public key from launch.keys, for the
 * rendezvous and the report channel (the links load theirs in the executor). */
typedef struct run_keys {
    char (*pubs)[41];
    const char **allowed;
    char secret[41];
    sl_transport_curve curve; /* next_public_key: rank 0's, the server of both channels */
} run_keys;

static int load_keys(const sl_config *cfg, int rank, int world, run_keys *k)
{
    memset(k, 0, sizeof *k);
    if (!cfg->launch.curve) return SL_OK;
    if (!cfg->launch.keys)
        return sl_fail(SL_ECONFIG,
                       "launch.curve under a launcher needs launch.keys: make them "
                       "with `sluice keys -n %d --out DIR` and give every rank DIR",
                       world);
    if (!(k->pubs = sl_alloc((size_t)world * sizeof *k->pubs)) ||
        !(k->allowed = sl_alloc((size_t)world * sizeof *k->allowed)))
        return SL_ENOMEM;
    char path[4096];
    for (int r = 0; r < world; r++) {
        sl_run_path(path, sizeof path, cfg->launch.keys, SL_RUN_PUBLIC_KEY, r, 0);
        SL_TRY(sl_transport_read_key(path, k->pubs[r]));
        k->allowed[r] = k->pubs[r];
    }
    sl_run_path(path, sizeof path, cfg->launch.keys, SL_RUN_SECRET_KEY, rank, 0);
    SL_TRY(sl_transport_read_key(path, k->secret));
    k->curve = (sl_transport_curve){.public_key = k->pubs[rank],
                                    .secret_key = k->secret,
                                    .next_public_key = k->pubs[0],
                                    .allowed_keys = k->allowed,
                                    .allowed_count = (size_t)world};
    return SL_OK;
}

static void free_keys(run_keys *k)
{
    free(k->pubs);
    free(k->allowed);
    memset(k, 0, sizeof *k);
}

/* The largest file a rank sends: its weights under the whole model's names (others' zeros), or
 * its part of a checkpoint (its parameters with up to two optimizer states each). */
static int64_t max_report_bytes(const sl_model *m)
{
    int64_t bytes = 1 << 20;
    for (int p = 0; p < m->ntensors; p++) bytes += 3 * ((int64_t)m->params[p].numel * 4 + 512);
    return bytes;
}

/* Where ranks leave weight files: output.dir when every rank may write there
 * (output.every_rank), else a private directory of this host, removed at the end. */
static int weights_dir(const sl_config *cfg, char *dir, size_t cap)
{
    if (cfg->output.every_rank) {
        snprintf(dir, cap, "%s", cfg->output.dir);
        return sl_mkdir_p(dir);
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, cap, "%s/sluice-rank-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        return sl_fail(SL_EIO, "cannot create a directory under %s: %s (set TMPDIR)",
                       tmp && *tmp ? tmp : "/tmp", strerror(errno));
    return SL_OK;
}

static void remove_weights_dir(const sl_config *cfg, const char *dir)
{
    if (cfg->output.every_rank || !dir[0]) return;
    if (sl_remove_tree(dir) != SL_OK) {
        sl_log(SL_LOG_WARN, "%s", sl_last_error());
        sl_clear_error();
    }
}

/* ------------------------------------------------------------------------------------------------
 * Rank 0: the report socket, the rendezvous, then its own stage beside the coordinator thread */

typedef struct coordinator {
    sl_launch *launch;
    sl__run *run;
    int world;
    int status;
    char message[2048];
} coordinator;

static void *coordinate(void *arg)
{
    coordinator *c = arg;
    c->status = sl_launch_wait_reports(c->launch, c->world, sl__run_on_report, c->run);
    snprintf(c->message, sizeof c->message, "%s", sl_last_error());
    return NULL;
}

typedef struct launched {
    const sl_plan *plan;
    sl_rendezvous_options ro;
    run_keys keys;
    char bind[SL_PLAN_ENDPOINT_MAX], advertise[SL_PLAN_ENDPOINT_MAX];
    int bind_fd;           /* the socket listening at `bind` that holds its port, or -1 */
    char report_host[256]; /* where rank 0's report socket is reached; "" for its host name */
    char dir[4096];        /* weights_dir */
} launched;

static int run_rank0(launched *L, const sl_train_options *opt, sl_train_summary *out)
{
    const sl_plan *plan = L->plan;
    const sl_config *cfg = &plan->cfg;
    char report_bind[300], report[300];
    int report_fd;
    SL_TRY(sl_launch_tcp_endpoint(L->report_host[0] ? L->report_host : NULL, getenv("SLUICE_BIND"),
                                  report_bind, report, sizeof report, &report_fd));
    uint64_t run_id = sl__new_run_id();
    sl__run r;
    sl_rendezvous rdv = {0};
    coordinator c = {.run = &r, .world = plan->ranks};
    int rc = sl__run_open(&r, plan, opt);
    if (rc == SL_OK) rc = weights_dir(cfg, L->dir, sizeof L->dir);
    r.weights_dir = L->dir;
    if (rc == SL_OK) rc = sl_plan_write(plan, cfg->output.dir);
    sl_launch_listen_options lo = {.bind_endpoint = report_bind,
                                   .bind_fd = report_fd >= 0 ? &report_fd : NULL,
                                   .files_dir = L->dir,
                                   .max_msg = max_report_bytes(&plan->model),
                                   .run_id = run_id,
                                   .curve = cfg->launch.curve ? &L->keys.curve : NULL};
    if (rc == SL_OK) rc = sl_launch_listen(&lo, &c.launch);
    if (rc == SL_OK) rc = sl_rendezvous_serve(&L->ro, L->advertise, report, run_id, &rdv);
    pthread_t thread;
    bool started = false;
    if (rc == SL_OK) {
        started = pthread_create(&thread, NULL, coordinate, &c) == 0;
        if (!started) rc = sl_fail(SL_ENOMEM, "cannot start the coordinator thread");
    }
    if (rc == SL_OK) {
        sl_exec_options eo = {.rank = 0,
                              .bind_endpoint = L->bind,
                              .bind_fd = L->bind_fd >= 0 ? &L->bind_fd : NULL,
                              .next_endpoint = rdv.endpoints[1 % plan->ranks],
                              .report_endpoint = report,
                              .weights_dir = L->dir,
                              .run_id = rdv.run_id,
                              .report_curve = lo.curve,
                              .resume = r.resume[0] ? r.resume : NULL};
        rc = sl_exec_rank(plan, &eo);
    }
    if (started) {
        pthread_join(thread, NULL);
        /* The first failure anywhere is the one to report. */
        if (c.status != SL_OK) rc = sl_fail(c.status, "%s", c.message);
    }
    if (rc == SL_OK) rc = sl__run_finish(&r, out);
    sl_rendezvous_free(&rdv);
    sl_launch_destroy(c.launch);
    sl__run_close(&r);
    remove_weights_dir(cfg, L->dir);
    return rc;
}

/* Ranks 1..world-1: register, then run the stage, sending weight files to rank 0. */
static int run_rank(launched *L, int rank, bool resume)
{
    const sl_config *cfg = &L->plan->cfg;
    sl_rendezvous rdv = {0};
    /* The checkpoint rank 0 goes on from, read from output.dir, which the ranks must share. */
    sl_checkpoint ck;
    bool found = false;
    int rc = weights_dir(cfg, L->dir, sizeof L->dir);
    if (rc == SL_OK && resume) rc = sl_checkpoint_newest(cfg->output.dir, &ck, &found);
    if (rc == SL_OK) rc = sl_rendezvous_join(&L->ro, L->advertise, &rdv);
    if (rc == SL_OK) {
        sl_exec_options eo = {.rank = rank,
                              .bind_endpoint = L->bind,
                              .bind_fd = L->bind_fd >= 0 ? &L->bind_fd : NULL,
                              .next_endpoint = rdv.endpoints[(rank + 1) % L->plan->ranks],
                              .report_endpoint = rdv.report,
                              .weights_dir = L->dir,
                              .run_id = rdv.run_id,
                              .send_weights = !cfg->output.every_rank,
                              .report_curve = cfg->launch.curve ? &L->keys.curve : NULL,
                              .resume = found ? ck.dir : NULL};
        rc = sl_exec_rank(L->plan, &eo);
    }
    sl_rendezvous_free(&rdv);
    remove_weights_dir(cfg, L->dir);
    return rc;
}

/* ------------------------------------------------------------------------------------------------
 * Endpoints */

/* "tcp://host:port" -> host and port; SL_ECONFIG otherwise. */
static int split_tcp(const char *ep, char *host, size_t cap, int *port)
{
    const char *h = strncmp(ep, "tcp://", 6) ? NULL : ep + 6;
    const char *colon = h ? strrchr(h, ':') : NULL;
    char *end = NULL;
    long p = colon ? strtol(colon + 1, &end, 10) : 0;
    if (!colon || colon == h || !end || *end || p < 1 || p > 65535)
        return sl_fail(SL_ECONFIG, "launch.endpoints: '%s' is not tcp://host:port", ep);
    snprintf(host, cap, "%.*s", (int)(colon - h), h);
    *port = (int)p;
    return SL_OK;
}

/* This rank's link endpoints and the rendezvous address. Static endpoints (launch.endpoints):
 * each rank binds its own on the address its host resolves to, and rank 0 hosts the rendezvous
 * on its endpoint's host, one port above it, unless MASTER_ADDR and MASTER_PORT say otherwise.
 * Otherwise a free port on this host and MASTER_ADDR:MASTER_PORT. */
static int endpoints(launched *L, const sl_launch_info *info, char *master, size_t cap)
{
    int rank = info->rank;
    const sl_config *cfg = &L->plan->cfg;
    const char *bind_env = getenv("SLUICE_BIND");
    if (!cfg->launch.nendpoints) {
        SL_TRY(sl_launch_tcp_endpoint(NULL, bind_env, L->bind, L->advertise, sizeof L->bind,
                                      &L->bind_fd));
        return sl_rendezvous_master(info, master, cap);
    }
    char host[200], addr[200], host0[200];
    int port, port0;
    SL_TRY(split_tcp(cfg->launch.endpoints[rank], host, sizeof host, &port));
    SL_TRY(split_tcp(cfg->launch.endpoints[0], host0, sizeof host0, &port0));
    SL_TRY(sl_launch_bind_address(bind_env, host, addr, sizeof addr));
    snprintf(L->bind, sizeof L->bind, "tcp://%s:%d", addr, port);
    snprintf(L->advertise, sizeof L->advertise, "%s", cfg->launch.endpoints[rank]);
    snprintf(L->report_host, sizeof L->report_host, "%s", host0);
    if (getenv("MASTER_ADDR") || getenv("MASTER_PORT"))
        return sl_rendezvous_master(info, master, cap);
    snprintf(master, cap, "%s:%d", host0, port0 + 1);
    return SL_OK;
}

/* Under a launcher every rank gets the job's SIGINT or SIGTERM itself (srun and mpirun pass them
 * on): the first stops the ranks after the current step, together (sl_exec_request_stop); a
 * second ends this rank at once. */
static void on_signal(int sig)
{
    if (sl_exec_request_stop_again(sig)) _exit(128 + sig);
}

int sl_train_launched(const sl_config *cfg, const sl_launch_info *info, const sl_train_options *opt,
                      sl_train_summary *out)
{
    int world = cfg->pipeline.stages, rank = info->rank;
    if (info->world != world)
        return sl_fail(SL_ECONFIG,
                       "%s started %d ranks but pipeline.stages is %d: start one rank "
                       "per pipeline stage",
                       sl_launcher_name(info->launcher), info->world, world);
    /* Every rank builds its own plan here: a "time" cut profiled on each host could differ from
     * rank to rank, so it has to come resolved. */
    if (!strcmp(cfg->pipeline.partition, "time") && !cfg->pipeline.npartition)
        return sl_fail(SL_ECONFIG,
                       "pipeline.partition \"time\" under %s: profile once with `sluice plan "
                       "CONFIG --json` and give every rank its counts as "
                       "pipeline.partition_counts",
                       sl_launcher_name(info->launcher));
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sl_plan plan;
    SL_TRY(sl_plan_build(cfg, &plan));
    launched L = {.plan = &plan, .bind_fd = -1};
    char master[300];
    int rc = endpoints(&L, info, master, sizeof master);
    if (rc == SL_OK) rc = load_keys(&plan.cfg, rank, world, &L.keys);
    L.ro = (sl_rendezvous_options){.master = master,
                                   .bind = getenv("SLUICE_BIND"),
                                   .rank = rank,
                                   .world = world,
                                   .config_hash = sl_plan_hash(&plan),
                                   .job = info->job,
                                   .timeout_ms = plan.cfg.launch.timeout_s * 1000,
                                   .curve = plan.cfg.launch.curve ? &L.keys.curve : NULL};
    if (rc == SL_OK) rc = rank == 0 ? run_rank0(&L, opt, out) : run_rank(&L, rank, opt->resume);
    free_keys(&L.keys);
    sl_plan_free(&plan);
    return rc;
}
