/* The coordinator of a training run: builds the plan once, starts or joins the ranks, and
 * follows them (run.c). See train.h. */
#define _GNU_SOURCE
#include "runtime/train/train.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "runtime/exec/exec.h"
#include "runtime/launch/launch.h"
#include "runtime/train/train_impl.h"
#include "transport/transport.h"

uint64_t sl__new_run_id(void)
{
    uint64_t id = 0;
    if (getrandom(&id, sizeof id, 0) != sizeof id) id = (uint64_t)(sl_now() * 1e9);
    return id;
}

/* ------------------------------------------------------------------------------------------------
 * A local run: one process per rank on this host */

/* A local run with CURVE and no keys of its own: one key pair per rank, private to the run
 * directory, where the ranks look for them (sl_exec_options.keys_dir). */
static int make_keys(const sl_plan *p, const char *dir)
{
    for (int r = 0; r < p->ranks; r++) {
        char pub[41], secret[4096], public[4096];
        sl_run_path(secret, sizeof secret, dir, SL_RUN_SECRET_KEY, r, 0);
        sl_run_path(public, sizeof public, dir, SL_RUN_PUBLIC_KEY, r, 0);
        SL_TRY(sl_transport_write_keypair(secret, public, pub));
    }
    return SL_OK;
}

/* Writes the plan (with the ranks' endpoints) into the run directory and starts the ranks. */
static int start_ranks(sl_plan *p, const sl_train_options *opt, sl_launch *l, uint64_t run_id,
                       const char *resume)
{
    const char *dir = sl_launch_dir(l);
    if (p->cfg.launch.curve && !p->cfg.launch.keys) SL_TRY(make_keys(p, dir));
    char(*endpoints)[SL_PLAN_ENDPOINT_MAX] = sl_alloc(sizeof *endpoints * (size_t)p->ranks);
    const char **list = sl_alloc(sizeof *list * (size_t)p->ranks);
    int rc = endpoints && list ? SL_OK : SL_ENOMEM;
    for (int r = 0; rc == SL_OK && r < p->ranks; r++) {
        sl_launch_local_endpoint(l, r, endpoints[r], sizeof endpoints[r]);
        list[r] = endpoints[r];
    }
    if (rc == SL_OK) sl_plan_set_endpoints(p, list);
    free(endpoints);
    free(list);
    SL_TRY(rc);
    SL_TRY(sl_plan_write(p, dir));
    char exe[1024];
    if (opt->exe) {
        snprintf(exe, sizeof exe, "%s", opt->exe);
    } else {
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n < 0) return sl_fail(SL_EIO, "cannot find this executable: %s", strerror(errno));
        exe[n] = '\0';
    }
    char id[32];
    snprintf(id, sizeof id, "%" PRIu64, run_id);
    for (int r = 0; r < p->ranks; r++) {
        char rank[16];
        snprintf(rank, sizeof rank, "%d", r);
        char *argv[] = {
            exe,        "train", "--rank",        rank,           "--run-dir", (char *)dir,
            "--run-id", id,      "--resume-from", (char *)resume, NULL};
        if (!resume[0]) argv[8] = NULL;
        SL_TRY(sl_launch_spawn(l, r, argv));
    }
    return SL_OK;
}

int sl_train(const sl_config *cfg, const sl_train_options *opt, sl_train_summary *out)
{
    sl_plan plan;
    SL_TRY(sl_plan_build(cfg, &plan));
    if (plan.note[0] && opt->progress) fprintf(stderr, "sluice train: %s\n", plan.note);
    sl__run r;
    sl_launch *l = NULL;
    int rc = sl__run_open(&r, &plan, opt);
    if (rc == SL_OK) rc = sl_launch_create(opt->keep_run_dir, &l);
    uint64_t run_id = sl__new_run_id();
    if (rc == SL_OK) r.weights_dir = sl_launch_dir(l);
    if (rc == SL_OK) sl_launch_expect_run(l, run_id);
    if (rc == SL_OK) rc = start_ranks(&plan, opt, l, run_id, r.resume);
    if (rc == SL_OK) rc = sl_plan_write(&plan, cfg->output.dir);
    if (rc == SL_OK) rc = sl_launch_wait(l, sl__run_on_report, &r);
    if (rc == SL_OK) rc = sl__run_finish(&r, out);
    sl_launch_destroy(l);
    sl__run_close(&r);
    sl_plan_free(&plan);
    return rc;
}

int sl_train_rank(const char *run_dir, int rank, unsigned long long run_id, const char *resume)
{
    sl_plan plan;
    SL_TRY(sl_plan_load(run_dir, &plan));
    int rc = SL_OK;
    if (rank < 0 || rank >= plan.ranks)
        rc = sl_fail(SL_EINVAL, "rank %d outside a pipeline of %d ranks", rank, plan.ranks);
    sl_exec_options opt = {.rank = rank,
                           .report_endpoint = getenv("SLUICE_REPORT"),
                           .weights_dir = run_dir,
                           .keys_dir = run_dir,
                           .run_id = run_id,
                           .resume = resume};
    if (rc == SL_OK) {
        opt.bind_endpoint = plan.rank[rank].bind;
        opt.next_endpoint = plan.rank[rank].next;
        rc = sl_exec_rank(&plan, &opt);
    }
    sl_plan_free(&plan);
    return rc;
}
