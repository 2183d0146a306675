/* `sluice trace`: placeholder until its module lands (see the training issue). */
#include <stdio.h>

#include "runtime/cli/cli.h"

int sl_cmd_trace(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "sluice trace: not available in this build yet\n");
    return 2;
}
