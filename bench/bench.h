/* Benchmarks behind `sluice bench NAME`. Each prints a table for people and, with --json, one JSON
 * object with at least "name", "baseline" (what the ratio is against, measured in the same run),
 * "ratio" (the headline figure over the baseline) and the raw figures. Each returns an exit
 * status like the CLI commands. */
#ifndef SL_BENCH_H
#define SL_BENCH_H

#include <cjson/cJSON.h>

int sl_bench_kernels(int argc, char **argv);
int sl_bench_transport(int argc, char **argv);
int sl_bench_train(int argc, char **argv);
/* `sluice bench train --model gpt` (bench/train_gpt.c): nanoGPT's GPT, tokens/s against PyTorch. */
int sl_bench_train_gpt(int argc, char **argv);
/* `sluice bench pipeline` (bench/pipeline.c): each schedule's step time on delay layers against
 * the simulator's ideal makespan, and its bubble ratio against the formula. */
int sl_bench_pipeline(int argc, char **argv);
/* `sluice bench partition` (bench/partition.c): pipeline.partition "time" against "uniform", the
 * plan's predicted step beside the measured one. */
int sl_bench_partition(int argc, char **argv);
/* `sluice bench kernels --tune`: tunes every OpenCL device, prints the best GFLOP/s found against
 * CLBlast's defaults, and saves the cache. Returns an exit status (0, 1 failed, 2 usage). */
int sl_bench_kernels_tune(int argc, char **argv);

/* Prints `obj` as JSON on stdout and frees it. */
void sl_bench_print_json(cJSON *obj);

#endif
