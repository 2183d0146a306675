/* Partition methods: uniform, an explicit list, parameters and the balancer behind time. The
 * property every method must keep, over many random models and every stage count: the stages
 * cover every layer exactly once, in order, each with at least one layer with parameters. The
 * balancer is checked against a brute force over every cut of small models, and bad input is
 * refused with messages that say what to do. */
#include <criterion/criterion.h>
#include <math.h>

#include "helpers.h"
#include "runtime/model/model.h"

static void model_config(const char *layers_json, const char *const *more, int nmore,
                         sl_config *cfg)
{
    char path[512], layers[4096];
    snprintf(path, sizeof path, "%s/samples/digits/digits.json", source_dir());
    snprintf(layers, sizeof layers, "model.layers=%s", layers_json);
    const char *sets[8] = {layers, "pipeline.stages=1"};
    for (int i = 0; i < nmore; i++) sets[i + 2] = more[i];
    cr_assert_eq(sl_config_load(path, sets, nmore + 2, cfg), SL_OK, "%s: %s", layers_json,
                 sl_last_error());
}

static uint64_t rng_state = 0x5eed;
static int rnd(int n)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (int)((rng_state >> 33) % (uint64_t)n);
}

/* Every layer once, in order, every stage at least one unit; the counts, when given, kept. */
static void check_cover(const sl_model *m, int nstages, const sl_stage_range *r, const int *counts,
                        const char *what)
{
    int first[256];
    int units = sl_partition_units(m, first);
    cr_assert_eq(r[0].first, 0, "%s: stage 0 starts at layer %d", what, r[0].first);
    cr_assert_eq(r[nstages - 1].last, m->nlayers, "%s: the last stage ends at %d of %d", what,
                 r[nstages - 1].last, m->nlayers);
    int seen = 0;
    for (int s = 0; s < nstages; s++) {
        if (s) cr_assert_eq(r[s].first, r[s - 1].last, "%s: a gap or overlap at stage %d", what, s);
        cr_assert_lt(r[s].first, r[s].last, "%s: stage %d is empty", what, s);
        int u = 0;
        for (int i = r[s].first; i < r[s].last; i++) u += sl_layer_has_params(&m->layers[i]);
        cr_assert_geq(u, 1, "%s: stage %d has no layer with parameters", what, s);
        if (counts)
            cr_assert_eq(u, counts[s], "%s: stage %d holds %d, not %d", what, s, u, counts[s]);
        seen += u;
    }
    cr_assert_eq(seen, units, "%s", what);
}

/* A random layer list of `units` layers with parameters, activations scattered (also first). */
static void random_layers(int units, char *buf, size_t cap)
{
    static const char *const acts[] = {"\"relu\"", "\"tanh\"", "\"gelu\""};
    size_t n = (size_t)snprintf(buf, cap, "[");
    if (rnd(3) == 0) n += (size_t)snprintf(buf + n, cap - n, "\"tanh\",");
    for (int u = 0; u < units; u++) {
        if (rnd(4) == 0)
            n += (size_t)snprintf(buf + n, cap - n, "\"delay:0.01\",");
        else
            n +=
                (size_t)snprintf(buf + n, cap - n, "\"linear:%d\",", 1 + rnd(3) * 7 * (1 + rnd(8)));
        for (int k = rnd(3); k > 0; k--)
            n += (size_t)snprintf(buf + n, cap - n, "%s,", acts[rnd(3)]);
    }
    n += (size_t)snprintf(buf + n, cap - n, "\"linear:10\"]");
}

/* The partition of `cfg` with `method` (a string) on nstages model stages. */
static int from_config(sl_config *cfg, const sl_model *m, const char *method, int nstages,
                       sl_partition *p)
{
    char *saved = cfg->pipeline.partition;
    int stages = cfg->pipeline.stages;
    cfg->pipeline.partition = (char *)method;
    cfg->pipeline.stages = nstages;
    int rc = sl_partition_from_config(cfg, m, p);
    cfg->pipeline.partition = saved;
    cfg->pipeline.stages = stages;
    return rc;
}

