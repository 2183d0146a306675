/* `sluice bench train`: training samples/s, both baselines measured in the same run.
 *
 * 1. The digits model (64 -> 128 relu -> 128 relu -> 64 relu -> 10, cross entropy, batch 64 in 8
 *    micro-batches, SGD lr 0.05 momentum 0.9) on one rank with one OpenBLAS thread, against
 *    PyTorch training the same model on the same rows the same way with torch.set_num_threads(1)
 *    (bench/train_torch.py, embedded and run with /usr/bin/python3 as a subprocess).
 * 2. Pipeline speed-up: eight linear:1024 layers with relu between, batch 256 in 16 micro-batches,
 *    1F1B, one thread per rank, on 2 and 4 ranks against the same model on 1 rank.
 *
 * Both use sl_train, so a rank is a process as in `sluice train`, and sl_train_summary's samples/s,
 * which leaves out step 0 (process start-up, connections, first-touch allocations). The data sets
 * are synthetic (the speed does not depend on the values) and written, with every run's outputs,
 * into a private temporary directory that is removed afterwards. */
#define _GNU_SOURCE
#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/train_impl.h"
#include "runtime/config/config.h"
#include "core/core.h"
#include "runtime/safetensors/safetensors.h"
#include "runtime/train/train.h"

extern const unsigned char sl_bench_train_torch_py[];
extern const size_t sl_bench_train_torch_py_size;

#define DIGITS_ROWS 1797 /* as many as the digits sample */
#define DIGITS_IN   64
#define PIPE_ROWS   1024
#define PIPE_LAYERS 8
#define MAX_RANKS   8
#define MAX_ROUNDS  16

static const char *const digits_layers[] = {"linear:128", "relu", "linear:128", "relu",
                                            "linear:64",  "relu", "linear:10"};

struct options {
    int steps;      /* digits steps for sluice (step 0 untimed) and timed steps for PyTorch */
    int pipe_steps; /* pipeline steps per rank count (step 0 untimed) */
    int warmup;     /* PyTorch's untimed steps */
    int width;      /* pipeline layer width and inputs */
    int rounds;     /* every run this many times, interleaved; the best counts */
    int ranks[MAX_RANKS];
    int nranks;
    const char *device;
    const char *python;
    int no_torch;
    int json;
};

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: sluice bench train [--steps N] [--pipe-steps N] [--ranks LIST] [--width N]\n"
        "                          [--rounds N] [--device ID] [--python PATH] [--no-torch]\n"
        "                          [--quick] [--json]\n"
        "       sluice bench train --model gpt [options]   (see --model gpt --help)\n\n"
        "Training samples/s with sluice train's machinery (one process per rank, one OpenBLAS\n"
        "thread per rank, step 0 left out of the timing), baselines measured in the same run:\n"
        "  digits    the digits model (64-128-128-64-10, batch 64 in 8 micro-batches, SGD\n"
        "            momentum) on 1 rank against PyTorch training the same model the same way\n"
        "            on 1 thread (when the Python interpreter has torch; else said so)\n"
        "  pipeline  8 x linear:1024 with relu, batch 256 in 16 micro-batches, 1F1B, on each\n"
        "            rank count against the same model on 1 rank\n\n"
        "  --model NAME    digits (default: the two above) or gpt (tokens/s of nanoGPT's GPT\n"
        "                  against PyTorch; `sluice bench train --model gpt --help`)\n"
        "  --steps N       digits steps (default 400)\n"
        "  --pipe-steps N  pipeline steps per rank count (default 16)\n"
        "  --ranks LIST    pipeline rank counts besides 1 (default 2,4; each divides 8)\n"
        "  --width N       pipeline layer width (default 1024; smaller for smoke tests)\n"
        "  --rounds N      run everything N times, interleaved, and keep each figure's best\n"
        "                  (shared machines: a burst of other work slows one round; default 2)\n"
        "  --device ID     device of every rank (default cpu; PyTorch always runs on the CPU)\n"
        "  --python PATH   interpreter for the PyTorch baseline (default /usr/bin/python3)\n"
        "  --no-torch      skip the PyTorch baseline\n"
        "  --quick         --steps 60 --pipe-steps 4 --rounds 1, for a smoke test\n"
        "  --json          one JSON object instead of the tables\n");
}

