/* sluice: the command-line entry point. Dispatches to one function per subcommand. */
#include <stdio.h>
#include <string.h>

#include "runtime/cli/cli.h"
#include "core/core.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"devices", sl_cmd_devices, "list the compute devices sluice can use, with their ids"},
    {"schedule", sl_cmd_schedule, "generate, validate and simulate a pipeline schedule"},
    {"plan", sl_cmd_plan, "show how a config's model is cut into stages and placed on devices"},
    {"train", sl_cmd_train, "train a model on a pipeline of stage processes"},
    {"sample", sl_cmd_sample, "generate text from a GPT run directory, as nanoGPT's sample.py"},
    {"trace", sl_cmd_trace,
     "summarise a run's trace.json (time per rank, critical path) or draw it"},
    {"keys", sl_cmd_keys, "generate CURVE key pairs for encrypted links"},
    {"bench", sl_cmd_bench, "run a benchmark (kernels, transport, train, pipeline, partition)"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: sluice <command> [options]\n\n"
                 "sluice trains models cut into pipeline stages, one process per stage, on any\n"
                 "OpenCL or Vulkan device or the CPU.\n\ncommands:\n");
    for (size_t i = 0; i < SL_ARRAY_LEN(commands); i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nRun `sluice <command> --help` for a command's options.\n");
}

int sl_cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return 1;
    return 0;
}

int sl_cli_error(const char *cmd, int status)
{
    const char *msg = sl_last_error();
    fprintf(stderr, "sluice %s: %s\n", cmd, msg[0] ? msg : sl_strerror(status));
    return 1;
}

int main(int argc, char **argv)
{
    sl_tune_malloc();
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("sluice 0.1.0\n");
        return 0;
    }
    for (size_t i = 0; i < SL_ARRAY_LEN(commands); i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "sluice: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
