/* Config parsing, --set overrides, defaults, and every kind of bad input. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "helpers.h"
#include "runtime/config/config.h"

static char csv_path[256];

/* A tiny CSV (3 features + label) and a config naming it relative to tmpdir(). */
static void setup(void)
{
    tmppath(csv_path, sizeof csv_path, "tiny.csv");
    write_text(csv_path, "1,2,3,0\n4,5,6,1\n7,8,9,2\n1,1,1,1\n");
}

#define BASE_MODEL                                                                                 \
    "\"model\": {\"inputs\": 3, \"layers\": [\"linear:8\", \"relu\", \"linear:8\", \"tanh\", "     \
    "\"linear:3\"]}"
#define BASE_DATA "\"data\": {\"path\": \"tiny.csv\"}"
#define BASE_TRAIN                                                                                 \
    "\"train\": {\"steps\": 10, \"batch\": 4, \"microbatches\": 2, \"optimizer\": {\"name\": "     \
    "\"sgd\", \"lr\": 0.1}}"
#define BASE "{" BASE_MODEL ", " BASE_DATA ", " BASE_TRAIN "}"

static int parse(const char *json, const char *const *sets, int nsets, sl_config *cfg)
{
    return sl_config_parse(json, tmpdir(), sets, nsets, cfg);
}

TestSuite(config, .init = setup);

Test(config, defaults)
{
    sl_config cfg;
    cr_assert_eq(parse(BASE, NULL, 0, &cfg), SL_OK, "%s", sl_last_error());
    cr_assert_eq(cfg.model.inputs, 3);
    cr_assert_eq(cfg.model.nlayers, 5);
    cr_assert_str_eq(cfg.model.layers[4], "linear:3");
    cr_assert_eq(cfg.model.loss, SL_LOSS_CROSS_ENTROPY);
    cr_assert_null(cfg.model.init);
    cr_assert_str_eq(cfg.data.path, csv_path, "relative to the config's directory");
    cr_assert_float_eq(cfg.data.scale, 1.0, 0);
    cr_assert_str_eq(cfg.data.inputs, "x");
    cr_assert_str_eq(cfg.data.labels, "y");
    cr_assert_eq(cfg.train.microbatches, 2);
    cr_assert_eq(cfg.train.optimizer.kind, SL_OPT_SGD);
    cr_assert_float_eq(cfg.train.optimizer.lr, 0.1, 1e-12);
    cr_assert_eq(cfg.pipeline.stages, 1);
    cr_assert_str_eq(cfg.pipeline.schedule, "1f1b");
    cr_assert_str_eq(cfg.pipeline.partition, "uniform");
    cr_assert_eq(cfg.ndevices, 1);
    cr_assert_str_eq(sl_config_device(&cfg, 0), "cpu");
    cr_assert_eq(cfg.launch.heartbeat_ms, 1000);
    cr_assert_str_eq(cfg.output.dir, "runs/run");
    cr_assert_eq(sl_config_param_layers(&cfg), 3);
    sl_config_free(&cfg);
}

Test(config, sets_override_and_create)
{
    const char *sets[] = {"train.steps=50",
                          "pipeline.schedule=gpipe",
                          "data.shuffle=true",
                          "launch.curve=true",
                          "devices=[\"cpu\",\"cpu\",\"cpu\"]",
                          "pipeline.stages=3",
                          "train.optimizer.momentum=0.9"};
    sl_config cfg;
    cr_assert_eq(parse(BASE, sets, 7, &cfg), SL_OK, "%s", sl_last_error());
    cr_assert_eq(cfg.train.steps, 50);
    cr_assert_str_eq(cfg.pipeline.schedule, "gpipe");
    cr_assert(cfg.data.shuffle);
    cr_assert(cfg.launch.curve);
    cr_assert_eq(cfg.pipeline.stages, 3);
    cr_assert_eq(cfg.ndevices, 3);
    cr_assert_float_eq(cfg.train.optimizer.momentum, 0.9, 1e-12);
    sl_config_free(&cfg);
}

Test(config, hash_and_json)
{
    sl_config a, b, c, d;
    const char *sets[] = {"train.steps=11"};
    cr_assert_eq(parse(BASE, NULL, 0, &a), SL_OK);
    cr_assert_eq(parse(BASE, NULL, 0, &b), SL_OK);
    cr_assert_eq(parse(BASE, sets, 1, &c), SL_OK);
    cr_assert_eq(sl_config_hash(&a), sl_config_hash(&b));
    cr_assert_neq(sl_config_hash(&a), sl_config_hash(&c));
    /* The effective JSON parses back to the same config. */
    char *json = sl_config_to_json(&a, true);
    cr_assert_not_null(json);
    cr_assert_eq(sl_config_parse(json, ".", NULL, 0, &d), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_config_hash(&a), sl_config_hash(&d));
    free(json);
    sl_config_free(&a);
    sl_config_free(&b);
    sl_config_free(&c);
    sl_config_free(&d);
}

Test(config, adam_and_explicit_partition)
{
    const char *sets[] = {"train.optimizer={\"name\":\"adam\",\"lr\":0.001,\"betas\":[0.8,0.9]}",
                          "pipeline.stages=2", "pipeline.partition=[2,1]"};
    sl_config cfg;
    cr_assert_eq(parse(BASE, sets, 3, &cfg), SL_OK, "%s", sl_last_error());
    cr_assert_eq(cfg.train.optimizer.kind, SL_OPT_ADAM);
    cr_assert_float_eq(cfg.train.optimizer.beta1, 0.8, 1e-12);
    cr_assert_float_eq(cfg.train.optimizer.eps, 1e-8, 1e-20);
    cr_assert_eq(cfg.pipeline.npartition, 2);
    cr_assert_eq(cfg.pipeline.partition_counts[0], 2);
    sl_config_free(&cfg);
}

