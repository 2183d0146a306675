/* `sluice plan`: how a config's model is cut into pipeline stages and placed on ranks and devices,
 * with parameter counts and activation sizes, without running anything. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cli/cli.h"
#include "runtime/plan/plan.h"

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: sluice plan CONFIG [--set KEY=VALUE]... [--json]\n\n"
        "Shows how the config's model is cut into pipeline stages: the layers, the model\n"
        "stages (pipeline.stages x pipeline.chunks) with their layer ranges, the rank each\n"
        "runs on (stage s on rank s mod pipeline.stages) and that rank's device, parameter\n"
        "counts, and the activation sizes of one micro-batch. Nothing is run.\n\n"
        "  --set KEY=VALUE  override a config key (value parsed as JSON, else a string),\n"
        "                   e.g. --set pipeline.stages=2 --set pipeline.schedule=gpipe\n"
        "  --json           the plan as the run directory's plan.json holds it: layers, stages,\n"
        "                   ranks with their action lists, and the effective config)\n");
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
    printf("\n%5s %4s  %-10s %-8s %10s %9s  %-10s %-10s %-10s  %s\n", "STAGE", "RANK", "DEVICE",
           "LAYERS", "PARAMS", "IN->OUT", "SENDS", "RECEIVES", "STASH", "LAYERS");
    for (int s = 0; s < p->nstages; s++) {
        char range[32], w[32], in[32], out[32], stash[32], names[512];
        int rank = sl_partition_rank(p, s), first = p->stages[s].first, last = p->stages[s].last;
        size_t stash_bytes = 0;
        for (int i = first; i < last; i++)
            stash_bytes += rows * sl_layer_stash_bytes(&m->layers[i]);
        snprintf(range, sizeof range, "%d-%d", first, last - 1);
        snprintf(w, sizeof w, "%d->%d", sl_model_width(m, first), sl_model_width(m, last));
        human((double)(rows * 4 * (size_t)sl_model_width(m, last)), out, sizeof out);
        human((double)(rows * 4 * (size_t)sl_model_width(m, first)), in, sizeof in);
        human((double)stash_bytes, stash, sizeof stash);
        layer_names(plan, first, last, names, sizeof names);
        printf("%5d %4d  %-10s %-8s %10zu %9s  %-10s %-10s %-10s  %s\n", s, rank,
               plan->rank[rank].device, range, sl_model_params(m, first, last), w,
               s + 1 < p->nstages ? out : "-", s > 0 ? in : "-", stash, names);
    }
    printf("\n(SENDS: activations sent forward per micro-batch (the same size comes back as\n"
           "gradients); RECEIVES: the stage input it keeps until backward; STASH: what the\n"
           "layers of one micro-batch keep between forward and backward.)\n");
    printf("\n%4s  %-10s %10s  %s\n", "RANK", "DEVICE", "PARAMS", "MODEL STAGES");
    for (int r = 0; r < p->ranks; r++) {
        size_t params = 0;
        char list[256] = "";
        for (int s = r; s < p->nstages; s += p->ranks) {
            params += sl_model_params(m, p->stages[s].first, p->stages[s].last);
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", list[0] ? " " : "",
                     s);
        }
        printf("%4d  %-10s %10zu  %s\n", r, plan->rank[r].device, params, list);
    }
}

int sl_cmd_plan(int argc, char **argv)
{
    if (sl_cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    const char *path = NULL;
    bool json = false;
    const char **sets = calloc((size_t)argc + 1, sizeof *sets);
    int nsets = 0;
    if (!sets) return 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            json = true;
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
    st = sl_plan_build(&cfg, &plan);
    sl_config_free(&cfg);
    if (st != SL_OK) return sl_cli_error("plan", st);
    if (json) {
        char *text = sl_plan_to_json(&plan, true);
        if (text) printf("%s\n", text);
        st = text ? SL_OK : sl_fail(SL_ENOMEM, "out of memory");
        free(text);
    } else {
        print_text(&plan);
    }
    sl_plan_free(&plan);
    return st == SL_OK ? 0 : sl_cli_error("plan", st);
}
