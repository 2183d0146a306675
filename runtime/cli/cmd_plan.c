/* `sluice plan`: how a config's model is cut into pipeline stages and placed on ranks and devices,
 * with parameter counts and activation sizes, without running anything. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

#include "runtime/cli/cli.h"
#include "runtime/plan/plan.h"

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: sluice plan CONFIG [--set KEY=VALUE]... [--profile | --no-profile] [--json]\n\n"
        "Shows how the config's model is cut into pipeline stages: the layers, the model\n"
        "stages (pipeline.stages x pipeline.chunks) with their layer ranges, the rank each\n"
        "runs on (stage s on rank s mod pipeline.stages; zb-v and dualpipev fold a V) and\n"
        "that rank's device, parameter counts, and the activation sizes of one micro-batch.\n"
        "With the layers' profile on each rank's device (measured once at the run's\n"
        "micro-batch size and cached per device and model shape), also each stage's\n"
        "predicted forward (F), input-gradient (I) and weight-gradient (W) time, each rank's\n"
        "optimizer step (OPT) and predicted peak memory, and the schedule's predicted step\n"
        "time and bubble ratio beside the uniform cut's. The profile times each pass after\n"
        "other data went through the caches, as in a run. In a local run the ranks on\n"
        "this host's CPU devices share its cores, time-sliced by the threads each computes\n"
        "with. pipeline.partition \"time\" takes the cut with the least predicted step.\n"
        "No training is run.\n\n"
        "  --set KEY=VALUE  override a config key (value parsed as JSON, else a string),\n"
        "                   e.g. --set pipeline.stages=2 --set pipeline.schedule=gpipe\n"
        "  --profile        measure the layers again (refresh the cache)\n"
        "  --no-profile     no predictions (nothing runs on a device; not with \"time\")\n"
        "  --json           the plan as the run directory's plan.json holds it (layers, stages,\n"
        "                   ranks with their action lists, the effective config), with\n"
        "                   \"prediction\" beside it\n");
}

static void layer_names(const sl_plan *p, int first, int last, char *buf, size_t cap)
{
    buf[0] = '\0';
    for (int i = first; i < last; i++)
        snprintf(buf + strlen(buf), cap - strlen(buf), "%s%s", i > first ? " " : "",
                 p->cfg.model.layers[i]);
}

static void human(double bytes, char *buf, size_t cap)
{
    const char *unit[] = {"B", "KiB", "MiB", "GiB"};
    int u = 0;
    while (bytes >= 1024 && u < 3) {
        bytes /= 1024;
        u++;
    }
    snprintf(buf, cap, u ? "%.1f %s" : "%.0f %s", bytes, unit[u]);
}

static void print_text(const sl_plan *plan)
{
    const sl_config *cfg = &plan->cfg;
    const sl_model *m = &plan->model;
    const sl_partition *p = &plan->part;
    size_t rows = plan->rows;
    printf("model: %d inputs -> %d outputs, %d layers, %zu parameters, loss %s\n", m->inputs,
           m->outputs, m->nlayers, m->nparams, sl_loss_get(m->loss)->name);
    if (cfg->model.has_gpt) {
        /* nanoGPT's get_num_params: the position embeddings left out, the tied matrix once */
        int wpe = sl_model_find_param(m, "transformer.wpe.weight");
        size_t n = m->nparams - (wpe >= 0 ? m->params[wpe].numel : 0);
        printf("GPT: %d layers of %d heads, n_embd %d, block_size %d, vocab %d%s; %.2fM "
               "parameters as nanoGPT counts them (without position embeddings)\n",
               cfg->model.gpt.n_layer, cfg->model.gpt.n_head, cfg->model.gpt.n_embd,
               cfg->model.gpt.block_size, cfg->model.gpt.vocab_size,
               cfg->model.gpt.tie_embeddings ? ", lm_head tied to wte" : "", (double)n / 1e6);
    }
    printf("\n%5s  %-12s %7s %7s %10s\n", "LAYER", "KIND", "IN", "OUT", "PARAMS");
    for (int i = 0; i < m->nlayers; i++)
        printf("%5d  %-12s %7d %7d %10zu\n", i, cfg->model.layers[i], m->layers[i].in,
               m->layers[i].out, sl_model_params(m, i, i + 1));
    printf("\npipeline: %d rank%s x %d chunk%s = %d model stages (%s partition), schedule %s,\n"
           "          %d micro-batches of %zu rows per step\n",
           p->ranks, p->ranks == 1 ? "" : "s", p->chunks, p->chunks == 1 ? "" : "s", p->nstages,
           cfg->pipeline.partition, cfg->pipeline.schedule, cfg->train.microbatches, rows);
    if (p->chains > 1)
        printf("          two replicas of the model cut into %d stages (stages %d-%d run the\n"
               "          same layers as 0-%d, in the other direction), their gradients summed\n"
               "          before each optimizer step\n",
               p->ranks, p->ranks, p->nstages - 1, p->ranks - 1);
    printf("\n%5s %4s  %-10s %-8s %10s %9s  %-10s %-10s %-10s  %s\n", "STAGE", "RANK", "DEVICE",
           "LAYERS", "PARAMS", "IN->OUT", "SENDS", "RECEIVES", "STASH", "LAYERS");
    for (int s = 0; s < p->nstages; s++) {
        char range[32], w[32], in[32], out[32], stash[32], names[512];
        int rank = sl_partition_rank(p, s), first = p->stages[s].first, last = p->stages[s].last;
        snprintf(range, sizeof range, "%d-%d", first, last - 1);
        snprintf(w, sizeof w, "%d->%d", sl_model_width(m, first), sl_model_width(m, last));
        human((double)(rows * 4 * (size_t)sl_model_width(m, last)), out, sizeof out);
        human((double)sl_plan_input_bytes(plan, s), in, sizeof in);
        human((double)sl_plan_stash_bytes(plan, s), stash, sizeof stash);
        layer_names(plan, first, last, names, sizeof names);
        printf("%5d %4d  %-10s %-8s %10zu %9s  %-10s %-10s %-10s  %s\n", s, rank,
               plan->rank[rank].device, range, sl_model_params(m, first, last), w,
               sl_partition_is_last(p, s) ? "-" : out, sl_partition_is_first(p, s) ? "-" : in,
               stash, names);
    }
    printf("\n(SENDS: activations sent forward per micro-batch (the same size comes back as\n"
           "gradients); RECEIVES: the stage input it keeps until backward; STASH: what the\n"
           "layers of one micro-batch keep between forward and backward.)\n");
    printf("\n%4s  %-10s %10s  %s\n", "RANK", "DEVICE", "PARAMS", "MODEL STAGES");
    for (int r = 0; r < p->ranks; r++) {
        size_t params = 0;
        char list[256] = "";
        for (int s = 0; s < p->nstages; s++) {
            if (sl_partition_rank(p, s) != r) continue; /* loop or V placement */
            params += sl_model_params(m, p->stages[s].first, p->stages[s].last);
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", list[0] ? " " : "",
                     s);
        }
        printf("%4d  %-10s %10zu  %s\n", r, plan->rank[r].device, params, list);
    }
}

