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
    char path[256];
    write_text(tmppath(path, sizeof path, "tiny.txt"), "hello\n");
    write_text(tmppath(path, sizeof path, "tokens.safetensors"), ""); /* only its name matters */
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

/* Chimera: two stages per rank like the V schedules, one cut of D stages shared by its two
 * replicas; its limits, each named with its numbers. */
Test(config, chimera)
{
    sl_config cfg;
    const char *ok[] = {"pipeline.schedule=chimera", "pipeline.stages=2",
                        "pipeline.partition=[2,1]"};
    cr_assert_eq(parse(BASE, ok, 3, &cfg), SL_OK, "%s", sl_last_error());
    cr_assert_eq(cfg.pipeline.chunks, 2);
    cr_assert_eq(cfg.pipeline.npartition, 2);
    sl_config_free(&cfg);
    const char *four[] = {"pipeline.schedule=chimera", "pipeline.stages=2",
                          "pipeline.partition=[1,1,1,0]"};
    assert_fails_with(parse(BASE, four, 3, &cfg),
                      "lists 4 stages but the model is cut into 2 (pipeline.stages: chimera's");
    const char *chunks[] = {"pipeline.schedule=chimera", "pipeline.stages=2", "pipeline.chunks=3"};
    assert_fails_with(parse(BASE, chunks, 3, &cfg), "pipeline.chunks must be 2 (got 3)");
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

/* ------------------------------------------------------------------------------------------------
 * GPT, text data, adamw, lr_schedule, grad_clip */

#define GPT_MODEL                                                                                  \
    "\"model\": {\"gpt\": {\"vocab_size\": 65, \"block_size\": 64, \"n_layer\": 4, \"n_head\": "   \
    "4, \"n_embd\": 128}, \"seed\": 0}"
#define GPT_DATA "\"data\": {\"text\": \"tiny.txt\", \"val_fraction\": 0.1, \"seed\": 0}"
#define GPT_TRAIN                                                                                  \
    "\"train\": {\"steps\": 100, \"batch\": 8, \"microbatches\": 2, \"optimizer\": {\"name\": "    \
    "\"adamw\", \"lr\": 0.001}}"
#define GPT "{" GPT_MODEL ", " GPT_DATA ", " GPT_TRAIN "}"

/* parse(to_json(cfg)) gives back the same effective JSON (the plan relies on it). */
static void assert_round_trip(const sl_config *cfg)
{
    char *json = sl_config_to_json(cfg, false);
    cr_assert_not_null(json);
    sl_config again;
    cr_assert_eq(sl_config_parse(json, ".", NULL, 0, &again), SL_OK, "%s: %s", sl_last_error(),
                 json);
    char *json2 = sl_config_to_json(&again, false);
    cr_assert_str_eq(json, json2);
    cr_assert_eq(sl_config_hash(cfg), sl_config_hash(&again));
    free(json);
    free(json2);
    sl_config_free(&again);
}

Test(config, gpt_expands_into_layers)
{
    sl_config cfg;
    cr_assert_eq(parse(GPT, NULL, 0, &cfg), SL_OK, "%s", sl_last_error());
    cr_assert(cfg.model.has_gpt);
    cr_assert_eq(cfg.model.gpt.vocab_size, 65);
    cr_assert_eq(cfg.model.gpt.block_size, 64);
    cr_assert_eq(cfg.model.gpt.n_layer, 4);
    cr_assert_eq(cfg.model.gpt.n_head, 4);
    cr_assert_eq(cfg.model.gpt.n_embd, 128);
    cr_assert(cfg.model.gpt.bias, "bias defaults to true");
    cr_assert(cfg.model.gpt.tie_embeddings, "tie_embeddings defaults to true");
    cr_assert_eq(cfg.model.inputs, 64, "inputs = block_size");
    cr_assert_eq(cfg.model.loss, SL_LOSS_CROSS_ENTROPY);
    cr_assert_eq(cfg.model.nlayers, 6);
    cr_assert_str_eq(cfg.model.layers[0], "embedding");
    for (int i = 1; i <= 4; i++) cr_assert_str_eq(cfg.model.layers[i], "block");
    cr_assert_str_eq(cfg.model.layers[5], "head");
    cr_assert_eq(sl_config_param_layers(&cfg), 6);
    char text[256];
    cr_assert_str_eq(cfg.data.text, tmppath(text, sizeof text, "tiny.txt"));
    cr_assert_null(cfg.data.path);
    cr_assert_float_eq(cfg.data.val_fraction, 0.1, 0);
    /* The effective config names the GPT, not the expanded layers. */
    char *json = sl_config_to_json(&cfg, false);
    cr_assert(strstr(json, "\"gpt\":{\"vocab_size\":65,\"block_size\":64,\"n_layer\":4,"
                           "\"n_head\":4,\"n_embd\":128,\"bias\":true,\"tie_embeddings\":true}"),
              "%s", json);
    cr_assert_null(strstr(json, "\"layers\""), "%s", json);
    cr_assert_null(strstr(json, "\"inputs\""), "%s", json);
    cr_assert_null(strstr(json, "\"block\""), "%s", json);
    cr_assert(strstr(json, "\"text\":"), "%s", json);
    free(json);
    assert_round_trip(&cfg);
    sl_config_free(&cfg);
}

Test(config, gpt_partition_counts_its_layers)
{
    const char *sets[] = {"pipeline.stages=3", "pipeline.partition=[2,3,1]", "model.gpt.bias=false",
                          "model.gpt.tie_embeddings=false"};
    sl_config cfg;
    cr_assert_eq(parse(GPT, sets, 4, &cfg), SL_OK, "%s", sl_last_error());
    cr_assert_eq(cfg.pipeline.npartition, 3);
    cr_assert(!cfg.model.gpt.bias);
    cr_assert(!cfg.model.gpt.tie_embeddings);
    assert_round_trip(&cfg);
    sl_config_free(&cfg);
    const char *seven[] = {"pipeline.stages=7"};
    assert_fails_with(parse(GPT, seven, 1, &cfg), "more than the 6 layers with parameters");
    const char *sum[] = {"pipeline.stages=2", "pipeline.partition=[2,3]"};
    assert_fails_with(parse(GPT, sum, 2, &cfg), "counts 5 layers with parameters but model.gpt");
}

Test(config, gpt_hash_follows_the_shape)
{
    static const char *const changes[] = {
        "model.gpt.vocab_size=66",       "model.gpt.block_size=32",
        "model.gpt.n_layer=3",           "model.gpt.n_head=8",
        "model.gpt.n_embd=64",           "model.gpt.bias=false",
        "model.gpt.tie_embeddings=false"};
    sl_config a;
    cr_assert_eq(parse(GPT, NULL, 0, &a), SL_OK, "%s", sl_last_error());
    for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++) {
        sl_config b;
        const char *sets[] = {changes[i]};
        cr_assert_eq(parse(GPT, sets, 1, &b), SL_OK, "%s: %s", changes[i], sl_last_error());
        cr_assert_neq(sl_config_hash(&a), sl_config_hash(&b), "%s", changes[i]);
        assert_round_trip(&b);
        sl_config_free(&b);
    }
    sl_config_free(&a);
}