/* A positive int from an option value, or -1. */
static int parse_count(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    return *s && !*end && v > 0 && v <= 1000000 ? (int)v : -1;
}

static int parse_ranks(const char *s, struct options *o)
{
    o->nranks = 0;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int r = parse_count(t);
        if (r < 2 || PIPE_LAYERS % r || o->nranks == MAX_RANKS) return -1;
        o->ranks[o->nranks++] = r;
    }
    return o->nranks ? 0 : -1;
}

/* Deterministic values in [0, 1). */
static float next_unit(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)(*s >> 40) / (float)(1ull << 24);
}

/* x F32 [rows, in] in [0, 1), y I32 [rows] in 0..9. */
static int write_data(const char *path, int rows, int in)
{
    float *x = sl_alloc((size_t)rows * (size_t)in * sizeof *x);
    int32_t *y = sl_alloc((size_t)rows * sizeof *y);
    int rc = x && y ? SL_OK : SL_ENOMEM;
    if (rc == SL_OK) {
        uint64_t s = 12345;
        for (size_t i = 0; i < (size_t)rows * (size_t)in; i++) x[i] = next_unit(&s);
        for (int i = 0; i < rows; i++) y[i] = i % 10;
        sl_tensor t[2] = {
            {.name = "x", .dtype = SL_DTYPE_F32, .ndim = 2, .shape = {rows, in}, .data = x},
            {.name = "y", .dtype = SL_DTYPE_I32, .ndim = 1, .shape = {rows}, .data = y},
        };
        rc = sl_safetensors_save(path, t, 2, NULL, NULL, 0);
    }
    free(x);
    free(y);
    return rc;
}

/* One sl_train run of the given model; fills *sum. */
static int train_run(const char *tmp, const char *tag, const char *data, int inputs,
                     const char *const *layers, int nlayers, int batch, int microbatches, int steps,
                     int ranks, const char *device, sl_train_summary *sum)
{
    char out_dir[1200];
    snprintf(out_dir, sizeof out_dir, "%s/run-%s", tmp, tag);
    cJSON *root = cJSON_CreateObject();
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddNumberToObject(model, "inputs", inputs);
    cJSON_AddItemToObject(model, "layers", cJSON_CreateStringArray(layers, nlayers));
    cJSON_AddStringToObject(model, "loss", "cross_entropy");
    cJSON *d = cJSON_AddObjectToObject(root, "data");
    cJSON_AddStringToObject(d, "path", data);
    cJSON *t = cJSON_AddObjectToObject(root, "train");
    cJSON_AddNumberToObject(t, "steps", steps);
    cJSON_AddNumberToObject(t, "batch", batch);
    cJSON_AddNumberToObject(t, "microbatches", microbatches);
    cJSON_AddNumberToObject(t, "threads", 1);
    cJSON *o = cJSON_AddObjectToObject(t, "optimizer");
    cJSON_AddStringToObject(o, "name", "sgd");
    cJSON_AddNumberToObject(o, "lr", 0.05);
    cJSON_AddNumberToObject(o, "momentum", 0.9);
    cJSON *p = cJSON_AddObjectToObject(root, "pipeline");
    cJSON_AddNumberToObject(p, "stages", ranks);
    cJSON_AddStringToObject(p, "schedule", "1f1b");
    cJSON_AddStringToObject(root, "devices", device);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(root, "output"), "dir", out_dir);
    return sl__bench_train_config(root, tmp, tag, ranks, sum);
}

struct torch_result {
    cJSON *obj;           /* the script's JSON line, or NULL */
    char note[1024];      /* why there is no figure */
    double samples_per_s; /* 0 when none */
};

/* Runs the embedded PyTorch script on the digits data; never fails the bench: a missing
 * interpreter or torch becomes a note. */