/* The prediction for the plan's cut and for the uniform one, from the ranks' profiles. */
typedef struct predictions {
    sl_plan_prediction plan, uniform;
    int *uniform_counts; /* [ncounts]: per stage of one chain (chimera's replicas share a cut) */
    int ncounts;
} predictions;

static int predict_both(const sl_plan *plan, const sl_profile *profiles, predictions *out)
{
    memset(out, 0, sizeof *out);
    int S = plan->part.nstages;
    sl_stage_range *st = sl_alloc(sizeof *st * (size_t)S);
    out->uniform_counts = sl_alloc(sizeof(int) * (size_t)S);
    int rc = st && out->uniform_counts ? SL_OK : SL_ENOMEM;
    if (rc == SL_OK) rc = sl_plan_predict(plan, profiles, NULL, &out->plan);
    if (rc == SL_OK) rc = sl_partition_cut(&plan->model, &plan->part, NULL, st);
    if (rc == SL_OK) rc = sl_plan_predict(plan, profiles, st, &out->uniform);
    out->ncounts = sl_partition_chain_stages(&plan->part);
    for (int s = 0; rc == SL_OK && s < out->ncounts; s++) {
        out->uniform_counts[s] = 0;
        for (int i = st[s].first; i < st[s].last; i++)
            out->uniform_counts[s] += sl_layer_has_params(&plan->model.layers[i]);
    }
    free(st);
    return rc;
}

static void predictions_free(predictions *p)
{
    sl_plan_prediction_free(&p->plan);
    sl_plan_prediction_free(&p->uniform);
    free(p->uniform_counts);
}