Test(config, gpt_token_fixture)
{
    const char *sets[] = {"data={\"path\": \"tokens.safetensors\"}"};
    sl_config cfg;
    cr_assert_eq(parse(GPT, sets, 1, &cfg), SL_OK, "%s", sl_last_error());
    cr_assert_null(cfg.data.text);
    cr_assert_not_null(cfg.data.path);
    assert_round_trip(&cfg);
    sl_config_free(&cfg);
}

/* One bad --set on the GPT config and the words its message must contain. */
static void bad_gpt(const char *set, const char *needle)
{
    sl_config cfg;
    const char *sets[] = {set};
    int st = parse(GPT, sets, 1, &cfg);
    cr_assert_eq(st, SL_ECONFIG, "'%s' should be a config error (got %d: %s)", set, st,
                 sl_last_error());
    cr_assert(strstr(sl_last_error(), needle), "'%s': message '%s' lacks '%s'", set,
              sl_last_error(), needle);
}

Test(config, gpt_bad_inputs)
{
    bad_gpt("model.gpt.n_embd=130", "model.gpt.n_embd (130) must be a multiple of model.gpt.n_head "
                                    "(4)");
    bad_gpt("model.gpt.vocab_size=0", "model.gpt.vocab_size (0) must be in");
    bad_gpt("model.gpt.block_size=-3", "model.gpt.block_size (-3) must be in");
    bad_gpt("model.gpt.n_layer=1.5", "model.gpt.n_layer must be an integer");
    bad_gpt("model.gpt.n_head=100000", "model.gpt.n_head (100000) must be in");
    bad_gpt("model.gpt.n_embd=\"big\"", "model.gpt.n_embd must be an integer");
    bad_gpt("model.gpt.bias=1", "model.gpt.bias must be true or false");
    bad_gpt("model.gpt.dropout=0.1", "unknown key 'model.gpt.dropout'");
    bad_gpt("model.gpt=4", "model.gpt must be an object");
    bad_gpt("model.gpt={\"vocab_size\": 65, \"block_size\": 8, \"n_layer\": 1, \"n_head\": 1}",
            "model.gpt.n_embd is required");
    bad_gpt("model.layers=[\"linear:3\"]", "model.gpt and model.layers are mutually exclusive");
    bad_gpt("model.inputs=3", "model.gpt and model.inputs are mutually exclusive");
    bad_gpt("model.loss=mse", "model.loss 'mse' does not apply to model.gpt");
    bad_gpt("data.path=tiny.csv", "data.path and data.text are mutually exclusive");
    bad_gpt("data={\"path\": \"tiny.csv\"}", "data.path '");
    bad_gpt("data={\"seed\": 1}", "data.path (or data.text for model.gpt) is required");
    bad_gpt("data.text=nope.txt", "data.text: file 'nope.txt' does not exist");
    bad_gpt("data.val_fraction=1", "data.val_fraction (1) must be in [0, 1)");
    bad_gpt("data.val_fraction=-0.1", "data.val_fraction (-0.1) must be in [0, 1)");
    bad_gpt("data.shuffle=true", "data.shuffle does not apply to model.gpt");
    bad_gpt("data.test_fraction=0.1", "data.test_fraction does not apply to model.gpt");
    bad_gpt("data.scale=2", "data.scale does not apply to model.gpt");
    bad("data={\"text\": \"tiny.txt\"}", "data.text needs model.gpt");
}