static void torch_run(const char *tmp, const char *data, const struct options *o,
                      struct torch_result *r)
{
    memset(r, 0, sizeof *r);
    char script[1200], cmd[4096], layers[256] = "";
    if (!sl__bench_train_torch_prepare(o->python, o->no_torch, tmp, "train_torch.py",
                                       sl_bench_train_torch_py, sl_bench_train_torch_py_size,
                                       script, sizeof script, r->note, sizeof r->note))
        return;
    for (size_t i = 0; i < SL_ARRAY_LEN(digits_layers); i++)
        snprintf(layers + strlen(layers), sizeof layers - strlen(layers), "%s%s", i ? "," : "",
                 digits_layers[i]);
    /* One thread everywhere: torch.set_num_threads(1) in the script, and the BLAS and OpenMP
     * pools of whatever torch links as well. Paths come from mkdtemp and options; quote them. */
    snprintf(cmd, sizeof cmd,
             "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 '%s' '%s' --data '%s' "
             "--layers %s --batch 64 --microbatches 8 --steps %d --warmup %d --lr 0.05 "
             "--momentum 0.9 --threads 1",
             o->python, script, data, layers, o->steps, o->warmup);
    r->samples_per_s = sl__bench_train_torch_figure(cmd, o->python, "samples_per_s", &r->obj,
                                                    r->note, sizeof r->note);
}

/* Reads the command line; returns -1 to go on, else the exit status (0 after --help, 2 on a usage
 * error). */
static int parse_options(int argc, char **argv, struct options *o)
{
    *o = (struct options){.steps = 400,
                          .pipe_steps = 16,
                          .warmup = 20,
                          .ranks = {2, 4},
                          .nranks = 2,
                          .width = 1024,
                          .rounds = 2,
                          .device = "cpu",
                          .python = "/usr/bin/python3"};
    int steps_set = 0, pipe_set = 0, rounds_set = 0, quick = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--model") && v && !strcmp(v, "digits")) {
            i++;
        } else if (!strcmp(a, "--json")) {
            o->json = 1;
        } else if (!strcmp(a, "--quick")) {
            quick = 1;
        } else if (!strcmp(a, "--no-torch")) {
            o->no_torch = 1;
        } else if (!strcmp(a, "--steps") && v) {
            if ((o->steps = parse_count(v)) < 2) goto bad;
            steps_set = 1;
            i++;
        } else if (!strcmp(a, "--pipe-steps") && v) {
            if ((o->pipe_steps = parse_count(v)) < 2) goto bad;
            pipe_set = 1;
            i++;
        } else if (!strcmp(a, "--ranks") && v) {
            if (parse_ranks(v, o) != 0) goto bad;
            i++;
        } else if (!strcmp(a, "--width") && v) {
            if ((o->width = parse_count(v)) < 2) goto bad;
            i++;
        } else if (!strcmp(a, "--rounds") && v) {
            if ((o->rounds = parse_count(v)) < 1 || o->rounds > MAX_ROUNDS) goto bad;
            rounds_set = 1;
            i++;
        } else if (!strcmp(a, "--device") && v) {
            o->device = v;
            i++;
        } else if (!strcmp(a, "--python") && v) {
            o->python = v;
            i++;
        } else {
            fprintf(stderr, "sluice bench train: unexpected argument '%s' (try --help)\n", a);
            return 2;
        }
        continue;
    bad:
        fprintf(stderr,
                "sluice bench train: bad value '%s' for %s (steps and width are integers >= 2; "
                "rounds 1 to %d; ranks a list of counts >= 2 that divide %d)\n",
                v, a, MAX_ROUNDS, PIPE_LAYERS);
        return 2;
    }
    if (quick) {
        if (!steps_set) o->steps = 60;
        if (!pipe_set) o->pipe_steps = 4;
        if (!rounds_set) o->rounds = 1;
        o->warmup = 5;
    }
    return -1;
}

/* The pipeline model: PIPE_LAYERS linear layers of the given width with relu between. */
struct pipe_model {
    char linear[32];
    const char *layers[2 * PIPE_LAYERS - 1];
    int nlayers;
};

static void pipe_model_init(struct pipe_model *m, int width)
{
    snprintf(m->linear, sizeof m->linear, "linear:%d", width);
    m->nlayers = 2 * PIPE_LAYERS - 1;
    for (int i = 0; i < m->nlayers; i++) m->layers[i] = i % 2 ? "relu" : m->linear;
}

/* The best of the rounds, and every round's figure for the JSON. pipe[0] is 1 rank, pipe[k + 1]
 * o->ranks[k]. */
struct results {
    sl_train_summary digits, pipe[MAX_RANKS + 1];
    double digits_runs[MAX_ROUNDS], torch_runs[MAX_ROUNDS];
    double pipe_runs[MAX_RANKS + 1][MAX_ROUNDS];
    struct torch_result torch;
};

