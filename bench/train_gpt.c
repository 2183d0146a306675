/* `sluice bench train --model gpt`: tokens per second of nanoGPT's GPT trained by sluice on one
 * rank against PyTorch training the same model the same way, both measured in the same run.
 *
 * The model: GPT {vocab_size 65, block_size 64, n_layer 4, n_head 4, n_embd 128, bias,
 * tie_embeddings}, batch 12 in 1 micro-batch (768 tokens a step), AdamW lr 1e-3, betas 0.9/0.95,
 * eps 1e-8, weight decay 0.1 on the tensors of two or more dimensions, gradient clipping at norm
 * 1.0, constant learning rate. sluice trains it through sl_train (a rank is a process, as in
 * `sluice train`), pipeline.stages 1, train.threads 1, and its samples/s leaves out step 0; the
 * run has steps + 1 steps so that `steps` of them are timed. PyTorch (bench/train_torch_gpt.py,
 * embedded and run with /usr/bin/python3) trains nanoGPT's GPT written with torch.nn modules on
 * 1 thread, `warmup` untimed steps and then `steps` timed ones. Both read the same token windows:
 * a token safetensors of random ids (x and y I32 [rows, 64], y the next tokens) written into a
 * private temporary directory that is removed afterwards; step k takes rows (k*12 + i) mod rows.
 * Every run is repeated `rounds` times, sluice and PyTorch interleaved, and the best of each
 * counts. The figure is tokens/s = samples/s x block_size; the target is sluice at 1.5x
 * PyTorch's tokens/s or more.
 *
 * The pipeline row: a compute-bound GPT (8 blocks, n_embd 512, block_size 128, n_head 8, vocab 65,
 * bias, tied; batch 8 in 8 micro-batches, the same AdamW and clipping) trained by sluice with 1F1B
 * on 2 ranks against the same on 1 rank, 1 thread per rank, in the same rounds (1 rank, then 2),
 * step 0 left out; target: 2 ranks at 1.6x the tokens/s of 1 or more (the bubble, (S-1)/(M+S-1) =
 * 1/9, allows 1.88x).
 *
 * --shakespeare (not run by default; bench/train_gpt_shakespeare.c):
 * samples/shakespeare/shakespeare.json trained by sluice as configured (4 stage processes, 1F1B, an
 * evaluation every 500 steps over 200 batches), then PyTorch training the same recipe on one
 * process with its default threads; the wall time until the first evaluation at or below the target
 * validation loss on each side, and their ratio. */
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
#include "core/core.h"
#include "runtime/config/config.h"
#include "runtime/safetensors/safetensors.h"
#include "runtime/train/train.h"

extern const unsigned char sl_bench_train_torch_gpt_py[];
extern const size_t sl_bench_train_torch_gpt_py_size;

#define GPT_VOCAB  65
#define GPT_BLOCK  64
#define GPT_LAYERS 4
#define GPT_HEADS  4
#define GPT_EMBD   128
#define GPT_BATCH  12
#define GPT_ROWS   240 /* token windows in the data file: 20 steps before they repeat */
#define MAX_ROUNDS 16
#define TARGET     1.5 /* sluice's tokens/s over PyTorch's */
/* The pipeline row's GPT. */
#define PIPE_BLOCK  128
#define PIPE_LAYERS 8
#define PIPE_HEADS  8
#define PIPE_EMBD   512
#define PIPE_BATCH  8
#define PIPE_MICRO  8
#define PIPE_RANKS  2
#define PIPE_TARGET 1.6

static const char pipe_target_text[] = "at least 1.6x (the bubble allows 1.88x)";

static const char target_text[] = "at least 1.5x PyTorch's tokens per second";