static void print_prediction(const sl_plan *plan, const sl_profile *profiles, const predictions *pr)
{
    const sl_plan_prediction *p = &pr->plan;
    printf("\npredicted per micro-batch of %zu rows, from the layers' profile on each device:\n",
           plan->rows);
    for (int r = 0; r < plan->ranks; r++) {
        bool seen = false;
        for (int q = 0; q < r && !seen; q++)
            seen = !strcmp(plan->rank[q].device, plan->rank[r].device);
        if (!seen)
            printf("  %s: %s\n", plan->rank[r].device,
                   profiles[r].cached ? "from the cache" : "measured now (cached)");
    }
    printf("\n%5s %4s  %-10s %9s %9s %9s %10s\n", "STAGE", "RANK", "DEVICE", "F", "I", "W",
           "SENDS");
    for (int s = 0; s < p->nstages; s++) {
        char sends[32];
        human(p->send_bytes[s], sends, sizeof sends);
        int rank = sl_partition_rank(&plan->part, s);
        printf("%5d %4d  %-10s %7.3fms %7.3fms %7.3fms %10s\n", s, rank, plan->rank[rank].device,
               p->f[s], p->i[s], p->w[s], p->send_bytes[s] > 0 ? sends : "-");
    }
    printf("\n%4s  %-10s %9s %12s %12s\n", "RANK", "DEVICE", "OPT", "PEAK MEMORY", "DEVICE HAS");
    for (int r = 0; r < plan->ranks; r++) {
        char peak[32], has[32];
        human(p->peak_bytes[r], peak, sizeof peak);
        human(p->memory_bytes[r], has, sizeof has);
        printf("%4d  %-10s %7.3fms %12s %12s%s\n", r, plan->rank[r].device, p->opt[r], peak,
               p->memory_bytes[r] > 0 ? has : "?",
               p->memory_bytes[r] > 0 && p->peak_bytes[r] > p->memory_bytes[r] ? "  DOES NOT FIT"
                                                                               : "");
    }
    printf("(OPT: the rank's update, gradient norm and gradient clearing, once a step.)\n");
    if (p->cores) {
        printf("(the ranks on this host's CPU share its %d cores, threads per rank:", p->cores);
        for (int r = 0; r < plan->ranks; r++) printf("%s %d", r ? "," : "", p->threads[r]);
        printf(";\nwhile more threads than cores compute, each runs at cores / threads of its "
               "profiled speed;\nits sends and receives, which then wait for a core too, are "
               "predicted at the links' cost alone.)\n");
    }
    printf("\npredicted step: %.2f ms, bubble ratio %.4f (%s partition)\n", p->step_ms, p->bubble,
           plan->cfg.pipeline.partition);
    printf("uniform cut [");
    for (int s = 0; s < pr->ncounts; s++) printf("%s%d", s ? "," : "", pr->uniform_counts[s]);
    printf("]: %.2f ms, bubble ratio %.4f (this plan: %.3fx its step)\n", pr->uniform.step_ms,
           pr->uniform.bubble, p->step_ms / pr->uniform.step_ms);
}

static cJSON *prediction_json(const sl_plan *plan, const sl_profile *profiles,
                              const predictions *pr)
{
    const sl_plan_prediction *p = &pr->plan;
    cJSON *o = cJSON_CreateObject();
    cJSON *devs = cJSON_AddArrayToObject(o, "profiles");
    for (int r = 0; r < plan->ranks; r++) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddNumberToObject(d, "rank", r);
        cJSON_AddStringToObject(d, "device", plan->rank[r].device);
        cJSON_AddBoolToObject(d, "cached", profiles[r].cached);
        cJSON_AddItemToArray(devs, d);
    }
    cJSON *stages = cJSON_AddArrayToObject(o, "stages");
    for (int s = 0; s < p->nstages; s++) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "stage", s);
        cJSON_AddNumberToObject(x, "rank", sl_partition_rank(&plan->part, s));
        cJSON_AddNumberToObject(x, "params", p->params[s]);
        cJSON_AddNumberToObject(x, "f_ms", p->f[s]);
        cJSON_AddNumberToObject(x, "i_ms", p->i[s]);
        cJSON_AddNumberToObject(x, "w_ms", p->w[s]);
        cJSON_AddNumberToObject(x, "send_bytes", p->send_bytes[s]);
        cJSON_AddItemToArray(stages, x);
    }
    cJSON *ranks = cJSON_AddArrayToObject(o, "ranks");
    for (int r = 0; r < plan->ranks; r++) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "rank", r);
        cJSON_AddNumberToObject(x, "opt_ms", p->opt[r]);
        cJSON_AddNumberToObject(x, "peak_bytes", p->peak_bytes[r]);
        cJSON_AddNumberToObject(x, "memory_bytes", p->memory_bytes[r]);
        cJSON_AddNumberToObject(x, "threads", p->threads[r]);
        cJSON_AddItemToArray(ranks, x);
    }
    cJSON_AddNumberToObject(o, "step_ms", p->step_ms);
    cJSON_AddNumberToObject(o, "bubble_ratio", p->bubble);
    cJSON_AddNumberToObject(o, "shared_cores", p->cores);
    cJSON *u = cJSON_AddObjectToObject(o, "uniform");
    cJSON_AddItemToObject(u, "counts", cJSON_CreateIntArray(pr->uniform_counts, pr->ncounts));
    cJSON_AddNumberToObject(u, "step_ms", pr->uniform.step_ms);
    cJSON_AddNumberToObject(u, "bubble_ratio", pr->uniform.bubble);
    return o;
}

