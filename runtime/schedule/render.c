/* Output for people (a table, an SVG) and for tools (JSON). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "runtime/schedule/schedule_internal.h"

#define LABEL 16

static int check(const sl_schedule *s, const sl_schedule_sim *sim)
{
    if (!s || !sim || sim->ranks != s->ranks || !sim->start)
        return sl_fail(SL_EINVAL, "writing a schedule needs its simulation from "
                                  "sl_schedule_simulate");
    return SL_OK;
}

static void write_summary(FILE *f, const sl_schedule *s, const sl_schedule_sim *sim)
{
    fprintf(f, "makespan %g, bubble ratio %.4f", sim->makespan, sim->bubble_ratio);
    fprintf(f, "\npeak stash (micro-batches%s) per rank:", s->recompute ? ", inputs only" : "");
    for (int r = 0; r < s->ranks; r++) fprintf(f, " %d", sim->peak_activations[r]);
    if (s->split_backward) {
        fprintf(f, "\npeak pending W (micro-batches between I and W) per rank:");
        for (int r = 0; r < s->ranks; r++) fprintf(f, " %d", sim->peak_pending_w[r]);
    }
    if (sim->has_bytes) {
        fprintf(f, "\npeak stash bytes (stashes and stage inputs held at once) per rank:");
        for (int r = 0; r < s->ranks; r++) fprintf(f, " %.0f", sim->peak_bytes[r]);
    }
    fprintf(f, "\nidle per rank:");
    for (int r = 0; r < s->ranks; r++) fprintf(f, " %g", sim->idle[r]);
    fprintf(f, "\n");
}

int sl_schedule_write_text(FILE *f, const sl_schedule *s, const sl_schedule_sim *sim)
{
    SL_TRY(check(s, sim));
    /* One column per time unit; fractional costs are rounded to the nearest unit. */
    size_t cols = (size_t)llround(sim->makespan);
    if (cols > 100000)
        return sl_fail(SL_ELIMIT,
                       "the timeline is too long for a table (%zu "
                       "units); use --format json",
                       cols);
    char *cells = calloc((size_t)s->ranks * (cols ? cols : 1), LABEL);
    if (!cells) return sl_fail(SL_ENOMEM, "out of memory for the timeline table");
    int width = snprintf(NULL, 0, "%zu", cols ? cols - 1 : 0);
    for (int r = 0; r < s->ranks; r++)
        for (size_t i = 0; i < s->count[r]; i++) {
            const sl_action *a = &s->actions[r][i];
            if (!sl__is_compute(a->type)) continue;
            char label[LABEL];
            int n = sl_action_format(a, label, sizeof label);
            width = SL_MAX(width, n);
            long t0 = llround(sim->start[r][i]), t1 = llround(sim->end[r][i]);
            for (long t = t0; t < t1 && t < (long)cols; t++)
                memcpy(cells + ((size_t)r * cols + (size_t)t) * LABEL, label, LABEL);
        }
    fprintf(f, "%s: %d ranks, %d micro-batches, %d chunk%s%s", s->name, s->ranks, s->microbatches,
            s->chunks, s->chunks > 1 ? "s" : "", s->recompute ? ", recompute" : "");
    fprintf(f, "\n%-6s", "time");
    for (size_t t = 0; t < cols; t++) fprintf(f, " %*zu", width, t);
    fprintf(f, "\n");
    for (int r = 0; r < s->ranks; r++) {
        fprintf(f, "rank %-2d", r);
        for (size_t t = 0; t < cols; t++) {
            const char *c = cells + ((size_t)r * cols + t) * LABEL;
            fprintf(f, "%s%*s", t ? " " : "", width, c[0] ? c : ".");
        }
        fprintf(f, "\n");
    }
    free(cells);
    /* The reductions take a fraction of a unit, too little for a column: listed by rank. */
    bool any = false;
    for (int r = 0; r < s->ranks; r++)
        for (size_t i = 0; i < s->count[r]; i++) {
            const sl_action *a = &s->actions[r][i];
            if (!sl__is_reduction(a->type)) continue;
            char label[LABEL];
            sl_action_format(a, label, sizeof label);
            if (!any) fprintf(f, "\nbefore OPT:");
            bool first_of_rank = i == 0 || !sl__is_reduction(s->actions[r][i - 1].type);
            if (first_of_rank) fprintf(f, "\n  rank %d:", r);
            fprintf(f, " %s (%g to %g)", label, sim->start[r][i], sim->end[r][i]);
            any = true;
        }
    if (any) fprintf(f, "\n");
    write_summary(f, s, sim);
    return SL_OK;
}

