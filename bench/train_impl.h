/* The internals of `sluice bench train`, shared by its files and by nothing else:
 *
 *   train.c                  the digits model and the pipeline speed-up (the default model)
 *   train_gpt.c              --model gpt: the GPT against PyTorch, and the GPT pipeline row
 *   train_gpt_shakespeare.c  --model gpt --shakespeare: time to a validation loss
 *   train_common.c           what they share: training a config, running a PyTorch baseline
 *                            script, JSON helpers
 *
 * Names shared between the files are sl__bench_train_*; the rest are static. */
#ifndef SL_BENCH_TRAIN_IMPL_H
#define SL_BENCH_TRAIN_IMPL_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "runtime/train/train.h"

/* Trains the config `root` (deleted here; relative paths against dir) through sluice train's
 * machinery into *sum; fails, naming `what` and the rank count, when the run fails or measures no
 * samples/s. */
int sl__bench_train_config(cJSON *root, const char *dir, const char *what, int ranks,
                           sl_train_summary *sum);

/* Readies a PyTorch baseline: unless no_torch or `python` is not executable, writes the embedded
 * script (text, size bytes) into tmp/name and its path into script. Returns 1 when ready, else 0
 * with the reason in note. */
int sl__bench_train_torch_prepare(const char *python, int no_torch, const char *tmp,
                                  const char *name, const unsigned char *text, size_t size,
                                  char *script, size_t script_size, char *note, size_t note_size);

/* Runs the shell command cmd and parses the last line of its output that starts with '{' (lines
 * read line_size bytes at a time, at most 16384) into *obj (NULL when none) and its exit status
 * into *status. Returns 0, or -1 with "cannot start <python>" in note when cmd cannot start. */
int sl__bench_train_last_json(const char *cmd, const char *python, size_t line_size, cJSON **obj,
                              int *status, char *note, size_t note_size);

/* Runs a PyTorch baseline command (sl__bench_train_last_json, lines of 4096 bytes) and returns the
 * number `key` of its result, or 0 with a note: it did not start, gave no result, has no PyTorch
 * or measured nothing. *obj keeps the result (NULL when none), to be deleted by the caller. */
double sl__bench_train_torch_figure(const char *cmd, const char *python, const char *key,
                                    cJSON **obj, char *note, size_t note_size);

/* v when positive and finite, else null. */
cJSON *sl__bench_train_number_or_null(double v);

/* v[0..n-1] with sl__bench_train_number_or_null. */
cJSON *sl__bench_train_rounds_array(const double *v, int n);

/* v when finite, else null. */
cJSON *sl__bench_train_bubble_or_null(double v);

/* --model gpt --shakespeare: the sample config trained by sluice, then the same recipe by PyTorch;
 * returns the exit status. */
int sl__bench_train_gpt_shakespeare(const char *config, const char *python, int no_torch, int json,
                                    const char *tmp);

#endif