/* Where one run of the bench keeps its files: a private temporary directory and the two data
 * sets in it. */
struct files {
    char tmp[1024], digits[1200], pipe[1200];
};

/* Round `round` of the digits model: sluice on 1 rank, then PyTorch. */
static int digits_round(const struct options *o, const struct files *f, int round,
                        struct results *res)
{
    char tag[64];
    sl_train_summary sum;
    fprintf(stderr, "bench train: round %d/%d: digits, sluice on 1 rank, %d steps...\n", round + 1,
            o->rounds, o->steps);
    snprintf(tag, sizeof tag, "digits-%d", round);
    int rc = train_run(f->tmp, tag, f->digits, DIGITS_IN, digits_layers,
                       (int)SL_ARRAY_LEN(digits_layers), 64, 8, o->steps, 1, o->device, &sum);
    if (rc != SL_OK) return rc;
    res->digits_runs[round] = sum.samples_per_s;
    if (sum.samples_per_s > res->digits.samples_per_s) res->digits = sum;
    /* A missing interpreter or torch stays missing: ask once. */
    if (round == 0 || res->torch.samples_per_s > 0) {
        fprintf(stderr, "bench train: round %d/%d: digits, PyTorch on 1 thread, %d + %d steps...\n",
                round + 1, o->rounds, o->warmup, o->steps);
        struct torch_result t;
        torch_run(f->tmp, f->digits, o, &t);
        res->torch_runs[round] = t.samples_per_s;
        if (round == 0 || t.samples_per_s > res->torch.samples_per_s) {
            cJSON_Delete(res->torch.obj);
            res->torch = t;
        } else {
            cJSON_Delete(t.obj);
        }
    }
    return SL_OK;
}

/* Round `round` of the pipeline model: 1 rank, then each rank count asked for. */
static int pipe_round(const struct options *o, const struct files *f, const struct pipe_model *m,
                      int round, struct results *res)
{
    for (int k = -1; k < o->nranks; k++) {
        char tag[64];
        sl_train_summary sum;
        int ranks = k < 0 ? 1 : o->ranks[k];
        snprintf(tag, sizeof tag, "pipe%d-%d", ranks, round);
        fprintf(stderr, "bench train: round %d/%d: pipeline on %d rank%s, %d steps...\n", round + 1,
                o->rounds, ranks, ranks == 1 ? "" : "s", o->pipe_steps);
        int rc = train_run(f->tmp, tag, f->pipe, o->width, m->layers, m->nlayers, 256, 16,
                           o->pipe_steps, ranks, o->device, &sum);
        if (rc != SL_OK) return rc;
        res->pipe_runs[k + 1][round] = sum.samples_per_s;
        if (sum.samples_per_s > res->pipe[k + 1].samples_per_s) res->pipe[k + 1] = sum;
    }
    return SL_OK;
}

/* Writes both data sets and runs every round, the digits and the pipeline interleaved. */
static int measure(const struct options *o, const struct files *f, const struct pipe_model *m,
                   struct results *res)
{
    int rc = write_data(f->digits, DIGITS_ROWS, DIGITS_IN);
    if (rc == SL_OK) rc = write_data(f->pipe, PIPE_ROWS, o->width);
    for (int round = 0; round < o->rounds && rc == SL_OK; round++) {
        rc = digits_round(o, f, round, res);
        if (rc == SL_OK) rc = pipe_round(o, f, m, round, res);
    }
    return rc;
}

/* What the report needs besides the results. */
struct context {
    double ratio;              /* sluice over PyTorch on the digits model; NAN without PyTorch */
    const char *torch_version; /* NULL without PyTorch */
    const char *blas;          /* OpenBLAS's configuration, or NULL */
    long cores;
};