struct options {
    int steps;  /* timed steps, both sides */
    int warmup; /* PyTorch's untimed steps (sluice's is its step 0) */
    int rounds;
    const char *device;
    const char *python;
    int no_torch;
    int json;
    int pipe_steps;  /* the pipeline row's timed steps (0: no pipeline row) */
    int pipe_embd;   /* its n_embd (512; --quick 128) */
    int shakespeare; /* run the Shakespeare comparison instead of the rows */
    const char *shakespeare_config;
};

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: sluice bench train --model gpt [--steps N] [--warmup N] [--rounds N]\n"
        "                          [--device ID] [--python PATH] [--no-torch] [--quick]\n"
        "                          [--json]\n\n"
        "Tokens/s of nanoGPT's GPT (vocab 65, block 64, 4 layers, 4 heads, 128 wide, bias,\n"
        "tied embeddings; batch 12 in 1 micro-batch; AdamW lr 1e-3 betas 0.9/0.95 weight\n"
        "decay 0.1; clipping at 1.0) trained by sluice on 1 rank with 1 OpenBLAS thread\n"
        "through sluice train's machinery (step 0 left out of the timing), against PyTorch\n"
        "training the same model the same way on 1 thread, measured in the same run.\n"
        "Target: sluice at 1.5x PyTorch's tokens/s or more.\n\n"
        "  --steps N       timed steps on each side (default 40)\n"
        "  --warmup N      PyTorch's untimed steps first (default 3)\n"
        "  --rounds N      run both N times, interleaved, and keep each one's best\n"
        "                  (default 2)\n"
        "  --device ID     device of the rank (default cpu; PyTorch always runs on the CPU)\n"
        "  --python PATH   interpreter for the PyTorch baseline (default /usr/bin/python3)\n"
        "  --no-torch      skip the PyTorch baseline\n"
        "  --pipe-steps N  timed steps of the pipeline row (GPT of 8 blocks, 512 wide, block\n"
        "                  128, 8 heads; batch 8 in 8 micro-batches, 1F1B, 1 thread per rank)\n"
        "                  on 2 ranks and on 1, in every round (default 3; 0: no pipeline row).\n"
        "                  Target: 2 ranks at least 1.6x 1 rank (the bubble allows 1.88x)\n"
        "  --pipe-embd N   the pipeline row's n_embd (default 512, a multiple of 8)\n"
        "  --shakespeare   instead of the rows: train samples/shakespeare/shakespeare.json with\n"
        "                  sluice (4 stage processes) and the same recipe with PyTorch on one\n"
        "                  process (its default threads), and compare the wall time to a\n"
        "                  validation loss of 1.90 (takes minutes)\n"
        "  --shakespeare-config PATH   the config it trains (default\n"
        "                  samples/shakespeare/shakespeare.json)\n"
        "  --quick         --steps 3 --warmup 1 --rounds 1 --pipe-steps 1 --pipe-embd 128,\n"
        "                  for a smoke test\n"
        "  --json          one JSON object instead of the table\n");
}

static int parse_count(const char *s, int min)
{
    char *end;
    long v = strtol(s, &end, 10);
    return *s && !*end && v >= min && v <= 1000000 ? (int)v : -1;
}