/* Prints the plan (text or JSON) with its predictions when there are profiles. */
static int print_plan(const sl_plan *plan, const sl_profile *profiles, bool json)
{
    predictions pr = {0};
    int rc = profiles ? predict_both(plan, profiles, &pr) : SL_OK;
    if (rc == SL_OK && json) {
        char *text = sl_plan_to_json(plan, false);
        cJSON *root = text ? cJSON_Parse(text) : NULL;
        free(text);
        if (root && profiles)
            cJSON_AddItemToObject(root, "prediction", prediction_json(plan, profiles, &pr));
        char *out = root ? cJSON_Print(root) : NULL;
        cJSON_Delete(root);
        if (out) printf("%s\n", out);
        rc = out ? SL_OK : sl_fail(SL_ENOMEM, "out of memory");
        free(out);
    } else if (rc == SL_OK) {
        print_text(plan);
        if (profiles) print_prediction(plan, profiles, &pr);
    }
    predictions_free(&pr);
    return rc;
}

int sl_cmd_plan(int argc, char **argv)
{
    if (sl_cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    const char *path = NULL;
    bool json = false, refresh = false, no_profile = false;
    const char **sets = calloc((size_t)argc + 1, sizeof *sets);
    int nsets = 0;
    if (!sets) return 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            json = true;
        } else if (!strcmp(argv[i], "--profile")) {
            refresh = true;
        } else if (!strcmp(argv[i], "--no-profile")) {
            no_profile = true;
        } else if (!strcmp(argv[i], "--set") && i + 1 < argc) {
            sets[nsets++] = argv[++i];
        } else if (!strncmp(argv[i], "--set=", 6)) {
            sets[nsets++] = argv[i] + 6;
        } else if (argv[i][0] == '-' || path) {
            fprintf(stderr, "sluice plan: unexpected argument '%s' (try --help)\n", argv[i]);
            free(sets);
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        usage(stderr);
        free(sets);
        return 2;
    }
    sl_config cfg;
    sl_plan plan;
    int st = sl_config_load(path, sets, nsets, &cfg);
    free(sets);
    if (st != SL_OK) return sl_cli_error("plan", st);
    if (refresh && no_profile) {
        sl_config_free(&cfg);
        fprintf(stderr, "sluice plan: --profile and --no-profile exclude each other\n");
        return 2;
    }
    if (no_profile && !strcmp(cfg.pipeline.partition, "time") && !cfg.pipeline.npartition) {
        sl_config_free(&cfg);
        sl_fail(SL_ECONFIG, "pipeline.partition \"time\" needs the profile: drop --no-profile");
        return sl_cli_error("plan", SL_ECONFIG);
    }
    /* --profile measures while the plan is built, so that a "time" cut uses the new figures. */
    bool timed = !strcmp(cfg.pipeline.partition, "time") && !cfg.pipeline.npartition;
    st = sl_plan_build_with(&cfg, refresh, &plan);
    sl_config_free(&cfg);
    if (st != SL_OK) return sl_cli_error("plan", st);
    if (plan.note[0]) fprintf(stderr, "sluice plan: %s\n", plan.note);
    /* A plan that cannot fit is printed without profiling its layers (they may not fit either),
     * then refused. */
    char unfit[1024] = "";
    int fits = sl_plan_check_memory(&plan);
    if (fits != SL_OK) snprintf(unfit, sizeof unfit, "%s", sl_last_error());
    sl_profile *profiles = NULL;
    char note[1024] = "";
    if (!no_profile && fits == SL_OK)
        st = sl_plan_profiles(&plan, refresh && !timed, &profiles, note, sizeof note);
    if (note[0]) fprintf(stderr, "sluice plan: %s\n", note);
    if (st == SL_OK) st = print_plan(&plan, profiles, json);
    if (st == SL_OK && fits != SL_OK) st = sl_fail(fits, "%s", unfit);
    sl_plan_profiles_free(&plan, profiles);
    sl_plan_free(&plan);
    return st == SL_OK ? 0 : sl_cli_error("plan", st);
}