Test(partition, every_method_covers_every_layer_once)
{
    for (int trial = 0; trial < 60; trial++) {
        char layers[4096];
        int units = 1 + rnd(12) + 1; /* the random ones and the last linear:10 */
        random_layers(units - 1, layers, sizeof layers);
        sl_config cfg;
        sl_model m;
        model_config(layers, NULL, 0, &cfg);
        cr_assert_eq(sl_model_init(&cfg, &m), SL_OK, "%s", sl_last_error());
        cr_assert_eq(sl_partition_units(&m, NULL), units, "%s", layers);
        for (int S = 1; S <= units; S++) {
            char what[4200];
            sl_stage_range r[32];
            snprintf(what, sizeof what, "%s uniform on %d", layers, S);
            cr_assert_eq(sl_partition_make(&m, S, NULL, r), SL_OK, "%s: %s", what, sl_last_error());
            check_cover(&m, S, r, NULL, what);

            /* A random explicit list. */
            int counts[32], left = units;
            for (int s = 0; s < S; s++) {
                int room = left - (S - 1 - s);
                counts[s] = s == S - 1 ? left : 1 + rnd(room);
                left -= counts[s];
            }
            snprintf(what, sizeof what, "%s explicit on %d", layers, S);
            cr_assert_eq(sl_partition_make(&m, S, counts, r), SL_OK, "%s: %s", what,
                         sl_last_error());
            check_cover(&m, S, r, counts, what);

            /* The parameters method through the config. */
            sl_partition p;
            snprintf(what, sizeof what, "%s parameters on %d", layers, S);
            cr_assert_eq(from_config(&cfg, &m, "parameters", S, &p), SL_OK, "%s: %s", what,
                         sl_last_error());
            check_cover(&m, S, p.stages, NULL, what);
            sl_partition_free(&p);

            /* The balancer on random per-stage costs (stages on devices of different speeds). */
            double cost[32 * 32];
            for (int s = 0; s < S; s++)
                for (int u = 0; u < units; u++) cost[s * units + u] = rnd(100) * (1 + s % 3);
            snprintf(what, sizeof what, "%s balanced on %d", layers, S);
            cr_assert_eq(sl_partition_balance(units, S, cost, counts), SL_OK, "%s: %s", what,
                         sl_last_error());
            cr_assert_eq(sl_partition_make(&m, S, counts, r), SL_OK, "%s: %s", what,
                         sl_last_error());
            check_cover(&m, S, r, counts, what);
        }
        sl_model_free(&m);
        sl_config_free(&cfg);
    }
}

/* The costliest stage of a cut. */
static double worst_of(int units, int S, const double *cost, const int *counts)
{
    double worst = 0;
    for (int s = 0, u = 0; s < S; s++) {
        double c = 0;
        for (int k = 0; k < counts[s]; k++, u++) c += cost[s * units + u];
        worst = fmax(worst, c);
    }
    return worst;
}

/* The best worst stage over every cut, by enumeration. */
static double brute(int units, int S, const double *cost, int s, int u, int *counts)
{
    if (s == S - 1) {
        counts[s] = units - u;
        return worst_of(units, S, cost, counts);
    }
    double best = INFINITY;
    for (int n = 1; u + n <= units - (S - 1 - s); n++) {
        counts[s] = n;
        best = fmin(best, brute(units, S, cost, s + 1, u + n, counts));
    }
    return best;
}

Test(partition, balance_is_optimal)
{
    for (int trial = 0; trial < 300; trial++) {
        int units = 1 + rnd(9), S = 1 + rnd(units);
        double cost[10 * 10];
        for (int k = 0; k < units * S; k++) cost[k] = rnd(50) + (rnd(5) == 0 ? 0 : 1);
        int counts[10], tmp[10];
        cr_assert_eq(sl_partition_balance(units, S, cost, counts), SL_OK, "%s", sl_last_error());
        int sum = 0;
        for (int s = 0; s < S; s++) {
            cr_assert_geq(counts[s], 1);
            sum += counts[s];
        }
        cr_assert_eq(sum, units);
        cr_assert_float_eq(worst_of(units, S, cost, counts), brute(units, S, cost, 0, 0, tmp), 1e-9,
                           "trial %d: %d units on %d stages", trial, units, S);
    }
    /* A stage twice as fast gets the more layers; equal costs split evenly. */
    double cost[2 * 6];
    for (int u = 0; u < 6; u++) cost[u] = 1, cost[6 + u] = 2;
    int counts[2];
    cr_assert_eq(sl_partition_balance(6, 2, cost, counts), SL_OK);
    cr_assert_eq(counts[0], 4);
    for (int u = 0; u < 6; u++) cost[6 + u] = 1;
    cr_assert_eq(sl_partition_balance(6, 2, cost, counts), SL_OK);
    cr_assert_eq(counts[0], 3);
    /* Zero costs (delay layers' parameters): still an even cut. */
    for (int u = 0; u < 12; u++) cost[u] = 0;
    cr_assert_eq(sl_partition_balance(6, 2, cost, counts), SL_OK);
    cr_assert_eq(counts[0], 3);
}

