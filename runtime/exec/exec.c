/* The stage executor. See exec.h.
 *
 * State per local stage and micro-batch: the stage input (device), the stash of activations, the
 * output gradient (device), and host copies of what waits to be sent. Device buffers come from
 * pools that keep what a step freed for the next step, so a schedule that holds fewer micro-batches
 * at once (1F1B) also allocates fewer buffers than one that holds them all (GPipe). */
#define _GNU_SOURCE
#include "runtime/exec/exec.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/exec/exec_impl.h"
#include "runtime/safetensors/safetensors.h"

/* ------------------------------------------------------------------------------------------------
 * Reports */

/* Sends obj (taken) with this rank and the run id; with `path`, as the header of that file. */
static int report(sl__exec *e, cJSON *obj, const char *path)
{
    char id[32];
    snprintf(id, sizeof id, "%llu", (unsigned long long)e->opt->run_id);
    cJSON_AddNumberToObject(obj, "rank", e->rank);
    cJSON_AddStringToObject(obj, "run_id", id);
    char *text = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    if (!text) return sl_fail(SL_ENOMEM, "out of memory formatting a report");
    int rc = path ? sl_reporter_send_file(e->rep, text, path) : sl_reporter_send(e->rep, text);
    free(text);
    return rc;
}

int sl__exec_report(sl__exec *e, cJSON *obj)
{
    return report(e, obj, NULL);
}

static int report_done(sl__exec *e, double wall)
{
    /* The trace goes first: "done" tells a coordinator under a launcher that this rank has
     * nothing more to say. */
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "trace");
    cJSON *evs = cJSON_AddArrayToObject(o, "events");
    for (int i = 0; i < e->ntrace; i++) {
        cJSON *ev = cJSON_CreateArray();
        cJSON_AddItemToArray(ev, cJSON_CreateString(e->trace[i].name));
        cJSON_AddItemToArray(ev, cJSON_CreateNumber(1e6 * e->trace[i].t0));
        cJSON_AddItemToArray(ev, cJSON_CreateNumber(1e6 * (e->trace[i].t1 - e->trace[i].t0)));
        cJSON_AddItemToArray(evs, ev);
    }
    SL_TRY(sl__exec_report(e, o));
    o = cJSON_CreateObject();
    const sl_device_info *info = sl_device_get_info(e->dev);
    cJSON_AddStringToObject(o, "type", "done");
    cJSON_AddStringToObject(o, "device", info->id);
    cJSON_AddStringToObject(o, "device_name", info->name);
    cJSON_AddNumberToObject(o, "peak_bytes", (double)sl_device_peak_allocated(e->dev));
    cJSON_AddNumberToObject(o, "peak_stash_bytes", e->peak_held_bytes);
    cJSON_AddNumberToObject(o, "busy_s", e->busy);
    cJSON_AddNumberToObject(o, "transfer_s", e->transfer);
    /* A step's OPT with the gradients' clearing at the next step's start (the plan's OPT) */
    long steps = e->n_done[SL_ACTION_OPT];
    cJSON_AddNumberToObject(
        o, "opt_ms", steps ? 1e3 * (e->avg_s[SL_ACTION_OPT] + e->zero_s / (double)steps) : 0);
    cJSON_AddNumberToObject(o, "wall_s", wall);
    cJSON *stages = cJSON_AddArrayToObject(o, "stages");
    for (int i = 0; i < e->nls; i++) {
        sl__exec_stage *l = &e->ls[i];
        cJSON *s = cJSON_CreateObject();
        cJSON_AddNumberToObject(s, "stage", l->stage);
        cJSON_AddNumberToObject(s, "f_ms", l->nf ? 1e3 * l->f_s / (double)l->nf : 0);
        cJSON_AddNumberToObject(s, "b_ms", l->nb ? 1e3 * l->b_s / (double)l->nb : 0);
        cJSON_AddNumberToObject(s, "i_ms", l->ni ? 1e3 * l->i_s / (double)l->ni : 0);
        cJSON_AddNumberToObject(s, "w_ms", l->nw ? 1e3 * l->w_s / (double)l->nw : 0);
        cJSON_AddItemToArray(stages, s);
    }
    return sl__exec_report(e, o);
}

/* ------------------------------------------------------------------------------------------------
 * Set-up and the step loop */

