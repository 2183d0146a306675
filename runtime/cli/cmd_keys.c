/* `sluice keys`: placeholder until the keyss module lands. */
#include <stdio.h>

#include "runtime/cli/cli.h"

int sl_cmd_keys(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "sluice keys: not available in this build yet\n");
    return 2;
}