/* Returns -1 to go on, else the exit status (0 after --help, 2 on a usage error). */
static int parse_options(int argc, char **argv, struct options *o)
{
    *o = (struct options){.steps = 40,
                          .warmup = 3,
                          .rounds = 2,
                          .device = "cpu",
                          .python = "/usr/bin/python3",
                          .pipe_steps = 3,
                          .pipe_embd = PIPE_EMBD,
                          .shakespeare_config = "samples/shakespeare/shakespeare.json"};
    int steps_set = 0, warmup_set = 0, rounds_set = 0, quick = 0, pipe_steps_set = 0,
        pipe_embd_set = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--model") && v && !strcmp(v, "gpt")) {
            i++;
        } else if (!strcmp(a, "--json")) {
            o->json = 1;
        } else if (!strcmp(a, "--quick")) {
            quick = 1;
        } else if (!strcmp(a, "--no-torch")) {
            o->no_torch = 1;
        } else if (!strcmp(a, "--steps") && v) {
            if ((o->steps = parse_count(v, 1)) < 0) goto bad;
            steps_set = 1;
            i++;
        } else if (!strcmp(a, "--warmup") && v) {
            if ((o->warmup = parse_count(v, 0)) < 0) goto bad;
            warmup_set = 1;
            i++;
        } else if (!strcmp(a, "--rounds") && v) {
            if ((o->rounds = parse_count(v, 1)) < 0 || o->rounds > MAX_ROUNDS) goto bad;
            rounds_set = 1;
            i++;
        } else if (!strcmp(a, "--pipe-steps") && v) {
            if ((o->pipe_steps = parse_count(v, 0)) < 0) goto bad;
            pipe_steps_set = 1;
            i++;
        } else if (!strcmp(a, "--pipe-embd") && v) {
            if ((o->pipe_embd = parse_count(v, PIPE_HEADS)) < 0 || o->pipe_embd % PIPE_HEADS)
                goto bad;
            pipe_embd_set = 1;
            i++;
        } else if (!strcmp(a, "--shakespeare")) {
            o->shakespeare = 1;
        } else if (!strcmp(a, "--shakespeare-config") && v) {
            o->shakespeare_config = v;
            i++;
        } else if (!strcmp(a, "--device") && v) {
            o->device = v;
            i++;
        } else if (!strcmp(a, "--python") && v) {
            o->python = v;
            i++;
        } else {
            fprintf(stderr,
                    "sluice bench train --model gpt: unexpected argument '%s' (try --help)\n", a);
            return 2;
        }
        continue;
    bad:
        fprintf(stderr,
                "sluice bench train --model gpt: bad value '%s' for %s (steps >= 1, warmup >= 0, "
                "rounds 1 to %d, pipe-steps >= 0, pipe-embd a multiple of 8)\n",
                v, a, MAX_ROUNDS);
        return 2;
    }
    if (quick) {
        if (!steps_set) o->steps = 3;
        if (!warmup_set) o->warmup = 1;
        if (!rounds_set) o->rounds = 1;
        if (!pipe_steps_set) o->pipe_steps = 1;
        if (!pipe_embd_set) o->pipe_embd = 128;
    }
    return -1;
}

/* Random token windows of T tokens: a stream s of GPT_ROWS * T + 1 ids (an LCG's high bits, mod
 * the vocab), x row i = s[i*T .. i*T + T-1] and y row i = s[i*T + 1 .. i*T + T]. */
static int write_tokens(const char *path, int T)
{
    size_t n = (size_t)GPT_ROWS * T;
    int32_t *s = sl_alloc((n + 1) * sizeof *s);
    int32_t *x = sl_alloc(n * sizeof *x), *y = sl_alloc(n * sizeof *y);
    int rc = s && x && y ? SL_OK : SL_ENOMEM;
    if (rc == SL_OK) {
        uint64_t st = 20261206;
        for (size_t i = 0; i <= n; i++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            s[i] = (int32_t)((st >> 33) % GPT_VOCAB);
        }
        memcpy(x, s, n * sizeof *x);
        memcpy(y, s + 1, n * sizeof *y);
        sl_tensor t[2] = {
            {.name = "x", .dtype = SL_DTYPE_I32, .ndim = 2, .shape = {GPT_ROWS, T}, .data = x},
            {.name = "y", .dtype = SL_DTYPE_I32, .ndim = 2, .shape = {GPT_ROWS, T}, .data = y},
        };
        rc = sl_safetensors_save(path, t, 2, NULL, NULL, 0);
    }
    free(s);
    free(x);
    free(y);
    return rc;
}

/* A GPT, its batch and its pipeline. */
struct gpt_shape {
    int block, layers, heads, embd, batch, micro, ranks;
};

static const struct gpt_shape gpt_bench = {GPT_BLOCK, GPT_LAYERS, GPT_HEADS, GPT_EMBD,
                                           GPT_BATCH, 1,          1};