/* launch.keys holds rank<i>.key and rank<i>.pub for every rank (`sluice keys -n D --out DIR`). */
static int load_keys(sl__exec *e)
{
    const char *dir = e->cfg->launch.keys ? e->cfg->launch.keys : e->opt->keys_dir;
    if (!dir)
        return sl_fail(SL_ECONFIG,
                       "launch.curve needs launch.keys: make them with `sluice keys "
                       "-n %d --out DIR` and give every rank DIR",
                       e->world);
    if (!(e->pubs = sl_alloc((size_t)e->world * sizeof *e->pubs)) ||
        !(e->allowed = sl_alloc((size_t)e->world * sizeof *e->allowed)))
        return SL_ENOMEM;
    char path[4096];
    for (int r = 0; r < e->world; r++) {
        sl_run_path(path, sizeof path, dir, SL_RUN_PUBLIC_KEY, r, 0);
        SL_TRY(sl_transport_read_key(path, e->pubs[r]));
        e->allowed[r] = e->pubs[r];
    }
    sl_run_path(path, sizeof path, dir, SL_RUN_SECRET_KEY, e->rank, 0);
    SL_TRY(sl_transport_read_key(path, e->secret));
    e->curve = (sl_transport_curve){.public_key = e->pubs[e->rank],
                                    .secret_key = e->secret,
                                    .next_public_key = e->pubs[(e->rank + 1) % e->world],
                                    .allowed_keys = e->allowed,
                                    .allowed_count = (size_t)e->world};
    return SL_OK;
}

static int setup(sl__exec *e)
{
    const sl_config *cfg = e->cfg;
    SL_TRY(sl_data_load(cfg, e->model->outputs, &e->data));
    sl_device_options dopt = {.threads = cfg->train.threads};
    SL_TRY(sl_device_open_with(e->plan->rank[e->rank].device, &dopt, &e->dev));
    e->pool.dev = e->dev;
    e->rows = (size_t)(cfg->train.batch / cfg->train.microbatches);

    /* A resumed run starts from the checkpoint's weights and optimizer state. */
    sl_checkpoint ck = {0};
    char path[4200];
    sl_safetensors optim = {0};
    sl_weights init;
    if (e->opt->resume) {
        SL_TRY(sl_checkpoint_read(e->opt->resume, &ck));
        snprintf(path, sizeof path, "%s/model.safetensors", ck.dir);
        SL_TRY(sl_weights_load(e->model, path, &init));
        snprintf(path, sizeof path, "%s/optimizer.safetensors", ck.dir);
        int rc = sl_safetensors_load(path, &optim);
        if (rc != SL_OK) {
            sl_weights_free(&init);
            return rc;
        }
        e->start_step = ck.step;
        e->start_evals = ck.evaluations;
    } else {
        SL_TRY(sl_weights_from_config(cfg, e->model, &init));
    }
    e->nls = cfg->pipeline.chunks;
    e->ls = sl_alloc((size_t)e->nls * sizeof *e->ls);
    int rc = e->ls ? SL_OK : SL_ENOMEM;
    for (int i = 0; i < e->nls && rc == SL_OK; i++) {
        sl__exec_stage *l = &e->ls[i];
        l->stage = sl_plan_stage_of(e->plan, e->rank, i);
        const sl_stage_range *r = &e->part->stages[l->stage];
        rc = sl_stage_create(e->dev, e->model, r->first, r->last, &init, &l->st);
        if (rc == SL_OK && e->opt->resume)
            rc = sl_stage_state_load(l->st, &cfg->train.optimizer, &optim, path, ck.step);
        if (rc == SL_OK && !(l->mb = sl_alloc((size_t)cfg->train.microbatches * sizeof *l->mb)))
            rc = SL_ENOMEM;
    }
    sl_weights_free(&init);
    if (e->opt->resume) sl_safetensors_free(&optim);
    SL_TRY(rc);

    size_t widest = (size_t)SL_MAX(e->model->max_width, e->model->outputs);
    size_t pos = (size_t)e->model->positions;
    if (!(e->host_x = sl_alloc(e->rows * (size_t)e->model->inputs * sizeof(float))) ||
        !(e->host_labels = sl_alloc(e->rows * pos * sizeof(int32_t))) ||
        !(e->host_targets = sl_alloc(e->rows * (size_t)e->model->outputs * sizeof(float))) ||
        !(e->host_loss = sl_alloc(e->rows * pos * sizeof(float))))
        return SL_ENOMEM;
    e->max_trace = e->opt->max_trace_events > 0 ? e->opt->max_trace_events : 5000;
    if (!(e->trace = sl_alloc((size_t)e->max_trace * sizeof *e->trace))) return SL_ENOMEM;

    if (e->world > 1) {
        sl_transport_options to;
        sl_transport_options_init(&to);
        to.run_id = e->opt->run_id;
        to.config_hash = sl_plan_hash(e->plan);
        to.rank = e->rank;
        to.world = e->world;
        to.bind_endpoint = e->opt->bind_endpoint;
        if (e->opt->bind_fd) to.bind_fd = *e->opt->bind_fd;
        to.next_endpoint = e->opt->next_endpoint;
        to.heartbeat_timeout_ms = SL_MAX(cfg->launch.heartbeat_ms * 3, 1000);
        to.heartbeat_ivl_ms = SL_MAX(cfg->launch.heartbeat_ms / 2, 100);
        to.in_flight = SL_MAX(cfg->train.microbatches * cfg->pipeline.chunks, 2);
        size_t act = e->rows * widest * sizeof(float); /* the widest activation */
        to.max_tensor_bytes = act + 4096;
        /* SYNC sends all the gradients of two stages in one message. */
        to.max_tensor_bytes = SL_MAX(to.max_tensor_bytes, sl__exec_sync_bytes(e));
        for (int i = 0; i < e->nls; i++) { /* TIED sends a whole parameter's gradient */
            int k = sl_stage_tied_param(e->ls[i].st);
            if (k >= 0)
                to.max_tensor_bytes =
                    SL_MAX(to.max_tensor_bytes,
                           e->model->params[e->ls[i].st->first_param + k].numel * sizeof(float));
        }
        /* A ring per link and direction for ipc links: room for eight micro-batches' activations,
         * within 1..64 MiB (a payload that finds no room goes over the socket). */
        if (cfg->launch.shared_memory)
            to.ring_bytes = SL_MIN(SL_MAX(8 * act, (size_t)1 << 20), (size_t)64 << 20);
        if (cfg->launch.curve) {
            SL_TRY(load_keys(e));
            to.curve = &e->curve;
        }
        SL_TRY(sl_transport_open(&to, &e->tr));
    }
    return SL_OK;
}

