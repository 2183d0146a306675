/* `sluice plan`: how a config's model is cut into pipeline stages and placed on ranks and devices,
 * with parameter counts and activation sizes, without running anything. */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cli/cli.h"
#include "runtime/config/config.h"
#include "runtime/model/model.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sluice plan CONFIG [--set KEY=VALUE]... [--json]\n\n"
            "Shows how the config's model is cut into pipeline stages: the layers, the model\n"
            "stages (pipeline.stages x pipeline.chunks) with their layer ranges, the rank each\n"
            "runs on (stage s on rank s mod pipeline.stages) and that rank's device, parameter\n"
            "counts, and the activation sizes of one micro-batch. Nothing is run.\n\n"
            "  --set KEY=VALUE  override a config key (value parsed as JSON, else a string),\n"
            "                   e.g. --set pipeline.stages=2 --set pipeline.schedule=gpipe\n"
            "  --json           one JSON object, for tools (with the effective config and its\n"
            "                   hash, which every rank checks when the pipeline connects)\n");
}

/* Per model stage: what one micro-batch moves and keeps. */
typedef struct stage_info {
    int in_width, out_width;
    size_t params;
    size_t in_bytes, out_bytes, stash_bytes;
} stage_info;

static void layer_names(const sl_config *cfg, int first, int last, char *buf, size_t cap)
{
    buf[0] = '\0';
    for (int i = first; i < last; i++)
        snprintf(buf + strlen(buf), cap - strlen(buf), "%s%s", i > first ? " " : "",
                 cfg->model.layers[i]);
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

static void print_json(const sl_config *cfg, const sl_model *m, const sl_partition *p,
                       const stage_info *info, size_t rows)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *mo = cJSON_AddObjectToObject(root, "model");
    cJSON_AddNumberToObject(mo, "inputs", m->inputs);
    cJSON_AddNumberToObject(mo, "outputs", m->outputs);
    cJSON_AddNumberToObject(mo, "params", (double)m->nparams);
    cJSON_AddStringToObject(mo, "loss", m->loss == SL_LOSS_MSE ? "mse" : "cross_entropy");
    cJSON *layers = cJSON_AddArrayToObject(mo, "layers");
    for (int i = 0; i < m->nlayers; i++) {
        cJSON *l = cJSON_CreateObject();
        cJSON_AddNumberToObject(l, "index", i);
        cJSON_AddStringToObject(l, "layer", cfg->model.layers[i]);
        cJSON_AddNumberToObject(l, "in", m->layers[i].in);
        cJSON_AddNumberToObject(l, "out", m->layers[i].out);
        cJSON_AddNumberToObject(l, "params", (double)sl_model_params(m, i, i + 1));
        cJSON_AddItemToArray(layers, l);
    }
    cJSON *pl = cJSON_AddObjectToObject(root, "pipeline");
    cJSON_AddNumberToObject(pl, "ranks", p->ranks);
    cJSON_AddNumberToObject(pl, "chunks", p->chunks);
    cJSON_AddNumberToObject(pl, "model_stages", p->nstages);
    cJSON_AddStringToObject(pl, "schedule", cfg->pipeline.schedule);
    cJSON_AddStringToObject(pl, "partition", cfg->pipeline.partition);
    cJSON_AddNumberToObject(pl, "microbatches", cfg->train.microbatches);
    cJSON_AddNumberToObject(pl, "microbatch_rows", (double)rows);
    cJSON *stages = cJSON_AddArrayToObject(root, "stages");
    for (int s = 0; s < p->nstages; s++) {
        cJSON *o = cJSON_CreateObject();
        int rank = sl_partition_rank(p, s);
        cJSON_AddNumberToObject(o, "stage", s);
        cJSON_AddNumberToObject(o, "rank", rank);
        cJSON_AddStringToObject(o, "device", sl_config_device(cfg, rank));
        cJSON_AddNumberToObject(o, "first_layer", p->stages[s].first);
        cJSON_AddNumberToObject(o, "last_layer", p->stages[s].last);
        cJSON_AddNumberToObject(o, "params", (double)info[s].params);
        cJSON_AddNumberToObject(o, "input_width", info[s].in_width);
        cJSON_AddNumberToObject(o, "output_width", info[s].out_width);
        cJSON_AddNumberToObject(o, "input_bytes", (double)info[s].in_bytes);
        cJSON_AddNumberToObject(o, "output_bytes", (double)info[s].out_bytes);
        cJSON_AddNumberToObject(o, "stash_bytes", (double)info[s].stash_bytes);
        cJSON_AddItemToArray(stages, o);
    }
    cJSON *ranks = cJSON_AddArrayToObject(root, "ranks");
    for (int r = 0; r < p->ranks; r++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "rank", r);
        cJSON_AddStringToObject(o, "device", sl_config_device(cfg, r));
        cJSON *ss = cJSON_AddArrayToObject(o, "stages");
        size_t params = 0;
        for (int s = r; s < p->nstages; s += p->ranks) {
            cJSON_AddItemToArray(ss, cJSON_CreateNumber(s));
            params += info[s].params;
        }
        cJSON_AddNumberToObject(o, "params", (double)params);
        cJSON_AddItemToArray(ranks, o);
    }
    char hash[32];
    snprintf(hash, sizeof hash, "%016" PRIx64, sl_config_hash(cfg));
    cJSON_AddStringToObject(root, "config_hash", hash);
    /* The effective config: every default filled in and paths resolved. */
    char *effective = sl_config_to_json(cfg, false);
    cJSON *ec = effective ? cJSON_Parse(effective) : NULL;
    if (ec) cJSON_AddItemToObject(root, "config", ec);
    free(effective);
    char *text = cJSON_Print(root);
    printf("%s\n", text);
    free(text);
    cJSON_Delete(root);
}