/* One sl_train run of the GPT, steps + 1 steps (step 0 untimed); fills *sum. */
static int gpt_train_run(const char *tmp, const char *tag, const char *data,
                         const struct gpt_shape *sh, int steps, const char *device,
                         sl_train_summary *sum)
{
    char out_dir[1200];
    snprintf(out_dir, sizeof out_dir, "%s/run-%s", tmp, tag);
    cJSON *root = cJSON_CreateObject();
    cJSON *g = cJSON_AddObjectToObject(cJSON_AddObjectToObject(root, "model"), "gpt");
    cJSON_AddNumberToObject(g, "vocab_size", GPT_VOCAB);
    cJSON_AddNumberToObject(g, "block_size", sh->block);
    cJSON_AddNumberToObject(g, "n_layer", sh->layers);
    cJSON_AddNumberToObject(g, "n_head", sh->heads);
    cJSON_AddNumberToObject(g, "n_embd", sh->embd);
    cJSON_AddBoolToObject(g, "bias", 1);
    cJSON_AddBoolToObject(g, "tie_embeddings", 1);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(root, "data"), "path", data);
    cJSON *t = cJSON_AddObjectToObject(root, "train");
    cJSON_AddNumberToObject(t, "steps", steps + 1);
    cJSON_AddNumberToObject(t, "batch", sh->batch);
    cJSON_AddNumberToObject(t, "microbatches", sh->micro);
    cJSON_AddNumberToObject(t, "threads", 1);
    cJSON *o = cJSON_AddObjectToObject(t, "optimizer");
    cJSON_AddStringToObject(o, "name", "adamw");
    cJSON_AddNumberToObject(o, "lr", 1e-3);
    cJSON *betas = cJSON_AddArrayToObject(o, "betas");
    cJSON_AddItemToArray(betas, cJSON_CreateNumber(0.9));
    cJSON_AddItemToArray(betas, cJSON_CreateNumber(0.95));
    cJSON_AddNumberToObject(o, "eps", 1e-8);
    cJSON_AddNumberToObject(o, "weight_decay", 0.1);
    cJSON_AddNumberToObject(t, "grad_clip", 1.0);
    cJSON *pl = cJSON_AddObjectToObject(root, "pipeline");
    cJSON_AddNumberToObject(pl, "stages", sh->ranks);
    cJSON_AddStringToObject(pl, "schedule", "1f1b");
    cJSON_AddStringToObject(root, "devices", device);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(root, "output"), "dir", out_dir);
    char what[96];
    snprintf(what, sizeof what, "the GPT (%s)", tag);
    return sl__bench_train_config(root, tmp, what, sh->ranks, sum);
}

struct torch_result {
    cJSON *obj;          /* the script's JSON line, or NULL */
    char note[1024];     /* why there is no figure */
    double tokens_per_s; /* 0 when none */
};

/* Runs the embedded PyTorch GPT script; never fails the bench: a missing interpreter or torch
 * becomes a note. */
static void torch_run(const char *tmp, const char *data, const struct options *o,
                      struct torch_result *r)
{
    memset(r, 0, sizeof *r);
    char script[1200], cmd[4096];
    if (!sl__bench_train_torch_prepare(
            o->python, o->no_torch, tmp, "train_torch_gpt.py", sl_bench_train_torch_gpt_py,
            sl_bench_train_torch_gpt_py_size, script, sizeof script, r->note, sizeof r->note))
        return;
    /* One thread everywhere, as in the digits row. Paths come from mkdtemp and options. */
    snprintf(cmd, sizeof cmd,
             "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 '%s' '%s' --data '%s' "
             "--vocab-size %d --block-size %d --n-layer %d --n-head %d --n-embd %d --batch %d "
             "--microbatches 1 --steps %d --warmup %d --lr 1e-3 --beta1 0.9 --beta2 0.95 "
             "--eps 1e-8 --weight-decay 0.1 --grad-clip 1.0 --threads 1",
             o->python, script, data, GPT_VOCAB, GPT_BLOCK, GPT_LAYERS, GPT_HEADS, GPT_EMBD,
             GPT_BATCH, o->steps, o->warmup);
    r->tokens_per_s = sl__bench_train_torch_figure(cmd, o->python, "tokens_per_s", &r->obj, r->note,
                                                   sizeof r->note);
}

struct results {
    sl_train_summary best;         /* sluice's best round */
    double runs[MAX_ROUNDS];       /* sluice's tokens/s per round */
    double torch_runs[MAX_ROUNDS]; /* PyTorch's, 0 where none */
    struct torch_result torch;     /* PyTorch's best round (or its note) */
    sl_train_summary pipe[2];      /* the pipeline row's best rounds: 1 rank, PIPE_RANKS ranks */
    double pipe_runs[2][MAX_ROUNDS];
};