Test(config, adamw_defaults)
{
    sl_config cfg;
    cr_assert_eq(parse(GPT, NULL, 0, &cfg), SL_OK, "%s", sl_last_error());
    const sl_optimizer_config *o = &cfg.train.optimizer;
    cr_assert_eq(o->kind, SL_OPT_ADAMW);
    cr_assert_float_eq(o->weight_decay, 0.01, 0, "torch.optim.AdamW's default");
    cr_assert_float_eq(o->beta1, 0.9, 0);
    cr_assert_float_eq(o->beta2, 0.999, 0);
    cr_assert_float_eq(o->eps, 1e-8, 0);
    cr_assert(!cfg.train.lr_schedule.on);
    cr_assert_float_eq(cfg.train.grad_clip, 0, 0);
    char *json = sl_config_to_json(&cfg, false);
    cr_assert(strstr(json, "\"name\":\"adamw\""), "%s", json);
    cr_assert(strstr(json, "\"grad_clip\":0"), "%s", json);
    cr_assert_null(strstr(json, "lr_schedule"), "%s", json);
    free(json);
    sl_config_free(&cfg);

    const char *sets[] = {"train.optimizer={\"name\":\"adamw\",\"lr\":0.01,\"betas\":[0.9,0.95],"
                          "\"weight_decay\":0.1,\"eps\":1e-6}"};
    cr_assert_eq(parse(GPT, sets, 1, &cfg), SL_OK, "%s", sl_last_error());
    cr_assert_float_eq(cfg.train.optimizer.weight_decay, 0.1, 0);
    cr_assert_float_eq(cfg.train.optimizer.beta2, 0.95, 0);
    cr_assert_float_eq(cfg.train.optimizer.eps, 1e-6, 0);
    assert_round_trip(&cfg);
    sl_config_free(&cfg);
    /* adam keeps its default of no weight decay. */
    const char *adam[] = {"train.optimizer.name=adam"};
    cr_assert_eq(parse(GPT, adam, 1, &cfg), SL_OK, "%s", sl_last_error());
    cr_assert_float_eq(cfg.train.optimizer.weight_decay, 0, 0);
    sl_config_free(&cfg);
}