/* One bad --set (or file) and the words its message must contain. */
static void bad(const char *set, const char *needle)
{
    sl_config cfg;
    const char *sets[] = {set};
    int st = parse(BASE, sets, set ? 1 : 0, &cfg);
    cr_assert_eq(st, SL_ECONFIG, "'%s' should be a config error (got %d: %s)", set, st,
                 sl_last_error());
    cr_assert(strstr(sl_last_error(), needle), "'%s': message '%s' lacks '%s'", set,
              sl_last_error(), needle);
}

Test(config, bad_inputs)
{
    bad("train.stpes=3", "unknown key 'train.stpes'");
    bad("foo=1", "unknown key 'foo'");
    bad("train.optimizer.mommentum=0.9", "unknown key 'train.optimizer.mommentum'");
    bad("train.steps=\"ten\"", "train.steps must be an integer");
    bad("train.steps=ten", "train.steps must be an integer (got a string)");
    bad("train.steps=1.5", "train.steps must be an integer (got a fraction)");
    bad("train.steps=0", "train.steps (0) must be in");
    bad("train.batch=5", "train.batch (5) must be a multiple of train.microbatches (2)");
    bad("model.layers=[\"linear:8\",\"swish\",\"linear:3\"]", "model.layers[1] 'swish'");
    bad("model.layers=[\"linear:0\"]", "model.layers[0] 'linear:0'");
    bad("model.layers=[\"relu\"]", "no layer with parameters");
    bad("model.layers=\"linear:3\"", "model.layers must be a non-empty array");
    bad("model.loss=hinge", "model.loss 'hinge' is not one of");
    bad("pipeline.stages=4", "more than the 3 layers with parameters");
    bad("pipeline.chunks=2", "pipeline.chunks (2) > 1 needs pipeline.schedule");
    bad("pipeline.schedule=zigzag", "pipeline.schedule 'zigzag'");
    bad("pipeline.partition=[1,1]", "pipeline.partition lists 2 stages");
    bad("data.path=nope.csv", "data.path: file 'nope.csv' does not exist");
    bad("model.init=nope.safetensors", "model.init: file 'nope.safetensors' does not exist");
    bad("data.test_fraction=1", "data.test_fraction (1) must be in [0, 1)");
    bad("data.shuffle=1", "data.shuffle must be true or false");
    bad("devices=[\"cpu\",\"cpu\"]", "devices lists 2 ids but pipeline.stages is 1");
    bad("devices=7", "devices must be a string or an array");
    bad("launch.endpoints=[\"localhost\"]", "launch.endpoints[0] 'localhost'");
    bad("launch.endpoints=[\"tcp://a:1\",\"tcp://b:1\"]", "launch.endpoints lists 2");
    bad("train.optimizer.name=rmsprop", "train.optimizer.name 'rmsprop'");
    bad("train.optimizer.betas=[0.9]", "train.optimizer.betas is an adam setting");
    bad("train.optimizer.lr=-1", "train.optimizer.lr (-1) must be in");
    bad("train.optimizer.momentum=1", "train.optimizer.momentum (1) must be in [0, 1)");
    bad("output.checkpoint_interval=-1", "output.checkpoint_interval (-1)");
    bad("model=3", "model must be an object");
    bad("train.steps.x=1", "'steps' is not an object");
    bad("=3", "must have the form key.path=value");
}

Test(config, missing_sections_and_bad_json)
{
    sl_config cfg;
    assert_fails_with(parse("{" BASE_MODEL ", " BASE_DATA "}", NULL, 0, &cfg),
                      "section 'train' is required");
    assert_fails_with(parse("{" BASE_MODEL ", " BASE_TRAIN "}", NULL, 0, &cfg),
                      "section 'data' is required");
    assert_fails_with(parse("{\"model\": {\"layers\": [\"linear:3\"]}, " BASE_DATA ", " BASE_TRAIN
                            "}",
                            NULL, 0, &cfg),
                      "model.inputs is required");
    assert_fails_with(parse("{\"model\": ", NULL, 0, &cfg), "not valid JSON");
    assert_fails_with(parse("[1]", NULL, 0, &cfg), "top level must be a JSON object");
    assert_fails_with(
        parse("{" BASE_MODEL ", " BASE_DATA ", " BASE_TRAIN ", \"x\": 1}", NULL, 0, &cfg),
        "unknown key 'x'");
}

Test(config, load_from_file)
{
    char path[256];
    tmppath(path, sizeof path, "run.json");
    write_text(path, BASE);
    sl_config cfg;
    cr_assert_eq(sl_config_load(path, NULL, 0, &cfg), SL_OK, "%s", sl_last_error());
    cr_assert_str_eq(cfg.data.path, csv_path);
    cr_assert_str_eq(cfg.output.dir, "runs/run");
    sl_config_free(&cfg);

    const char *sets[] = {"train.batch=3"};
    assert_fails_with(sl_config_load(path, sets, 1, &cfg), "run.json: train.batch (3)");
    assert_fails_with(sl_config_load("/nonexistent/cfg.json", NULL, 0, &cfg),
                      "/nonexistent/cfg.json");
}

Test(config, digits_sample)
{
    char path[512];
    snprintf(path, sizeof path, "%s/samples/digits/digits.json", source_dir());
    sl_config cfg;
    cr_assert_eq(sl_config_load(path, NULL, 0, &cfg), SL_OK, "%s", sl_last_error());
    cr_assert_eq(cfg.pipeline.stages, 4);
    cr_assert_str_eq(cfg.output.dir, "runs/digits");
    cr_assert_eq(cfg.train.batch, 64);
    sl_config_free(&cfg);
}