/* Round `round` of the pipeline row: 1 rank, then PIPE_RANKS. */
static int pipe_round(const struct options *o, const char *tmp, const char *data, int round,
                      struct results *res)
{
    for (int k = 0; k < 2; k++) {
        struct gpt_shape sh = {PIPE_BLOCK, PIPE_LAYERS, PIPE_HEADS,        o->pipe_embd,
                               PIPE_BATCH, PIPE_MICRO,  k ? PIPE_RANKS : 1};
        char tag[32];
        sl_train_summary sum;
        fprintf(stderr, "bench train: round %d/%d: pipeline GPT on %d rank%s, 1 + %d steps...\n",
                round + 1, o->rounds, sh.ranks, sh.ranks == 1 ? "" : "s", o->pipe_steps);
        snprintf(tag, sizeof tag, "pipe%d-%d", sh.ranks, round);
        int rc = gpt_train_run(tmp, tag, data, &sh, o->pipe_steps, o->device, &sum);
        if (rc != SL_OK) return rc;
        res->pipe_runs[k][round] = sum.samples_per_s * PIPE_BLOCK;
        if (sum.samples_per_s > res->pipe[k].samples_per_s) res->pipe[k] = sum;
    }
    return SL_OK;
}

static int measure(const struct options *o, const char *tmp, const char *data,
                   const char *pipe_data, struct results *res)
{
    int rc = write_tokens(data, GPT_BLOCK);
    if (rc == SL_OK && o->pipe_steps > 0) rc = write_tokens(pipe_data, PIPE_BLOCK);
    for (int round = 0; round < o->rounds && rc == SL_OK; round++) {
        char tag[32];
        sl_train_summary sum;
        fprintf(stderr, "bench train: round %d/%d: GPT, sluice on 1 rank, 1 + %d steps...\n",
                round + 1, o->rounds, o->steps);
        snprintf(tag, sizeof tag, "gpt-%d", round);
        rc = gpt_train_run(tmp, tag, data, &gpt_bench, o->steps, o->device, &sum);
        if (rc != SL_OK) break;
        res->runs[round] = sum.samples_per_s * GPT_BLOCK;
        if (sum.samples_per_s > res->best.samples_per_s) res->best = sum;
        /* A missing interpreter or torch stays missing: ask once. */
        if (round == 0 || res->torch.tokens_per_s > 0) {
            fprintf(stderr,
                    "bench train: round %d/%d: GPT, PyTorch on 1 thread, %d + %d steps...\n",
                    round + 1, o->rounds, o->warmup, o->steps);
            struct torch_result t;
            torch_run(tmp, data, o, &t);
            res->torch_runs[round] = t.tokens_per_s;
            if (round == 0 || t.tokens_per_s > res->torch.tokens_per_s) {
                cJSON_Delete(res->torch.obj);
                res->torch = t;
            } else {
                cJSON_Delete(t.obj);
            }
        }
        if (o->pipe_steps > 0) rc = pipe_round(o, tmp, pipe_data, round, res);
    }
    return rc;
}

static double pipe_speedup(const struct results *res)
{
    return res->pipe[0].samples_per_s > 0 ? res->pipe[1].samples_per_s / res->pipe[0].samples_per_s
                                          : NAN;
}