Test(partition, parameters_balances_skewed_widths)
{
    /* Widths 8, 64, 8, 8, 8: the wide layers' parameters dominate, so they go alone. */
    sl_config cfg;
    sl_model m;
    model_config("[\"linear:512\",\"relu\",\"linear:64\",\"relu\",\"linear:8\",\"relu\","
                 "\"linear:8\",\"linear:10\"]",
                 NULL, 0, &cfg);
    cr_assert_eq(sl_model_init(&cfg, &m), SL_OK);
    sl_partition p;
    cr_assert_eq(from_config(&cfg, &m, "parameters", 2, &p), SL_OK, "%s", sl_last_error());
    cr_assert_eq(p.stages[0].last, 2, "the 64x512 layer alone: stage 0 ends at %d",
                 p.stages[0].last);
    sl_partition_free(&p);
    cr_assert_eq(from_config(&cfg, &m, "uniform", 2, &p), SL_OK);
    cr_assert_eq(p.stages[0].last, 6, "uniform: 3 units and 2");
    sl_partition_free(&p);
    assert_fails_with(from_config(&cfg, &m, "time", 2, &p), "comes from the plan");
    sl_model_free(&m);
    sl_config_free(&cfg);
}

Test(partition, bad_input)
{
    sl_config cfg;
    char path[512];
    snprintf(path, sizeof path, "%s/samples/digits/digits.json", source_dir());
    struct {
        const char *set, *message;
    } bad[] = {
        {"pipeline.stages=5", "is more than the 4 layers with parameters"},
        {"pipeline.partition=[2,1]",
         "lists 2 stages but the model is cut into 4 (pipeline.stages x pipeline.chunks)"},
        {"pipeline.partition=\"even\"", "partition"},
        {"pipeline.partition=7", "must be \"uniform\", \"parameters\", \"time\" or an array"},
        {"pipeline.partition_counts=[4]", "goes with pipeline.partition \"time\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_fails_with(sl_config_load(path, &bad[i].set, 1, &cfg), bad[i].message);
    const char *two[][2] = {
        {"pipeline.stages=2", "pipeline.partition=[3,2]"},
        {"pipeline.stages=2", "pipeline.partition=[4,0]"},
        {"pipeline.stages=2", "pipeline.partition=[1.5,2.5]"},
    };
    const char *msgs[] = {"counts 5 layers with parameters but model.layers has 4",
                          "pipeline.partition[1] must be a count of layers with parameters",
                          "pipeline.partition[0] must be a count"};
    for (size_t i = 0; i < 3; i++)
        assert_fails_with(sl_config_load(path, two[i], 2, &cfg), msgs[i]);
    /* The counts a time partition recorded round-trip through the effective config. */
    const char *time_sets[] = {"pipeline.stages=2", "pipeline.partition=\"time\"",
                               "pipeline.partition_counts=[3,1]"};
    cr_assert_eq(sl_config_load(path, time_sets, 3, &cfg), SL_OK, "%s", sl_last_error());
    cr_assert_str_eq(cfg.pipeline.partition, "time");
    cr_assert_eq(cfg.pipeline.npartition, 2);
    char *json = sl_config_to_json(&cfg, false);
    cr_assert(strstr(json, "\"partition\":\"time\",\"partition_counts\":[3,1]"), "%s", json);
    free(json);
    sl_config_free(&cfg);
    const char *wrong[] = {"pipeline.stages=2", "pipeline.partition=\"time\"",
                           "pipeline.partition_counts=[2,1]"};
    assert_fails_with(sl_config_load(path, wrong, 3, &cfg), "partition_counts counts 3");
    /* The balancer's own checks. */
    int counts[4];
    double cost[4] = {1, 2, 3, NAN};
    assert_fails_with(sl_partition_balance(2, 3, cost, counts), "3 stages for 2 layers");
    assert_fails_with(sl_partition_balance(4, 1, cost, counts), "unit 3's cost");
}