int sl_schedule_write_json(FILE *f, const sl_schedule *s, const sl_schedule_sim *sim)
{
    SL_TRY(check(s, sim));
    cJSON *root = cJSON_CreateObject();
    if (!root) return sl_fail(SL_ENOMEM, "out of memory writing JSON");
    cJSON_AddStringToObject(root, "schedule", s->name);
    cJSON_AddNumberToObject(root, "stages", s->ranks);
    cJSON_AddNumberToObject(root, "microbatches", s->microbatches);
    cJSON_AddNumberToObject(root, "chunks", s->chunks);
    cJSON_AddBoolToObject(root, "recompute", s->recompute);
    cJSON *ranks = cJSON_AddArrayToObject(root, "ranks");
    for (int r = 0; r < s->ranks; r++) {
        cJSON *list = cJSON_CreateArray();
        for (size_t i = 0; i < s->count[r]; i++) {
            if (!sl__is_compute(s->actions[r][i].type)) continue;
            char t[LABEL];
            sl_action_format(&s->actions[r][i], t, sizeof t);
            cJSON_AddItemToArray(list, cJSON_CreateString(t));
        }
        cJSON_AddItemToArray(ranks, list);
    }
    if (s->norm || s->tied_stages[0] != s->tied_stages[1] || s->chains == 2) {
        /* per rank the TIED and NORM actions, in order */
        cJSON *red = cJSON_AddArrayToObject(root, "reductions");
        for (int r = 0; r < s->ranks; r++) {
            cJSON *list = cJSON_CreateArray();
            for (size_t i = 0; i < s->count[r]; i++) {
                enum sl_action_type t = s->actions[r][i].type;
                if (!sl__is_reduction(t)) continue;
                char txt[LABEL];
                sl_action_format(&s->actions[r][i], txt, sizeof txt);
                cJSON_AddItemToArray(list, cJSON_CreateString(txt));
            }
            cJSON_AddItemToArray(red, list);
        }
    }
    cJSON_AddNumberToObject(root, "makespan", sim->makespan);
    cJSON_AddNumberToObject(root, "bubble_ratio", sim->bubble_ratio);
    cJSON *idle = cJSON_AddArrayToObject(root, "idle");
    cJSON *peak = cJSON_AddArrayToObject(root, "peak_activations");
    for (int r = 0; r < s->ranks; r++) {
        cJSON_AddItemToArray(idle, cJSON_CreateNumber(sim->idle[r]));
        cJSON_AddItemToArray(peak, cJSON_CreateNumber(sim->peak_activations[r]));
    }
    if (s->split_backward) {
        cJSON *pw = cJSON_AddArrayToObject(root, "peak_pending_w");
        for (int r = 0; r < s->ranks; r++)
            cJSON_AddItemToArray(pw, cJSON_CreateNumber(sim->peak_pending_w[r]));
    }
    if (sim->has_bytes) {
        cJSON *pb = cJSON_AddArrayToObject(root, "peak_stash_bytes");
        for (int r = 0; r < s->ranks; r++)
            cJSON_AddItemToArray(pb, cJSON_CreateNumber(sim->peak_bytes[r]));
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return sl_fail(SL_ENOMEM, "out of memory writing JSON");
    fprintf(f, "%s\n", text);
    free(text);
    return SL_OK;
}

/* Colour of micro-batch mb: hues spread round the wheel; lightness tells F (light), B and I
 * (middle), W (dark) apart, and R is drawn light with a dashed outline. */
static void colour(char *buf, size_t cap, int mb, int m, enum sl_action_type t)
{
    int hue = (int)((mb * 360L) / (m > 0 ? m : 1));
    int light = t == SL_ACTION_F || t == SL_ACTION_R ? 75 : t == SL_ACTION_W ? 30 : 50;
    snprintf(buf, cap, "hsl(%d,70%%,%d%%)", hue, light);
}

int sl_schedule_write_svg(FILE *f, const sl_schedule *s, const sl_schedule_sim *sim)
{
    SL_TRY(check(s, sim));
    const double unit = 28, row = 30, left = 60, top = 30;
    double width = left + sim->makespan * unit + 20, height = top + s->ranks * row + 50;
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "font-family=\"monospace\" font-size=\"10\">\n",
            width, height);
    fprintf(f, "<title>%s: %d ranks, %d micro-batches, %d chunks%s</title>\n", s->name, s->ranks,
            s->microbatches, s->chunks, s->recompute ? ", recompute" : "");
    fprintf(f,
            "<text x=\"4\" y=\"16\" font-size=\"12\">%s D=%d M=%d v=%d%s  makespan %g  "
            "bubble %.4f  (F light, B/I middle, W dark, R dashed)</text>\n",
            s->name, s->ranks, s->microbatches, s->chunks, s->recompute ? " recompute" : "",
            sim->makespan, sim->bubble_ratio);
    for (int r = 0; r < s->ranks; r++) {
        double y = top + r * row;
        fprintf(f, "<text x=\"4\" y=\"%.1f\">rank %d</text>\n", y + row / 2 + 4, r);
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#eee\"/>\n",
                left, y + 2, sim->makespan * unit, row - 4);
        for (size_t i = 0; i < s->count[r]; i++) {
            const sl_action *a = &s->actions[r][i];
            if (!sl__is_compute(a->type)) continue;
            char fill[40], label[LABEL];
            colour(fill, sizeof fill, a->mb, s->microbatches, a->type);
            sl_action_format(a, label, sizeof label);
            double x = left + sim->start[r][i] * unit;
            double w = (sim->end[r][i] - sim->start[r][i]) * unit;
            fprintf(f,
                    "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" "
                    "stroke=\"#333\"%s><title>%s [%g, %g]</title></rect>\n",
                    x, y + 2, w, row - 4, fill,
                    a->type == SL_ACTION_R ? " stroke-dasharray=\"3,2\"" : "", label,
                    sim->start[r][i], sim->end[r][i]);
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"%s\">%s</text>\n",
                    x + w / 2, y + row / 2 + 4,
                    a->type == SL_ACTION_F || a->type == SL_ACTION_R ? "#000" : "#fff", label);
        }
    }
    fprintf(f, "<text x=\"4\" y=\"%.1f\">peak stash per rank:", top + s->ranks * row + 20);
    for (int r = 0; r < s->ranks; r++) fprintf(f, " %d", sim->peak_activations[r]);
    fprintf(f, "</text>\n</svg>\n");
    return SL_OK;
}