/* The JSON object of the pipeline row. */
static void add_pipe_json(cJSON *pj, const struct options *o, const struct results *res)
{
    cJSON *m = cJSON_AddObjectToObject(pj, "model");
    cJSON_AddNumberToObject(m, "vocab_size", GPT_VOCAB);
    cJSON_AddNumberToObject(m, "block_size", PIPE_BLOCK);
    cJSON_AddNumberToObject(m, "n_layer", PIPE_LAYERS);
    cJSON_AddNumberToObject(m, "n_head", PIPE_HEADS);
    cJSON_AddNumberToObject(m, "n_embd", o->pipe_embd);
    cJSON_AddBoolToObject(m, "bias", 1);
    cJSON_AddBoolToObject(m, "tie_embeddings", 1);
    cJSON_AddStringToObject(pj, "baseline", "the same GPT on 1 rank, 1 thread");
    cJSON_AddNumberToObject(pj, "batch", PIPE_BATCH);
    cJSON_AddNumberToObject(pj, "microbatches", PIPE_MICRO);
    cJSON_AddNumberToObject(pj, "tokens_per_step", PIPE_BATCH * PIPE_BLOCK);
    cJSON_AddStringToObject(pj, "schedule", "1f1b");
    cJSON_AddNumberToObject(pj, "threads_per_rank", 1);
    cJSON_AddNumberToObject(pj, "steps", o->pipe_steps);
    cJSON *runs = cJSON_AddArrayToObject(pj, "runs");
    for (int k = 0; k < 2; k++) {
        const sl_train_summary *s = &res->pipe[k];
        cJSON *r = cJSON_CreateObject();
        cJSON_AddNumberToObject(r, "ranks", k ? PIPE_RANKS : 1);
        cJSON_AddNumberToObject(r, "tokens_per_s", s->samples_per_s * PIPE_BLOCK);
        cJSON_AddItemToObject(r, "tokens_per_s_rounds",
                              sl__bench_train_rounds_array(res->pipe_runs[k], o->rounds));
        cJSON_AddNumberToObject(r, "samples_per_s", s->samples_per_s);
        cJSON_AddNumberToObject(r, "final_loss", s->final_loss);
        cJSON_AddItemToObject(r, "bubble_measured",
                              sl__bench_train_bubble_or_null(s->bubble_measured));
        cJSON_AddItemToObject(r, "bubble_predicted",
                              sl__bench_train_bubble_or_null(s->bubble_predicted));
        cJSON_AddItemToArray(runs, r);
    }
    double ratio = pipe_speedup(res);
    cJSON_AddItemToObject(pj, "ratio", sl__bench_train_number_or_null(ratio));
    cJSON_AddStringToObject(pj, "ratio_is", "tokens/s on 2 ranks over tokens/s on 1 rank");
    cJSON_AddStringToObject(pj, "target", pipe_target_text);
    cJSON_AddNumberToObject(pj, "target_ratio", PIPE_TARGET);
    cJSON_AddNumberToObject(pj, "bubble_bound_ratio", 2.0 * (PIPE_MICRO) / (PIPE_MICRO + 1));
    cJSON_AddItemToObject(pj, "target_met",
                          isfinite(ratio) ? cJSON_CreateBool(ratio >= PIPE_TARGET)
                                          : cJSON_CreateNull());
}

static void print_pipe_table(const struct options *o, const struct results *res)
{
    printf("\npipeline: GPT vocab %d, block %d, %d layers, %d heads, %d wide, bias, tied; batch "
           "%d\n(%d tokens) in %d micro-batches, 1F1B, 1 thread per rank, same AdamW; %d timed "
           "steps\n",
           GPT_VOCAB, PIPE_BLOCK, PIPE_LAYERS, PIPE_HEADS, o->pipe_embd, PIPE_BATCH,
           PIPE_BATCH * PIPE_BLOCK, PIPE_MICRO, o->pipe_steps);
    printf("  %-6s %12s %9s %9s %9s\n", "ranks", "tokens/s", "speed-up", "bubble", "(model)");
    for (int k = 0; k < 2; k++) {
        const sl_train_summary *s = &res->pipe[k];
        printf("  %-6d %12.0f %8.2fx %9.3f %9.3f%s\n", k ? PIPE_RANKS : 1,
               s->samples_per_s * PIPE_BLOCK, k ? pipe_speedup(res) : 1.0, s->bubble_measured,
               s->bubble_predicted, k ? "" : "  (baseline)");
    }
    double r = pipe_speedup(res);
    printf("  target: %s: %s\n", pipe_target_text,
           isfinite(r) ? (r >= PIPE_TARGET ? "met" : "not met") : "not measured");
}