Test(config, lr_schedule_and_grad_clip)
{
    sl_config cfg;
    const char *defaults[] = {"train.lr_schedule={}"};
    cr_assert_eq(parse(GPT, defaults, 1, &cfg), SL_OK, "%s", sl_last_error());
    const sl_lr_schedule *lr = &cfg.train.lr_schedule;
    cr_assert(lr->on);
    cr_assert_eq(lr->warmup_steps, 0);
    cr_assert_eq(lr->decay_steps, 100, "train.steps");
    cr_assert_float_eq(lr->min_lr, 0.0001, 1e-18, "lr / 10");
    assert_round_trip(&cfg);
    sl_config_free(&cfg);

    const char *sets[] = {
        "train.lr_schedule={\"warmup_steps\": 10, \"decay_steps\": 90, \"min_lr\": 0.0002}",
        "train.grad_clip=1.0"};
    cr_assert_eq(parse(GPT, sets, 2, &cfg), SL_OK, "%s", sl_last_error());
    cr_assert_eq(lr->warmup_steps, 10);
    cr_assert_eq(lr->decay_steps, 90);
    cr_assert_float_eq(lr->min_lr, 0.0002, 0);
    cr_assert_float_eq(cfg.train.grad_clip, 1.0, 0);
    char *json = sl_config_to_json(&cfg, false);
    cr_assert(strstr(json, "\"lr_schedule\":{\"warmup_steps\":10,\"decay_steps\":90,"
                           "\"min_lr\":0.0002},\"grad_clip\":1"),
              "%s", json);
    free(json);
    assert_round_trip(&cfg);
    sl_config a;
    const char *other[] = {sets[0], "train.grad_clip=0.5"};
    cr_assert_eq(parse(GPT, other, 2, &a), SL_OK, "%s", sl_last_error());
    cr_assert_neq(sl_config_hash(&a), sl_config_hash(&cfg));
    sl_config_free(&a);
    sl_config_free(&cfg);

    /* They apply to the feature models too. */
    const char *sgd[] = {"train.lr_schedule.warmup_steps=2", "train.grad_clip=5"};
    cr_assert_eq(parse(BASE, sgd, 2, &cfg), SL_OK, "%s", sl_last_error());
    cr_assert(cfg.train.lr_schedule.on);
    cr_assert_eq(cfg.train.lr_schedule.decay_steps, 10);
    assert_round_trip(&cfg);
    sl_config_free(&cfg);
}