static void teardown(sl__exec *e)
{
    sl__exec_settle(e, NULL);
    sl_transport_close(e->tr); /* its copy thread done with every buffer posted */
    sl__exec_unpost(e);
    for (int i = 0; e->ls && i < e->nls; i++) {
        sl__exec_stage *l = &e->ls[i];
        for (int m = 0; l->mb && m < e->cfg->train.microbatches; m++) {
            sl__exec_release_mb(e, l, &l->mb[m]);
            sl__exec_pool_put(&e->pool, l->mb[m].loss);
            sl_transport_free(l->mb[m].send_f, NULL);
            sl_transport_free(l->mb[m].send_b, NULL);
            sl__exec_pool_put(&e->pool, l->mb[m].send_din);
        }
        for (int k = 0; k < l->nstash_free; k++) {
            sl_stash_free(l->stash_free[k]);
            free(l->stash_free[k]);
        }
        free(l->mb);
        sl_stage_free(l->st);
    }
    free(e->ls);
    sl__exec_pool_free(&e->pool);
    sl_device_close(e->dev);
    sl_data_free(&e->data);
    free(e->host_x);
    free(e->host_labels);
    free(e->host_targets);
    free(e->host_loss);
    free(e->trace);
    free(e->tied_host[0]);
    free(e->tied_host[1]);
    for (int i = 0; i < 3; i++) free(e->sync_host[i]);
    free(e->pubs);
    free(e->allowed);
    memset(e->secret, 0, sizeof e->secret);
}

/* With send_weights, a file this rank wrote goes to the coordinator (and is removed here). */
static int send_file(sl__exec *e, const char *path)
{
    if (!e->opt->send_weights) return SL_OK;
    cJSON *o = cJSON_CreateObject();
    const char *base = strrchr(path, '/');
    cJSON_AddStringToObject(o, "type", "file");
    cJSON_AddStringToObject(o, "name", base ? base + 1 : path);
    return report(e, o, path);
}

/* The final weights: the whole model's names, other ranks' layers zero (ignored by the merge). */
static int save_weights(sl__exec *e)
{
    char path[4096];
    sl_run_path(path, sizeof path, e->opt->weights_dir, SL_RUN_RANK_WEIGHTS, e->rank, -1);
    sl_weights w;
    SL_TRY(sl_weights_alloc(e->model, &w));
    int rc = SL_OK;
    for (int i = 0; i < e->nls && rc == SL_OK; i++) rc = sl_stage_download(e->ls[i].st, &w);
    if (rc == SL_OK) rc = sl_weights_save(e->model, &w, path);
    sl_weights_free(&w);
    return rc == SL_OK ? send_file(e, path) : rc;
}

/* A checkpoint's part of this rank: its stages' weights and optimizer state after `step` steps,
 * then the report that says so. */