static void print_json(const struct options *o, const struct results *res, double ratio,
                       const char *torch_version)
{
    const struct torch_result *torch = &res->torch;
    const char *blas = openblas_get_config();
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "name", "train-gpt");
    cJSON_AddStringToObject(root, "baseline",
                            torch->tokens_per_s > 0
                                ? "PyTorch, nanoGPT's GPT with torch.nn modules, same "
                                  "batch/optimizer/param groups/clipping, 1 thread"
                                : "none: no PyTorch figure (see torch_note)");
    cJSON_AddItemToObject(root, "ratio", sl__bench_train_number_or_null(ratio));
    cJSON_AddStringToObject(root, "ratio_is", "sluice's tokens/s over PyTorch's");
    cJSON_AddStringToObject(root, "target", target_text);
    cJSON_AddNumberToObject(root, "target_ratio", TARGET);
    cJSON_AddItemToObject(root, "target_met",
                          isfinite(ratio) ? cJSON_CreateBool(ratio >= TARGET) : cJSON_CreateNull());
    cJSON_AddStringToObject(root, "device", o->device);
    cJSON_AddNumberToObject(root, "threads_per_rank", 1);
    cJSON_AddStringToObject(root, "openblas", blas ? blas : "?");
    cJSON_AddNumberToObject(root, "cores", (double)sysconf(_SC_NPROCESSORS_ONLN));
    cJSON_AddNumberToObject(root, "rounds", o->rounds);
    cJSON *m = cJSON_AddObjectToObject(root, "model");
    cJSON_AddNumberToObject(m, "vocab_size", GPT_VOCAB);
    cJSON_AddNumberToObject(m, "block_size", GPT_BLOCK);
    cJSON_AddNumberToObject(m, "n_layer", GPT_LAYERS);
    cJSON_AddNumberToObject(m, "n_head", GPT_HEADS);
    cJSON_AddNumberToObject(m, "n_embd", GPT_EMBD);
    cJSON_AddBoolToObject(m, "bias", 1);
    cJSON_AddBoolToObject(m, "tie_embeddings", 1);
    cJSON_AddNumberToObject(root, "batch", GPT_BATCH);
    cJSON_AddNumberToObject(root, "microbatches", 1);
    cJSON_AddNumberToObject(root, "tokens_per_step", GPT_BATCH * GPT_BLOCK);
    cJSON_AddStringToObject(root, "optimizer",
                            "adamw lr 1e-3 betas 0.9/0.95 eps 1e-8 weight_decay 0.1 (2-D tensors)");
    cJSON_AddNumberToObject(root, "grad_clip", 1.0);
    cJSON_AddNumberToObject(root, "steps", o->steps);
    cJSON_AddNumberToObject(root, "tokens_per_s", res->best.samples_per_s * GPT_BLOCK);
    cJSON_AddItemToObject(root, "tokens_per_s_rounds",
                          sl__bench_train_rounds_array(res->runs, o->rounds));
    cJSON_AddNumberToObject(root, "samples_per_s", res->best.samples_per_s);
    cJSON_AddNumberToObject(root, "final_loss", res->best.final_loss);
    cJSON_AddItemToObject(root, "torch_tokens_per_s",
                          sl__bench_train_number_or_null(torch->tokens_per_s));
    if (torch->tokens_per_s > 0) {
        cJSON_AddItemToObject(root, "torch_tokens_per_s_rounds",
                              sl__bench_train_rounds_array(res->torch_runs, o->rounds));
        cJSON *loss = cJSON_GetObjectItem(torch->obj, "final_loss");
        if (cJSON_IsNumber(loss))
            cJSON_AddNumberToObject(root, "torch_final_loss", loss->valuedouble);
        cJSON *params = cJSON_GetObjectItem(torch->obj, "params");
        if (cJSON_IsNumber(params)) cJSON_AddNumberToObject(m, "params", params->valuedouble);
    }
    cJSON_AddItemToObject(root, "torch",
                          torch_version ? cJSON_CreateString(torch_version) : cJSON_CreateNull());
    if (torch->note[0]) cJSON_AddStringToObject(root, "torch_note", torch->note);
    cJSON_AddNumberToObject(root, "torch_warmup_steps", o->warmup);
    if (o->pipe_steps > 0) add_pipe_json(cJSON_AddObjectToObject(root, "pipeline"), o, res);
    sl_bench_print_json(root);
}

