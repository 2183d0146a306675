/* `sluice devices`: every usable device with the id configs use. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/cpu/cpu.h"
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

/* The CPU device's OpenBLAS core, as a JSON object (backends/cpu/cpu.h). */
static cJSON *openblas_json(void)
{
    sl_cpu_blas b;
    sl_cpu_blas_detect(&b);
    char words[160];
    sl_cpu_features_describe(&b.features, words, sizeof words);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "core", b.core);
    cJSON_AddStringToObject(o, "best_core", b.best);
    cJSON_AddBoolToObject(o, "fallback", b.fallback);
    cJSON_AddItemToObject(o, "openblas_coretype",
                          b.coretype_set ? cJSON_CreateString(b.coretype) : cJSON_CreateNull());
    cJSON_AddItemToObject(o, "set_by_sluice_for",
                          b.set_by_sluice ? cJSON_CreateString(b.fallback_of) : cJSON_CreateNull());
    cJSON_AddItemToObject(o, "ranks_coretype",
                          b.rank_coretype[0] ? cJSON_CreateString(b.rank_coretype)
                                             : cJSON_CreateNull());
    cJSON_AddStringToObject(o, "cpu_features", words);
    return o;
}

/* The line under the table for the CPU device: "cpu: OpenBLAS core Prescott (fallback; ranks use
 * SkylakeX); CPU features AVX AVX2 FMA AVX-512". */
static void print_openblas(void)
{
    sl_cpu_blas b;
    sl_cpu_blas_detect(&b);
    char core[160], words[160];
    sl_cpu_blas_describe(&b, core, sizeof core);
    sl_cpu_features_describe(&b.features, words, sizeof words);
    printf("\ncpu: OpenBLAS core %s; CPU features %s\n", core, words[0] ? words : "(SSE only)");
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
        if (!strcmp(d->backend, "cpu")) cJSON_AddItemToObject(o, "openblas", openblas_json());
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
                   "Under the table, the OpenBLAS core the cpu device runs on. Where OpenBLAS\n"
                   "fell back to a generic core on a CPU that supports a better one, and\n"
                   "OPENBLAS_CORETYPE is unset, the ranks sluice starts get OPENBLAS_CORETYPE set\n"
                   "to the better core; a value you set is never changed.\n\n"
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
    for (size_t i = 0; i < count; i++)
        if (!strcmp(infos[i].backend, "cpu")) print_openblas();
    const char *problems = sl_device_list_problems();
    if (problems[0]) printf("\nunavailable:\n%s", problems);
    return 0;
}
