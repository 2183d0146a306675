/* `sluice trace RUN_DIR|trace.json`: what each rank spent its time on, from a run's trace. */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/cli/cli.h"
#include "core/core.h"

#define MAX_RANKS 256

/* Action kinds as the trace names them: "3F1", "0B2", "SEND_F 0F1->r1", "OPT". */
enum { K_F, K_B, K_I, K_W, K_R, K_SEND, K_RECV, K_OPT, K_COUNT };
static const char *kind_names[K_COUNT] = {"F", "B", "I", "W", "R", "SEND", "RECV", "OPT"};

static int kind_of(const char *name)
{
    if (!strncmp(name, "SEND", 4)) return K_SEND;
    if (!strncmp(name, "RECV", 4)) return K_RECV;
    if (!strcmp(name, "OPT")) return K_OPT;
    const char *p = name;
    while (*p >= '0' && *p <= '9') p++;
    switch (*p) {
    case 'F':
        return K_F;
    case 'B':
        return K_B;
    case 'I':
        return K_I;
    case 'W':
        return K_W;
    case 'R':
        return K_R;
    default:
        return -1;
    }
}

typedef struct rank_stats {
    char label[128];
    double us[K_COUNT];
    long n[K_COUNT];
    double first, last;
    bool seen;
} rank_stats;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sluice trace RUN_DIR|TRACE_JSON [--json]\n\n"
            "Summarises a run's trace.json (written by `sluice train` into output.dir): per\n"
            "rank, the time spent in forward (F), backward (B, or I and W), recompute (R),\n"
            "sends, receives (waiting for a neighbour) and the optimizer, and the idle share.\n"
            "The trace itself opens in Perfetto (ui.perfetto.dev) or chrome://tracing.\n");
}

int sl_cmd_trace(int argc, char **argv)
{
    const char *path = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (argv[i][0] == '-' || path) {
            fprintf(stderr, "sluice trace: unexpected argument '%s' (try --help)\n", argv[i]);
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        usage(stderr);
        return 2;
    }
    char file[1200];
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        snprintf(file, sizeof file, "%s/trace.json", path);
    else
        snprintf(file, sizeof file, "%s", path);
    char *text;
    size_t len;
    int st = sl_read_file(file, &text, &len);
    if (st != SL_OK) return sl_cli_error("trace", st);
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *events = cJSON_GetObjectItem(root, "traceEvents");
    if (!cJSON_IsArray(events)) {
        cJSON_Delete(root);
        sl_fail(SL_EFORMAT, "%s is not a Chrome trace (no traceEvents array)", file);
        return sl_cli_error("trace", SL_EFORMAT);
    }
    rank_stats *ranks = calloc(MAX_RANKS, sizeof *ranks);
    if (!ranks) return sl_cli_error("trace", SL_ENOMEM);
    int nranks = 0;
    const cJSON *ev;
    cJSON_ArrayForEach(ev, events)
    {
        int tid = sl_to_int(cJSON_GetNumberValue(cJSON_GetObjectItem(ev, "tid")), -1);
        const char *ph = cJSON_GetStringValue(cJSON_GetObjectItem(ev, "ph"));
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(ev, "name"));
        if (tid < 0 || tid >= MAX_RANKS || !ph || !name) continue;
        rank_stats *r = &ranks[tid];
        nranks = SL_MAX(nranks, tid + 1);
        if (!strcmp(ph, "M")) {
            const char *label =
                cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "args"), "name"));
            snprintf(r->label, sizeof r->label, "%s", label ? label : "");
            continue;
        }
        int k = kind_of(name);
        if (strcmp(ph, "X") != 0 || k < 0) continue;
        double ts = cJSON_GetNumberValue(cJSON_GetObjectItem(ev, "ts"));
        double dur = cJSON_GetNumberValue(cJSON_GetObjectItem(ev, "dur"));
        if (!r->seen || ts < r->first) r->first = ts;
        r->seen = true;
        if (ts + dur > r->last) r->last = ts + dur;
        r->us[k] += dur;
        r->n[k]++;
    }
    cJSON_Delete(root);

    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "trace", file);
    cJSON *arr = cJSON_AddArrayToObject(out, "ranks");
    if (!json) {
        printf("%-22s", "rank");
        for (int k = 0; k < K_COUNT; k++) printf(" %9s", kind_names[k]);
        printf(" %9s %6s\n", "span", "idle");
    }
    for (int i = 0; i < nranks; i++) {
        rank_stats *r = &ranks[i];
        double span = r->last - r->first, compute = 0;
        for (int k = K_F; k <= K_R; k++) compute += r->us[k];
        compute += r->us[K_OPT];
        double idle = span > 0 ? 1.0 - compute / span : 0;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "rank", i);
        cJSON_AddStringToObject(o, "label", r->label);
        for (int k = 0; k < K_COUNT; k++) {
            char key[32];
            snprintf(key, sizeof key, "%s_ms", kind_names[k]);
            cJSON_AddNumberToObject(o, key, r->us[k] / 1e3);
        }
        cJSON_AddNumberToObject(o, "span_ms", span / 1e3);
        cJSON_AddNumberToObject(o, "idle_ratio", idle);
        cJSON_AddItemToArray(arr, o);
        if (!json) {
            printf("%-22.22s", r->label[0] ? r->label : "?");
            for (int k = 0; k < K_COUNT; k++) printf(" %7.1fms", r->us[k] / 1e3);
            printf(" %7.1fms %5.1f%%\n", span / 1e3, 100 * idle);
        }
    }
    if (json) {
        char *t = cJSON_Print(out);
        printf("%s\n", t ? t : "{}");
        free(t);
    }
    cJSON_Delete(out);
    free(ranks);
    return 0;
}