static void print_table(const struct options *o, const struct results *res, double ratio,
                        const char *torch_version)
{
    const struct torch_result *torch = &res->torch;
    const char *blas = openblas_get_config();
    printf("sluice bench train --model gpt  (device %s, 1 OpenBLAS thread, %ld cores, best of %d "
           "round%s; %s)\n\n",
           o->device, sysconf(_SC_NPROCESSORS_ONLN), o->rounds, o->rounds == 1 ? "" : "s",
           blas ? blas : "OpenBLAS ?");
    printf("GPT: vocab %d, block %d, %d layers, %d heads, %d wide, bias, tied; batch %d (%d "
           "tokens)\nin 1 micro-batch, AdamW lr 1e-3 betas 0.9/0.95 wd 0.1, clip 1.0; %d timed "
           "steps\n",
           GPT_VOCAB, GPT_BLOCK, GPT_LAYERS, GPT_HEADS, GPT_EMBD, GPT_BATCH, GPT_BATCH * GPT_BLOCK,
           o->steps);
    printf("  %-34s %12s %8s\n", "", "tokens/s", "ratio");
    printf("  %-34s %12.0f %8s\n", "sluice (1 rank, 1 thread)", res->best.samples_per_s * GPT_BLOCK,
           torch->tokens_per_s > 0 ? "" : "-");
    if (torch->tokens_per_s > 0) {
        char who[64];
        snprintf(who, sizeof who, "PyTorch %s (1 thread)", torch_version ? torch_version : "");
        printf("  %-34s %12.0f %8s\n", who, torch->tokens_per_s, "baseline");
        printf("  %-34s %12s %7.2fx\n", "sluice / PyTorch", "", ratio);
        printf("  target: %s: %s\n", target_text, ratio >= TARGET ? "met" : "not met");
    } else {
        printf("  PyTorch: %s; no ratio\n  target: %s: not measured\n", torch->note, target_text);
    }
    if (o->pipe_steps > 0) print_pipe_table(o, res);
}

int sl_bench_train_gpt(int argc, char **argv)
{
    struct options o;
    int status = parse_options(argc, argv, &o);
    if (status >= 0) return status;

    char tmp[1024], data[1200];
    const char *tmpdir = getenv("TMPDIR");
    snprintf(tmp, sizeof tmp, "%s/sluice-bench-gpt-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    if (!mkdtemp(tmp)) {
        fprintf(stderr, "sluice bench train: cannot create a temporary directory %s\n", tmp);
        return 1;
    }
    char pipe_data[1200];
    snprintf(data, sizeof data, "%s/tokens.safetensors", tmp);
    snprintf(pipe_data, sizeof pipe_data, "%s/tokens-pipe.safetensors", tmp);
    if (o.shakespeare) {
        int rc = sl__bench_train_gpt_shakespeare(o.shakespeare_config, o.python, o.no_torch, o.json,
                                                 tmp);
        if (sl_remove_tree(tmp) != SL_OK)
            fprintf(stderr, "sluice bench train: %s\n", sl_last_error());
        return rc;
    }
    struct results res = {0};
    int rc = measure(&o, tmp, data, pipe_data, &res);
    if (rc != SL_OK) fprintf(stderr, "sluice bench train: %s\n", sl_last_error());
    if (sl_remove_tree(tmp) != SL_OK) fprintf(stderr, "sluice bench train: %s\n", sl_last_error());
    if (rc != SL_OK) {
        cJSON_Delete(res.torch.obj);
        return 1;
    }
    const struct torch_result *torch = &res.torch;
    double ratio =
        torch->tokens_per_s > 0 ? res.best.samples_per_s * GPT_BLOCK / torch->tokens_per_s : NAN;
    const char *version = torch->obj && !torch->note[0]
                              ? cJSON_GetStringValue(cJSON_GetObjectItem(torch->obj, "torch"))
                              : NULL;
    if (o.json)
        print_json(&o, &res, ratio, version);
    else
        print_table(&o, &res, ratio, version);
    cJSON_Delete(res.torch.obj);
    return 0;
}
