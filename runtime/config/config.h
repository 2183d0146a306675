/* sluice config: the JSON file that describes one training run, with `--set key.path=value`
 * overrides, validated completely before anything runs.
 *
 * Every error is SL_ECONFIG (or SL_EIO for an unreadable file) with one message that names the key,
 * e.g. "config: train.batch (60) must be a multiple of train.microbatches (8)" or
 * "config: unknown key 'train.stpes'". Optional keys get the defaults documented beside each
 * field below. All strings in sl_config are copies owned by it; sl_config_free releases them.
 *
 * Paths in the config (data.path, data.text, model.init) are resolved when loaded: a relative path
 * that exists relative to the current working directory is used as is; otherwise it is taken
 * relative to the directory of the config file, or failing that to the nearest of that directory's
 * ancestors where it exists (so the repository-relative paths in samples/ work from the repository
 * root, from a build directory and from the sample's own directory). A file found nowhere is an
 * error naming the key, and so is one that is not a regular file (a FIFO or a device such as
 * /dev/zero would block or never end). output.dir is relative to the working directory. */
#ifndef SL_CONFIG_H
#define SL_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/model/layer.h"

#ifdef __cplusplus
extern "C" {
#endif

enum sl_optimizer_kind { SL_OPT_SGD, SL_OPT_ADAM, SL_OPT_ADAMW };

typedef struct sl_optimizer_config {
    enum sl_optimizer_kind kind; /* train.optimizer.name: "sgd", "adam" or "adamw" */
    double lr;                   /* required, > 0: the peak rate when lr_schedule is set */
    double momentum;             /* sgd: [0, 1), default 0 */
    double weight_decay;         /* >= 0, default 0 (adamw: 0.01, PyTorch's default) */
    double beta1, beta2;         /* adam, adamw: "betas": [b1, b2], default [0.9, 0.999] */
    double eps;                  /* adam, adamw: default 1e-8 */
} sl_optimizer_config;

/* train.lr_schedule: nanoGPT's get_lr. Linear warm-up over warmup_steps, then cosine decay to
 * min_lr at decay_steps, min_lr after. */
typedef struct sl_lr_schedule {
    bool on;          /* the key is present */
    int warmup_steps; /* >= 0, default 0 */
    int decay_steps;  /* > warmup_steps, default train.steps */
    double min_lr;    /* [0, lr], default lr / 10 */
} sl_lr_schedule;

typedef struct sl_config {
    char *file; /* the config file as given ("" when loaded from text) */
    char *dir;  /* its directory, for resolving relative paths ("." when none) */

    struct {
        int inputs;             /* required, >= 1 */
        int nlayers;            /* >= 1 */
        char **layers;          /* "linear:128", "relu", ...; with gpt: "embedding", n_layer x
                                   "block", "head", expanded from it */
        bool has_gpt;           /* model.gpt was given instead of model.layers (and inputs) */
        sl_gpt_config gpt;      /* model.gpt (nanoGPT's GPTConfig names): vocab_size, block_size,
                                   n_layer, n_head, n_embd required (n_embd a multiple of n_head),
                                   bias and tie_embeddings default true; inputs = block_size */
        enum sl_loss_kind loss; /* "cross_entropy" (default) or "mse" (not with gpt) */
        char *init;             /* resolved path of initial weights (safetensors), or NULL */
        uint64_t seed;          /* weight init seed, default 0 */
    } model;

    struct {
        char *path;           /* resolved path: .safetensors, .csv or .csv.gz (this or text);
                                 with gpt: a .safetensors of token windows (see data.h) */
        char *text;           /* resolved path of a UTF-8 text (.gz too) for a GPT, or NULL */
        double val_fraction;  /* text: [0, 1), the last share held out, default 0.1 */
        double test_fraction; /* [0, 1), default 0: share of rows held out for evaluation; this,
                                 scale and shuffle are refused with gpt */
        double scale;         /* multiplies every feature, default 1 */
        bool shuffle;         /* reshuffle the training rows every epoch, default false */
        uint64_t seed;        /* split and shuffle seed, default 0 */
        char *inputs;         /* safetensors tensor name of the features, default "x" */
        char *labels;         /* safetensors tensor name of the labels or targets, default "y" */
    } data;

    struct {
        int steps;        /* required, >= 1 */
        int batch;        /* required, >= 1, a multiple of microbatches */
        int microbatches; /* default 1 */
        int threads;      /* OpenBLAS threads per rank, 0 (default) = the library's default */
        sl_optimizer_config optimizer;
        sl_lr_schedule lr_schedule;
        double grad_clip; /* the largest global gradient norm (clip_grad_norm_), 0 = off */
    } train;

    struct {
        int interval; /* steps between evaluations of a text's loss, 0 (default) = only at the end;
                         needs data.text (other data is evaluated on its test rows at the end) */
        int iters;    /* batches (of train.batch windows) per evaluation and share, default 20 */
    } eval;

    struct {
        int stages;            /* ranks in the pipeline, default 1 */
        char *schedule;        /* "gpipe", "1f1b" (default), "interleaved", "zb-h1" */
        int chunks;            /* model stages (virtual stages) per rank, default 1 */
        bool recompute;        /* default false */
        char *partition;       /* "uniform" (default), "parameters" (balance parameter counts),
                                  "time" (balance measured cost, runtime/plan), or "explicit"
                                  when the config gives a list */
        int npartition;        /* 0, or stages*chunks when counts are known */
        int *partition_counts; /* layers with parameters per model stage, from "partition": [2, 1,
                                  1], or for "time" the counts the profile gave
                                  ("partition_counts", which plan.json's config records) */
    } pipeline;

    int ndevices;   /* 1 (one id for every rank) or pipeline.stages */
    char **devices; /* device ids as configs name them ("cpu", "opencl:0"); default "cpu" */

    struct {
        int nendpoints;     /* 0, or pipeline.stages */
        char **endpoints;   /* static launch: one ZeroMQ endpoint per rank ("tcp://host:port") */
        bool curve;         /* encrypt and authenticate links with CURVE, default false */
        char *keys;         /* resolved directory of rank<i>.key / rank<i>.pub made by `sluice keys
                               -n <stages> --out DIR`; NULL: a local run makes its own */
        int heartbeat_ms;   /* default 1000, >= 1 */
        int timeout_s;      /* under a launcher: how long the rendezvous waits for every rank;
                               default 120 */
        bool shared_memory; /* links between ranks on one host (ipc://) carry large payloads
                               through shared memory (transport/ring.c); default true */
    } launch;

    struct {
        char *dir;               /* default "runs/<config file name without .json>" or "runs/run" */
        int checkpoint_interval; /* steps between checkpoints, 0 (default) = off */
        bool every_rank; /* under a launcher, every rank also leaves its own weight files in dir
                            (a filesystem every host shares); default false: rank 0 gathers
                            them over the network and the others write nothing there */
        int keep_checkpoints; /* the newest checkpoints kept, older ones removed; 0 (default)
                                 keeps all */
    } output;
} sl_config;

/* The largest config file sl_config_load reads. */
#define SL_CONFIG_MAX_BYTES ((size_t)16 << 20)

/* Reads the JSON file at `path` (a regular file of at most SL_CONFIG_MAX_BYTES: one JSON object
 * and nothing after it but white space, no NUL byte), applies each `sets[i]` ("key.path=value";
 * the value is parsed as JSON when the whole of it is valid JSON, else taken as a string; every
 * part of the key must be non-empty; missing intermediate objects are created),
 * validates everything and fills `out`. On failure `out` holds nothing to free. */
int sl_config_load(const char *path, const char *const *sets, int nsets, sl_config *out);

/* The same from JSON text; relative paths are resolved against `dir` (NULL = "."). */
int sl_config_parse(const char *json, const char *dir, const char *const *sets, int nsets,
                    sl_config *out);

void sl_config_free(sl_config *cfg);

/* The effective config (every default filled in, paths resolved) as JSON text, keys in a fixed
 * order; free() the result. NULL on allocation failure. */
char *sl_config_to_json(const sl_config *cfg, bool pretty);

/* FNV-1a 64 of sl_config_to_json(cfg, false): ranks compare it in their HELLO so that every rank
 * runs the same config. */
uint64_t sl_config_hash(const sl_config *cfg);

/* The device id of rank `rank` (devices[0] when one id is given for all). */
const char *sl_config_device(const sl_config *cfg, int rank);

/* For a run that diverged (rc SL_ENONFINITE, whose message says where), once, where the run's
 * loop sees the failure (the executor's step loop, the reference trainer): appends to the message
 * what to change, "lower train.optimizer.lr or set train.grad_clip", or with clipping on, "lower
 * train.optimizer.lr or train.grad_clip (now 1)". Returns rc, untouched when it is another. */
int sl_config_diverged(const sl_config *cfg, int rc);

/* Number of layers with parameters (the units of the partition) in model.layers. */
int sl_config_param_layers(const sl_config *cfg);

#ifdef __cplusplus
}
#endif
#endif