Test(config, lr_schedule_bad_inputs)
{
    bad_gpt("train.lr_schedule=3", "train.lr_schedule must be an object");
    bad_gpt("train.lr_schedule.warmup=3", "unknown key 'train.lr_schedule.warmup'");
    bad_gpt("train.lr_schedule.warmup_steps=-1", "train.lr_schedule.warmup_steps (-1) must be in");
    bad_gpt("train.lr_schedule.warmup_steps=2.5", "train.lr_schedule.warmup_steps must be an "
                                                  "integer");
    bad_gpt("train.lr_schedule.decay_steps=0", "train.lr_schedule.decay_steps (0) must be in");
    bad_gpt("train.lr_schedule={\"warmup_steps\": 10, \"decay_steps\": 10}",
            "train.lr_schedule.decay_steps (10) must be more than "
            "train.lr_schedule.warmup_steps (10)");
    bad_gpt("train.lr_schedule.warmup_steps=100",
            "train.lr_schedule.decay_steps (100, train.steps) must be more than "
            "train.lr_schedule.warmup_steps (100)");
    bad_gpt("train.lr_schedule.min_lr=0.01", "train.lr_schedule.min_lr (0.01) must be in [0, "
                                             "0.001]");
    bad_gpt("train.lr_schedule.min_lr=-1", "train.lr_schedule.min_lr (-1) must be in");
    bad_gpt("train.lr_schedule.min_lr=\"low\"", "train.lr_schedule.min_lr must be a number");
    bad_gpt("train.grad_clip=-1", "train.grad_clip (-1) must be in");
    bad_gpt("train.grad_clip=true", "train.grad_clip must be a number");
    bad_gpt("train.optimizer.momentum=0.9", "train.optimizer.momentum is an sgd setting; adamw");
    bad_gpt("train.optimizer.weight_decay=-0.1", "train.optimizer.weight_decay (-0.1) must be in");
    bad_gpt("train.optimizer.betas=[0.9, 1]", "train.optimizer.betas must be in [0, 1)");
}

Test(config, eval_section)
{
    sl_config cfg;
    cr_assert_eq(parse(GPT, NULL, 0, &cfg), SL_OK, "%s", sl_last_error());
    cr_assert_eq(cfg.eval.interval, 0, "interval defaults to 0: only at the end");
    cr_assert_eq(cfg.eval.iters, 20);
    char *json = sl_config_to_json(&cfg, false);
    cr_assert(strstr(json, "\"eval\":{\"interval\":0,\"iters\":20}"), "%s", json);
    free(json);
    sl_config_free(&cfg);

    const char *sets[] = {"eval.interval=5", "eval.iters=3"};
    cr_assert_eq(parse(GPT, sets, 2, &cfg), SL_OK, "%s", sl_last_error());
    cr_assert_eq(cfg.eval.interval, 5);
    cr_assert_eq(cfg.eval.iters, 3);
    json = sl_config_to_json(&cfg, false);
    cr_assert(strstr(json, "\"eval\":{\"interval\":5,\"iters\":3}"), "%s", json);
    free(json);
    assert_round_trip(&cfg);
    sl_config a;
    cr_assert_eq(parse(GPT, NULL, 0, &a), SL_OK);
    cr_assert_neq(sl_config_hash(&a), sl_config_hash(&cfg), "the eval settings are in the hash");
    sl_config_free(&a);
    sl_config_free(&cfg);

    /* Feature data: iters is allowed (and unused), interval is not. */
    const char *iters[] = {"eval.iters=4"};
    cr_assert_eq(parse(BASE, iters, 1, &cfg), SL_OK, "%s", sl_last_error());
    assert_round_trip(&cfg);
    sl_config_free(&cfg);
}

Test(config, eval_bad_inputs)
{
    bad_gpt("eval=3", "eval must be an object");
    bad_gpt("eval.every=3", "unknown key 'eval.every'");
    bad_gpt("eval.interval=-1", "eval.interval (-1) must be in");
    bad_gpt("eval.interval=1.5", "eval.interval must be an integer");
    bad_gpt("eval.iters=0", "eval.iters (0) must be in");
    bad_gpt("eval.iters=\"many\"", "eval.iters must be an integer");
    bad("eval.interval=2", "eval.interval (2) needs a text (data.text with model.gpt)");
}
