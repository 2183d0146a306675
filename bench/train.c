/* `sluice bench train`: placeholder until its module lands. */
#include <stdio.h>

#include "bench/bench.h"

int sl_bench_train(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "sluice bench train: not available in this build yet\n");
    return 2;
}