/* The JSON object of the digits comparison. */
static void add_digits_json(cJSON *dj, const struct options *o, const struct results *res,
                            const struct context *c)
{
    cJSON_AddStringToObject(dj, "model", "64-128-128-64-10 relu, cross entropy");
    cJSON_AddNumberToObject(dj, "batch", 64);
    cJSON_AddNumberToObject(dj, "microbatches", 8);
    cJSON_AddStringToObject(dj, "optimizer", "sgd lr 0.05 momentum 0.9");
    cJSON_AddNumberToObject(dj, "steps", o->steps);
    cJSON_AddNumberToObject(dj, "samples_per_s", res->digits.samples_per_s);
    cJSON_AddItemToObject(dj, "samples_per_s_rounds",
                          sl__bench_train_rounds_array(res->digits_runs, o->rounds));
    cJSON_AddNumberToObject(dj, "final_loss", res->digits.final_loss);
    cJSON_AddItemToObject(dj, "torch_samples_per_s",
                          sl__bench_train_number_or_null(res->torch.samples_per_s));
    if (res->torch.samples_per_s > 0)
        cJSON_AddItemToObject(dj, "torch_samples_per_s_rounds",
                              sl__bench_train_rounds_array(res->torch_runs, o->rounds));
    cJSON_AddItemToObject(
        dj, "torch", c->torch_version ? cJSON_CreateString(c->torch_version) : cJSON_CreateNull());
    if (res->torch.note[0]) cJSON_AddStringToObject(dj, "torch_note", res->torch.note);
    cJSON_AddNumberToObject(dj, "torch_warmup_steps", o->warmup);
    cJSON_AddItemToObject(dj, "ratio", sl__bench_train_number_or_null(c->ratio));
}

/* The JSON object of the pipeline speed-ups. */
static void add_pipe_json(cJSON *pj, const struct options *o, const struct pipe_model *m,
                          const struct results *res)
{
    char desc[96];
    snprintf(desc, sizeof desc, "8 x %s, relu between, cross entropy", m->linear);
    cJSON_AddStringToObject(pj, "model", desc);
    cJSON_AddStringToObject(pj, "baseline", "the same model on 1 rank, 1 thread");
    cJSON_AddNumberToObject(pj, "batch", 256);
    cJSON_AddNumberToObject(pj, "microbatches", 16);
    cJSON_AddStringToObject(pj, "schedule", "1f1b");
    cJSON_AddNumberToObject(pj, "steps", o->pipe_steps);
    cJSON *runs = cJSON_AddArrayToObject(pj, "runs");
    for (int k = -1; k < o->nranks; k++) {
        const sl_train_summary *s = &res->pipe[k + 1];
        cJSON *r = cJSON_CreateObject();
        cJSON_AddNumberToObject(r, "ranks", k < 0 ? 1 : o->ranks[k]);
        cJSON_AddNumberToObject(r, "samples_per_s", s->samples_per_s);
        cJSON_AddItemToObject(r, "samples_per_s_rounds",
                              sl__bench_train_rounds_array(res->pipe_runs[k + 1], o->rounds));
        cJSON_AddNumberToObject(r, "speedup", s->samples_per_s / res->pipe[0].samples_per_s);
        cJSON_AddItemToObject(r, "bubble_measured",
                              sl__bench_train_bubble_or_null(s->bubble_measured));
        cJSON_AddItemToObject(r, "bubble_predicted",
                              sl__bench_train_bubble_or_null(s->bubble_predicted));
        cJSON_AddItemToArray(runs, r);
    }
}

static void print_json(const struct options *o, const struct pipe_model *m,
                       const struct results *res, const struct context *c)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "name", "train");
    cJSON_AddStringToObject(root, "baseline",
                            res->torch.samples_per_s > 0
                                ? "PyTorch, same model/batch/micro-batches/optimizer, 1 thread"
                                : "none: no PyTorch figure (see torch_note)");
    cJSON_AddItemToObject(root, "ratio", sl__bench_train_number_or_null(c->ratio));
    cJSON_AddStringToObject(root, "device", o->device);
    cJSON_AddNumberToObject(root, "threads_per_rank", 1);
    cJSON_AddStringToObject(root, "openblas", c->blas ? c->blas : "?");
    cJSON_AddNumberToObject(root, "cores", (double)c->cores);
    cJSON_AddNumberToObject(root, "rounds", o->rounds);
    add_digits_json(cJSON_AddObjectToObject(root, "digits"), o, res, c);
    add_pipe_json(cJSON_AddObjectToObject(root, "pipeline"), o, m, res);
    sl_bench_print_json(root);
}