static int save_checkpoint(sl__exec *e, int step)
{
    char path[4096], t[32];
    sl_run_path(path, sizeof path, e->opt->weights_dir, SL_RUN_RANK_CHECKPOINT, e->rank, step);
    sl_state_tensors st = {0};
    int rc = SL_OK;
    for (int i = 0; i < e->nls && rc == SL_OK; i++)
        if (!sl__exec_is_replica(e, &e->ls[i]))
            rc = sl_stage_state_save(e->ls[i].st, &e->cfg->train.optimizer, &st);
    snprintf(t, sizeof t, "%d", step);
    const char *k[] = {"step"}, *v[] = {t};
    if (rc == SL_OK) rc = sl_safetensors_save(path, st.t, st.n, k, v, 1);
    sl_state_tensors_free(&st);
    if (rc == SL_OK) rc = send_file(e, path);
    if (rc != SL_OK) return sl_fail_context(rc, "rank %d, checkpoint after step %d", e->rank, step);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "checkpoint");
    cJSON_AddNumberToObject(o, "step", step);
    return sl__exec_report(e, o);
}

/* Ends the run on the links in two rounds, so that no message a neighbour still needs is lost
 * when a rank leaves (libzmq drops what a closed connection still held unread):
 * 1. DONE both ways: when both neighbours' DONE arrived, everything they sent has been read.
 * 2. BYE both ways: a neighbour sends BYE only after it read our DONE, so once its BYE (or its
 *    departure) is seen, it needs nothing more from us and we may leave. A departure counts as a
 *    BYE here, which is why errors of this round are not failures. */
static int farewell(sl__exec *e)
{
    if (!e->tr) return SL_OK;
    uint8_t byte = 1;
    sl_tensor_meta m = {.type = SL_MSG_DONE,
                        .step = (uint64_t)e->cfg->train.steps,
                        .dtype = SL_DTYPE_U8,
                        .ndim = 1,
                        .shape = {1}};
    SL_TRY(sl_transport_send(e->tr, SL_LINK_NEXT, &m, &byte, 1));
    SL_TRY(sl_transport_send(e->tr, SL_LINK_PREV, &m, &byte, 1));
    SL_TRY(sl_transport_recv(e->tr, SL_LINK_NEXT, &m, &byte, 1, NULL, NULL));
    SL_TRY(sl_transport_recv(e->tr, SL_LINK_PREV, &m, &byte, 1, NULL, NULL));
    m.step++; /* BYE */
    if (sl_transport_send(e->tr, SL_LINK_NEXT, &m, &byte, 1) == SL_OK &&
        sl_transport_send(e->tr, SL_LINK_PREV, &m, &byte, 1) == SL_OK &&
        sl_transport_recv(e->tr, SL_LINK_NEXT, &m, &byte, 1, NULL, NULL) == SL_OK)
        sl_transport_recv(e->tr, SL_LINK_PREV, &m, &byte, 1, NULL, NULL);
    sl_clear_error();
    return SL_OK;
}

