/* `sluice schedule`: generate, validate and simulate a pipeline schedule, and show it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cli/cli.h"
#include "core/core.h"
#include "runtime/schedule/schedule.h"

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: sluice schedule --schedule NAME --stages D --microbatches M [--chunks V]\n"
        "                       [--recompute] [--tied] [--clip] [--costs F,B[,W]] [--latency L]\n"
        "                       [--queue-depth Q] [--format text|json|svg] [--json]\n\n"
        "Generates the action list of every rank, checks it (every dependency, and a run of\n"
        "all ranks over links that hold Q messages), simulates it in time and prints it.\n\n"
        "  --schedule NAME     gpipe, 1f1b, interleaved or zb-h1\n"
        "  --stages D          number of ranks (pipeline.stages); D >= 1\n"
        "  --microbatches M    micro-batches per step; M >= 1 (interleaved: a multiple of D)\n"
        "  --chunks V          model chunks per rank: 1, or >= 2 for interleaved (default 1;\n"
        "                      there are D*V model stages, stage s runs on rank s mod D)\n"
        "  --recompute         stash only each stage's input; recompute (R) before backward\n"
        "  --tied              the first and last stage hold copies of a tied parameter (a\n"
        "                      GPT's wte and lm_head): TIED sums their gradients before OPT\n"
        "  --clip              gradient clipping: NORM combines the gradient norm of every\n"
        "                      rank before OPT (with D >= 2)\n"
        "  --costs F,B[,W]     time of one forward, one backward per stage and micro-batch\n"
        "                      (default 1,2); W is the weight-gradient part of B, used by\n"
        "                      zb-h1 (default B/2; its I costs B-W); R costs F\n"
        "  --latency L         time a transfer takes between ranks (default 0)\n"
        "  --queue-depth Q     messages a link holds before a send blocks (default %d)\n"
        "  --format FMT        text (a timeline table), json, or svg (default text)\n"
        "  --json              same as --format json\n",
        SL_SCHEDULE_QUEUE_DEPTH);
}

static int bad(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "sluice schedule: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n");
    return 2;
}

/* A whole decimal integer, or -1 with a message. */
static int parse_int(const char *opt, const char *text, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < -1000000000L || v > 1000000000L)
        return bad("%s needs a whole number (got '%s')", opt, text);
    *out = (int)v;
    return 0;
}

static int parse_double(const char *opt, const char *text, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !(v >= 0) || v > 1e12)
        return bad("%s needs a number >= 0 (got '%s')", opt, text);
    *out = v;
    return 0;
}

static int parse_costs(const char *text, sl_schedule_costs *c)
{
    double v[3] = {0, 0, 0};
    int n = 0;
    const char *p = text;
    while (n < 3) {
        char *end;
        errno = 0;
        v[n] = strtod(p, &end);
        if (errno || end == p || !(v[n] > 0) || v[n] > 1e12) break;
        n++;
        if (*end == 0) {
            p = end;
            break;
        }
        if (*end != ',') break;
        p = end + 1;
    }
    if (n < 2 || *p)
        return bad("--costs needs F,B or F,B,W: positive numbers, e.g. 1,2 or 1,2,1 (got '%s')%s",
                   text, "");
    c->f = v[0];
    c->b = v[1];
    c->w = n == 3 ? v[2] : 0;
    return 0;
}

int sl_cmd_schedule(int argc, char **argv)
{
    sl_schedule_params p = {.name = NULL, .ranks = 0, .microbatches = 0, .chunks = 1};
    sl_schedule_costs costs = {0};
    const char *format = "text";
    bool have_d = false, have_m = false, tied = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--recompute")) {
            p.recompute = true;
            continue;
        }
        if (!strcmp(a, "--tied")) {
            tied = true;
            continue;
        }
        if (!strcmp(a, "--clip")) {
            p.norm = true;
            continue;
        }
        if (!strcmp(a, "--json")) {
            format = "json";
            continue;
        }
        static const char *const with_value[] = {"--schedule", "--stages",     "--microbatches",
                                                 "--chunks",   "--costs",      "--format",
                                                 "--latency",  "--queue-depth"};
        bool known = false;
        for (size_t k = 0; k < SL_ARRAY_LEN(with_value); k++) known |= !strcmp(a, with_value[k]);
        if (!known) {
            bad("unknown option '%s'%s; see sluice schedule --help", a, "");
            return 2;
        }
        if (i + 1 >= argc) return bad("%s needs a value%s; see sluice schedule --help", a, "");
        const char *v = argv[++i];
        int rc = 0;
        if (!strcmp(a, "--schedule"))
            p.name = v;
        else if (!strcmp(a, "--stages"))
            rc = parse_int(a, v, &p.ranks), have_d = true;
        else if (!strcmp(a, "--microbatches"))
            rc = parse_int(a, v, &p.microbatches), have_m = true;
        else if (!strcmp(a, "--chunks"))
            rc = parse_int(a, v, &p.chunks);
        else if (!strcmp(a, "--costs"))
            rc = parse_costs(v, &costs);
        else if (!strcmp(a, "--latency"))
            rc = parse_double(a, v, &costs.latency);
        else if (!strcmp(a, "--queue-depth")) {
            rc = parse_int(a, v, &costs.queue_depth);
            if (!rc && costs.queue_depth < 1)
                rc = bad("--queue-depth must be at least 1 (got %s)%s", v, "");
        } else if (!strcmp(a, "--format")) {
            if (strcmp(v, "text") && strcmp(v, "json") && strcmp(v, "svg"))
                rc = bad("--format must be text, json or svg (got '%s')%s", v, "");
            format = v;
        }
        if (rc) return rc;
    }
    if (!p.name || !have_d || !have_m)
        return bad("needs --schedule NAME, --stages D and --microbatches M%s%s; see sluice "
                   "schedule --help",
                   "", "");
    if (p.chunks < 1) {
        fprintf(stderr, "sluice schedule: --chunks must be at least 1 (got %d)\n", p.chunks);
        return 2;
    }

    if (tied && p.ranks * p.chunks > 1) {
        p.tied_stages[0] = 0;
        p.tied_stages[1] = p.ranks * p.chunks - 1;
    }
    sl_schedule *s = NULL;
    int st = sl_schedule_generate(&p, &s);
    if (st == SL_EINVAL) {
        fprintf(stderr, "sluice schedule: %s\n", sl_last_error());
        return 2;
    }
    if (st) return sl_cli_error("schedule", st);
    sl_schedule_sim sim;
    st = sl_schedule_simulate(s, &costs, &sim);
    if (st == SL_EINVAL && (costs.f || costs.latency)) {
        /* Generated schedules are valid, so EINVAL here is about the costs the user gave. */
        fprintf(stderr, "sluice schedule: %s\n", sl_last_error());
        sl_schedule_free(s);
        return 2;
    }
    if (st) {
        sl_schedule_free(s);
        return sl_cli_error("schedule", st);
    }
    if (!strcmp(format, "json"))
        st = sl_schedule_write_json(stdout, s, &sim);
    else if (!strcmp(format, "svg"))
        st = sl_schedule_write_svg(stdout, s, &sim);
    else
        st = sl_schedule_write_text(stdout, s, &sim);
    sl_schedule_sim_free(&sim);
    sl_schedule_free(s);
    return st ? sl_cli_error("schedule", st) : 0;
}