static void print_tables(const struct options *o, const struct pipe_model *m,
                         const struct results *res, const struct context *c)
{
    const struct torch_result *torch = &res->torch;
    printf("sluice bench train  (device %s, 1 OpenBLAS thread per rank, %ld cores, best of %d "
           "round%s; %s)\n\n",
           o->device, c->cores, o->rounds, o->rounds == 1 ? "" : "s",
           c->blas ? c->blas : "OpenBLAS ?");
    printf("digits model, 1 rank: 64-128-128-64-10 relu, batch 64 in 8 micro-batches, SGD "
           "momentum, %d steps\n",
           o->steps);
    printf("  %-34s %12s %8s\n", "", "samples/s", "ratio");
    printf("  %-34s %12.0f %8s\n", "sluice (1 rank, 1 thread)", res->digits.samples_per_s,
           torch->samples_per_s > 0 ? "" : "-");
    if (torch->samples_per_s > 0) {
        char who[64];
        snprintf(who, sizeof who, "PyTorch %s (1 thread)",
                 c->torch_version ? c->torch_version : "");
        printf("  %-34s %12.0f %8s\n", who, torch->samples_per_s, "baseline");
        printf("  %-34s %12s %7.2fx\n", "sluice / PyTorch", "", c->ratio);
    } else {
        printf("  PyTorch: %s; no ratio\n", torch->note);
    }
    printf("\npipeline: 8 x %s relu, batch 256 in 16 micro-batches, 1F1B, %d steps, "
           "1 thread per rank\n",
           m->linear, o->pipe_steps);
    printf("  %-6s %12s %9s %9s %9s\n", "ranks", "samples/s", "speed-up", "bubble", "(model)");
    for (int k = -1; k < o->nranks; k++) {
        const sl_train_summary *s = &res->pipe[k + 1];
        printf("  %-6d %12.0f %8.2fx %9.3f %9.3f%s\n", k < 0 ? 1 : o->ranks[k], s->samples_per_s,
               s->samples_per_s / res->pipe[0].samples_per_s, s->bubble_measured,
               s->bubble_predicted, k < 0 ? "  (baseline)" : "");
    }
    int over = 0;
    for (int k = 0; k < o->nranks; k++) over |= o->ranks[k] > c->cores;
    if (over)
        printf("  (more ranks than the %ld cores: those ranks share cores and cannot speed up "
               "further)\n",
               c->cores);
}

int sl_bench_train(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--model") && !strcmp(argv[i + 1], "gpt"))
            return sl_bench_train_gpt(argc, argv);
    struct options o;
    int status = parse_options(argc, argv, &o);
    if (status >= 0) return status;

    struct files f;
    const char *tmpdir = getenv("TMPDIR");
    snprintf(f.tmp, sizeof f.tmp, "%s/sluice-bench-train-XXXXXX",
             tmpdir && *tmpdir ? tmpdir : "/tmp");
    if (!mkdtemp(f.tmp)) {
        fprintf(stderr, "sluice bench train: cannot create a temporary directory %s\n", f.tmp);
        return 1;
    }
    snprintf(f.digits, sizeof f.digits, "%s/digits.safetensors", f.tmp);
    snprintf(f.pipe, sizeof f.pipe, "%s/pipe.safetensors", f.tmp);
    struct pipe_model m;
    pipe_model_init(&m, o.width);

    struct results res = {0};
    int rc = measure(&o, &f, &m, &res);
    if (rc != SL_OK) fprintf(stderr, "sluice bench train: %s\n", sl_last_error());
    if (sl_remove_tree(f.tmp) != SL_OK)
        fprintf(stderr, "sluice bench train: %s\n", sl_last_error());
    if (rc != SL_OK) {
        cJSON_Delete(res.torch.obj);
        return 1;
    }

    const struct torch_result *torch = &res.torch;
    struct context c = {
        .ratio = torch->samples_per_s > 0 ? res.digits.samples_per_s / torch->samples_per_s : NAN,
        .torch_version = torch->obj && !torch->note[0]
                             ? cJSON_GetStringValue(cJSON_GetObjectItem(torch->obj, "torch"))
                             : NULL,
        .blas = openblas_get_config(),
        .cores = sysconf(_SC_NPROCESSORS_ONLN),
    };
    if (o.json)
        print_json(&o, &m, &res, &c);
    else
        print_tables(&o, &m, &res, &c);
    cJSON_Delete(res.torch.obj);
    return 0;
}