static int train_loop(sl__exec *e)
{
    size_t count;
    const sl_action *acts = sl_schedule_actions(e->plan->sched, e->rank, &count);
    bool last = sl__exec_has_loss(e);
    double t_start = sl_now();
    /* A test hook: SLUICE_FAIL_AT=RANK:STEP makes that rank fail at that step, so tests can
     * check that one failing rank stops the whole run cleanly; SLUICE_FAIL_AT=RANK:eval:STEP
     * makes it fail in the evaluation after that step. */
    int fail_rank = -1, fail_step = -1, fail_eval = -1, nevals = e->start_evals;
    bool stopped = false;
    const char *fail_at = getenv("SLUICE_FAIL_AT");
    if (fail_at && sscanf(fail_at, "%d:eval:%d", &fail_rank, &fail_eval) == 2)
        fail_step = -1;
    else if (fail_at && sscanf(fail_at, "%d:%d", &fail_rank, &fail_step) != 2)
        fail_rank = -1;
    for (int64_t step = e->start_step; step < e->cfg->train.steps; step++) {
        if (e->rank == fail_rank && step == fail_step)
            return sl_fail(SL_EDEVICE, "rank %d, step %lld: failure injected by SLUICE_FAIL_AT",
                           e->rank, (long long)step);
        double z0 = sl_now();
        for (int i = 0; i < e->nls; i++) SL_TRY(sl_stage_zero_grad(e->ls[i].st));
        SL_TRY(sl_device_finish(e->dev));
        e->zero_s += sl_now() - z0;
        for (size_t i = 0; i < count; i++) {
            if ((long)i == e->vote_at) SL_TRY(sl__exec_vote_read(e, step));
            SL_TRY(sl_config_diverged(e->cfg, sl__exec_run_action(e, step, &acts[i])));
        }
        if (last) {
            double loss = 0.0;
            SL_TRY(sl__exec_step_loss(e, &loss));
            int out = e->model->nlayers - 1; /* the layer whose output the loss reads */
            if (!isfinite(loss))
                return sl_config_diverged(
                    e->cfg, sl_fail(SL_ENONFINITE,
                                    "rank %d, step %lld: the loss is %s (of layer %d, %s): "
                                    "training diverged",
                                    e->rank, (long long)step, isnan(loss) ? "NaN" : "infinite", out,
                                    e->model->layers[out].kind->name));
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "type", "step");
            cJSON_AddNumberToObject(o, "step", (double)step);
            cJSON_AddNumberToObject(o, "loss", loss);
            cJSON_AddNumberToObject(o, "lr", e->lr);
            if (!isnan(e->grad_norm)) cJSON_AddNumberToObject(o, "grad_norm", e->grad_norm);
            cJSON_AddNumberToObject(o, "t", sl_now() - t_start);
            SL_TRY(sl__exec_report(e, o));
        }
        /* A text is evaluated every eval.interval steps and after the last one. */
        int done = (int)step + 1, ival = e->cfg->eval.interval;
        if (e->plan->eval_sched &&
            ((ival > 0 && done % ival == 0) || done == e->cfg->train.steps)) {
            if (e->rank == fail_rank && fail_eval == step)
                return sl_fail(SL_EDEVICE,
                               "rank %d, evaluation after step %lld: failure injected by "
                               "SLUICE_FAIL_AT",
                               e->rank, (long long)step);
            SL_TRY(sl__exec_evaluate(e, step, nevals++));
        }
        int every = e->cfg->output.checkpoint_interval;
        if (every > 0 && done % every == 0 && done < e->cfg->train.steps)
            SL_TRY(save_checkpoint(e, done));
        SL_TRY(sl__exec_stop_after(e, step, &stopped));
        if (stopped) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "type", "stop");
            cJSON_AddNumberToObject(o, "step", done);
            cJSON_AddNumberToObject(o, "signal", sl_exec_stop_requested());
            SL_TRY(sl__exec_report(e, o));
            if (every > 0 && done % every != 0) SL_TRY(save_checkpoint(e, done));
            break;
        }
    }
    double wall = sl_now() - t_start - e->eval_s;
    SL_TRY(farewell(e));
    /* A stopped run leaves its checkpoint; final weights are a whole run's. */
    if (!stopped) SL_TRY(save_weights(e));
    return report_done(e, wall);
}

int sl_exec_rank(const sl_plan *plan, const sl_exec_options *opt)
{
    sl__exec e = {.plan = plan,
                  .cfg = &plan->cfg,
                  .model = &plan->model,
                  .part = &plan->part,
                  .opt = opt,
                  .rank = opt->rank,
                  .world = plan->ranks,
                  .vote_peer = -1,
                  .vote_at = -1};
    int rc = sl_reporter_open(opt->report_endpoint, opt->report_curve, &e.rep);
    if (rc != SL_OK) return rc;
    rc = setup(&e);
    sl__exec_vote_setup(&e);
    /* The coordinator's relay of a signal (a local run: the spawn ignores SIGUSR1 until here),
     * set after the device is open, as a driver may set handlers of its own. */
    struct sigaction sa = {.sa_handler = sl_exec_request_stop}, old;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (rc == SL_OK) sigaction(SIGUSR1, &sa, &old);
    if (rc == SL_OK) rc = sl__watchdog_start(&e);
    if (rc == SL_OK) rc = train_loop(&e);
    sl__watchdog_stop(&e);
    if (rc != SL_OK) {
        char message[2048];
        snprintf(message, sizeof message, "%s",
                 sl_last_error()[0] ? sl_last_error() : sl_strerror(rc));
        if (e.tr) sl_transport_abort(e.tr, message);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", "error");
        cJSON_AddNumberToObject(o, "status", rc);
        cJSON_AddStringToObject(o, "message", message);
        char doing[256], host[256] = "";
        sl__exec_doing(&e, doing, sizeof doing);
        if (doing[0]) cJSON_AddStringToObject(o, "action", doing);
        if (gethostname(host, sizeof host) == 0) cJSON_AddStringToObject(o, "host", host);
        sl__exec_report(&e, o);
        sl_fail(rc, "%s", message);
    }
    teardown(&e);
    sl_reporter_close(e.rep);
    return rc;
}