static void print_text(const sl_config *cfg, const sl_model *m, const sl_partition *p,
                       const stage_info *info, size_t rows)
{
    printf("model: %d inputs -> %d outputs, %d layers, %zu parameters, loss %s\n", m->inputs,
           m->outputs, m->nlayers, m->nparams, m->loss == SL_LOSS_MSE ? "mse" : "cross_entropy");
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
        int rank = sl_partition_rank(p, s);
        snprintf(range, sizeof range, "%d-%d", p->stages[s].first, p->stages[s].last - 1);
        snprintf(w, sizeof w, "%d->%d", info[s].in_width, info[s].out_width);
        human((double)info[s].out_bytes, out, sizeof out);
        human((double)info[s].in_bytes, in, sizeof in);
        human((double)info[s].stash_bytes, stash, sizeof stash);
        layer_names(cfg, p->stages[s].first, p->stages[s].last, names, sizeof names);
        printf("%5d %4d  %-10s %-8s %10zu %9s  %-10s %-10s %-10s  %s\n", s, rank,
               sl_config_device(cfg, rank), range, info[s].params, w,
               s + 1 < p->nstages ? out : "-", s > 0 ? in : "-", stash, names);
    }
    printf("\n(SENDS: activations sent forward per micro-batch (the same size comes back as\n"
           "gradients); RECEIVES: the stage input it keeps until backward; STASH: the layer\n"
           "outputs one micro-batch keeps between forward and backward.)\n");
    printf("\n%4s  %-10s %10s  %s\n", "RANK", "DEVICE", "PARAMS", "MODEL STAGES");
    for (int r = 0; r < p->ranks; r++) {
        size_t params = 0;
        char list[256] = "";
        for (int s = r; s < p->nstages; s += p->ranks) {
            params += info[s].params;
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", list[0] ? " " : "",
                     s);
        }
        printf("%4d  %-10s %10zu  %s\n", r, sl_config_device(cfg, r), params, list);
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
    sl_model m;
    sl_partition p;
    int st = sl_config_load(path, sets, nsets, &cfg);
    free(sets);
    if (st != SL_OK) return sl_cli_error("plan", st);
    st = sl_model_init(&cfg, &m);
    if (st == SL_OK) {
        st = sl_partition_from_config(&cfg, &m, &p);
        if (st != SL_OK) sl_model_free(&m);
    }
    if (st != SL_OK) {
        sl_config_free(&cfg);
        return sl_cli_error("plan", st);
    }
    size_t rows = (size_t)(cfg.train.batch / cfg.train.microbatches);
    stage_info *info = calloc((size_t)p.nstages, sizeof *info);
    for (int s = 0; info && s < p.nstages; s++) {
        int first = p.stages[s].first, last = p.stages[s].last;
        info[s].in_width = sl_model_width(&m, first);
        info[s].out_width = sl_model_width(&m, last);
        info[s].params = sl_model_params(&m, first, last);
        info[s].in_bytes = rows * (size_t)info[s].in_width * 4;
        info[s].out_bytes = rows * (size_t)info[s].out_width * 4;
        for (int i = first; i < last; i++)
            info[s].stash_bytes += rows * (size_t)m.layers[i].out * 4;
    }
    if (info) {
        if (json)
            print_json(&cfg, &m, &p, info, rows);
        else
            print_text(&cfg, &m, &p, info, rows);
    }
    free(info);
    sl_partition_free(&p);
    sl_model_free(&m);
    sl_config_free(&cfg);
    return info ? 0 : 1;
}
