/* `sluice schedule`: placeholder until the schedules module lands. */
#include <stdio.h>

#include "runtime/cli/cli.h"

int sl_cmd_schedule(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "sluice schedule: not available in this build yet\n");
    return 2;
}
