/* `sluice devices`: every usable device with the id configs use. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "runtime/cli/cli.h"

static const char *kind_name(enum sl_device_kind kind)
{
    switch (kind) {
    case SL_DEVICE_CPU:
        return "CPU";
    case SL_DEVICE_GPU:
        return "GPU";
    case SL_DEVICE_ACCELERATOR:
        return "accelerator";
    default:
        return "other";
    }
}

static void print_json(const sl_device_info *infos, size_t count)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(root, "devices");
    for (size_t i = 0; i < count; i++) {
        const sl_device_info *d = &infos[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", d->id);
        cJSON_AddStringToObject(o, "backend", d->backend);
        cJSON_AddStringToObject(o, "name", d->name);
        cJSON_AddStringToObject(o, "vendor", d->vendor);
        cJSON_AddStringToObject(o, "kind", kind_name(d->kind));
        cJSON_AddStringToObject(o, "driver", d->driver);
        cJSON_AddNumberToObject(o, "memory_bytes", (double)d->memory_bytes);
        cJSON_AddNumberToObject(o, "compute_units", d->compute_units);
        cJSON_AddNumberToObject(o, "max_alloc_bytes", (double)d->max_alloc_bytes);
        cJSON_AddNumberToObject(o, "max_buffer_range", (double)d->max_buffer_range);
        cJSON_AddNumberToObject(o, "max_workgroup_size", d->max_workgroup_size);
        cJSON_AddBoolToObject(o, "timestamps", d->timestamps);
        cJSON_AddItemToArray(arr, o);
    }
    const char *problems = sl_device_list_problems();
    cJSON *probs = cJSON_AddArrayToObject(root, "unavailable");
    char *copy = strdup(problems), *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        cJSON_AddItemToArray(probs, cJSON_CreateString(line));
    free(copy);
    char *text = cJSON_Print(root);
    printf("%s\n", text);
    free(text);
    cJSON_Delete(root);
}

int sl_cmd_devices(int argc, char **argv)
{
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: sluice devices [--json]\n\n"
                   "Lists every device sluice can run a stage on: the CPU backend, every OpenCL\n"
                   "platform's devices and every Vulkan physical device (CPU drivers such as PoCL\n"
                   "and lavapipe included). The ID column is what configs name in \"devices\".\n\n"
                   "  --json   one JSON object with a \"devices\" array, for tools\n");
            return 0;
        } else {
            fprintf(stderr, "sluice devices: unknown option '%s' (try --help)\n", argv[i]);
            return 2;
        }
    }
    const sl_device_info *infos;
    size_t count;
    int st = sl_device_list(&infos, &count);
    if (st != SL_OK) return sl_cli_error("devices", st);
    if (json) {
        print_json(infos, count);
        return 0;
    }
    printf("%-10s %-5s %-44s %-34s %10s %5s\n", "ID", "KIND", "NAME", "DRIVER", "MEMORY", "CUs");
    for (size_t i = 0; i < count; i++) {
        const sl_device_info *d = &infos[i];
        printf("%-10s %-5s %-44.44s %-34.34s %7.1f GiB %5u\n", d->id, kind_name(d->kind), d->name,
               d->driver, (double)d->memory_bytes / (1024.0 * 1024.0 * 1024.0), d->compute_units);
    }
    const char *problems = sl_device_list_problems();
    if (problems[0]) printf("\nunavailable:\n%s", problems);
    return 0;
}
