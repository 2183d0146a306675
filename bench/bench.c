/* `sluice bench NAME`: dispatch to one benchmark. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "runtime/cli/cli.h"
#include "core/core.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} benches[] = {
    {"kernels", sl_bench_kernels,
     "GEMM GFLOP/s against the device's FMA peak and OpenBLAS; "
     "elementwise, layer norm, softmax, embedding GB/s against a device copy; batched GEMM"},
    {"transport", sl_bench_transport, "link throughput and latency against raw libzmq"},
    {"train", sl_bench_train,
     "training samples/s against PyTorch and 1-rank pipelines; GPT tokens/s"},
    {"pipeline", sl_bench_pipeline,
     "each schedule's step time on delay layers against the simulator's ideal makespan"},
    {"partition", sl_bench_partition,
     "partition \"time\" against \"uniform\": step time, predicted beside measured"},
};

void sl_bench_print_json(cJSON *obj)
{
    char *text = cJSON_Print(obj);
    printf("%s\n", text);
    free(text);
    cJSON_Delete(obj);
}

int sl_cmd_bench(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        FILE *out = argc < 2 ? stderr : stdout;
        fprintf(out, "usage: sluice bench NAME [options] [--json]\n\nbenchmarks:\n");
        for (size_t i = 0; i < SL_ARRAY_LEN(benches); i++)
            fprintf(out, "  %-10s %s\n", benches[i].name, benches[i].summary);
        fprintf(out, "\nEvery benchmark measures its baseline in the same run and prints ratios;\n"
                     "`sluice bench NAME --help` lists its options.\n");
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < SL_ARRAY_LEN(benches); i++)
        if (!strcmp(argv[1], benches[i].name)) return benches[i].run(argc - 1, argv + 1);
    fprintf(stderr, "sluice bench: unknown benchmark '%s' (try --help)\n", argv[1]);
    return 2;
}
