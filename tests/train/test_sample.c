/* `sluice sample` and the sampling behind it (runtime/model/sample.c): a run directory built by
 * hand (plan.json, vocab.json and final.safetensors of a tiny GPT, as `sluice train` writes them)
 * gives the prompt and exactly --tokens more characters of the vocabulary; a seed gives one text
 * and another seed another; --top-k 1 is greedy and equals the argmax of the model's logits
 * computed here; a prompt character outside the vocabulary and a run that is not a GPT fail
 * clearly; the token choice keeps to top-k and follows the softmax of logits / temperature. The
 * command runs from the built executable (SLUICE_EXE). */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <math.h>
#include <sys/wait.h>

#include "helpers.h"
#include "runtime/data/data.h"
#include "runtime/model/model.h"
#include "runtime/plan/plan.h"

#define TEXT "to be, or not to b\xc3\xa9?\n" /* 11 characters, one of them two bytes */

#define TINY_GPT                                                                                   \
    "{\"model\": {\"gpt\": {\"vocab_size\": 16, \"block_size\": 8, \"n_layer\": 2, "               \
    "\"n_head\": 2, \"n_embd\": 16}}, \"data\": {\"text\": \"%s\", \"val_fraction\": 0}, "         \
    "\"train\": {\"steps\": 1, \"batch\": 2, \"microbatches\": 1, "                                \
    "\"optimizer\": {\"name\": \"adamw\", \"lr\": 0.001}}, \"pipeline\": {\"stages\": 1}, "        \
    "\"devices\": \"cpu\"}"

#define LINEAR                                                                                     \
    "{\"model\": {\"inputs\": 4, \"layers\": [\"linear:3\"], \"loss\": \"cross_entropy\"}, "       \
    "\"data\": {\"path\": \"%s\"}, \"train\": {\"steps\": 1, \"batch\": 2, "                       \
    "\"optimizer\": {\"name\": \"sgd\", \"lr\": 0.1}}, \"devices\": \"cpu\"}"

static char run_dir[256], linear_dir[256];

/* A GPT run directory as `sluice train` leaves it: plan.json, vocab.json, final.safetensors. */
static void make_gpt_run(void)
{
    char text_path[256], json[2048], path[512];
    tmppath(text_path, sizeof text_path, "text.txt");
    FILE *f = fopen(text_path, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 4; i++) fputs(TEXT, f);
    fclose(f);
    tmppath(run_dir, sizeof run_dir, "gpt-run");
    cr_assert_eq(sl_mkdir_p(run_dir), SL_OK);
    snprintf(json, sizeof json, TINY_GPT, text_path);
    sl_config cfg;
    cr_assert_eq(sl_config_parse(json, tmpdir(), NULL, 0, &cfg), SL_OK, "%s", sl_last_error());
    sl_plan plan;
    cr_assert_eq(sl_plan_build(&cfg, &plan), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_plan_write(&plan, run_dir), SL_OK, "%s", sl_last_error());
    sl_data data;
    cr_assert_eq(sl_data_load(&cfg, 0, &data), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_data_vocab_size(&data), 11);
    sl_run_path(path, sizeof path, run_dir, SL_RUN_VOCAB, 0, 0);
    cr_assert_eq(sl_data_write_vocab(&data, path), SL_OK, "%s", sl_last_error());
    sl_data_free(&data);
    sl_weights w;
    cr_assert_eq(sl_weights_init(&plan.model, 5, &w), SL_OK);
    sl_run_path(path, sizeof path, run_dir, SL_RUN_FINAL, 0, 0);
    cr_assert_eq(sl_weights_save(&plan.model, &w, path), SL_OK, "%s", sl_last_error());
    sl_weights_free(&w);
    sl_plan_free(&plan);
    sl_config_free(&cfg);
}

/* A run directory of a model that is not a GPT: its plan.json alone. */
static void make_linear_run(void)
{
    char json[1024], data_path[512];
    snprintf(data_path, sizeof data_path, "%s/samples/digits/digits.csv.gz", source_dir());
    snprintf(json, sizeof json, LINEAR, data_path);
    tmppath(linear_dir, sizeof linear_dir, "linear-run");
    cr_assert_eq(sl_mkdir_p(linear_dir), SL_OK);
    sl_config cfg;
    cr_assert_eq(sl_config_parse(json, tmpdir(), NULL, 0, &cfg), SL_OK, "%s", sl_last_error());
    sl_plan plan;
    cr_assert_eq(sl_plan_build(&cfg, &plan), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_plan_write(&plan, linear_dir), SL_OK, "%s", sl_last_error());
    sl_plan_free(&plan);
    sl_config_free(&cfg);
}

static void setup(void)
{
    cr_assert(getenv("SLUICE_EXE"), "run through ctest (SLUICE_EXE)");
    make_gpt_run();
    make_linear_run();
}

TestSuite(sample, .init = setup);

typedef struct cli_result {
    int status;
    char out[4096], err[4096];
} cli_result;

static void slurp(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Runs `sluice sample ARGS...` (NULL-terminated), stdout and stderr into files. */
static void sample_cli(cli_result *r, const char *const *args)
{
    char out[256], err[256];
    tmppath(out, sizeof out, "stdout");
    tmppath(err, sizeof err, "stderr");
    const char *argv[32] = {getenv("SLUICE_EXE"), "sample"};
    int n = 2;
    for (int i = 0; args[i]; i++) argv[n++] = args[i];
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0) _exit(127);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int ws;
    cr_assert_eq(waitpid(pid, &ws, 0), pid);
    r->status = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
    slurp(out, r->out, sizeof r->out);
    slurp(err, r->err, sizeof r->err);
}

/* The text's code points, in the order of the vocabulary (sorted). */
static uint32_t vocab_of_run(uint32_t *vocab)
{
    uint32_t *v;
    int n;
    char path[512];
    sl_run_path(path, sizeof path, run_dir, SL_RUN_VOCAB, 0, 0);
    cr_assert_eq(sl_data_read_vocab(path, &v, &n), SL_OK, "%s", sl_last_error());
    cr_assert_eq(n, 11);
    memcpy(vocab, v, sizeof(uint32_t) * (size_t)n);
    free(v);
    return (uint32_t)n;
}

/* Decodes the generated part of `out` (after `prompt`) into code points; returns their number. */
static size_t generated(const char *out, const char *prompt, uint32_t *cps, size_t cap)
{
    size_t plen = strlen(prompt);
    cr_assert_eq(strncmp(out, prompt, plen), 0, "output '%s' does not start with the prompt", out);
    const unsigned char *b = (const unsigned char *)out + plen;
    size_t len = strlen(out) - plen, n = 0;
    for (size_t i = 0; i < len;) {
        size_t used, bad;
        cr_assert_lt(n, cap);
        cr_assert(sl_utf8_next(b, len, i, &cps[n++], &used, &bad), "not UTF-8 at byte %zu", bad);
        i += used;
    }
    return n;
}

Test(sample, prompt_then_exactly_the_tokens_asked_for_from_the_vocabulary)
{
    uint32_t vocab[16], cps[256];
    uint32_t nv = vocab_of_run(vocab);
    cli_result r;
    const char *prompt = "not to b\xc3\xa9";
    /* a prompt longer than block_size (8): the context is cropped */
    sample_cli(
        &r, (const char *[]){run_dir, "--prompt", prompt, "--tokens", "60", "--seed", "7", NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    size_t n = generated(r.out, prompt, cps, 256);
    cr_assert_eq(n, 60, "%zu characters generated: '%s'", n, r.out);
    for (size_t i = 0; i < n; i++) {
        bool known = false;
        for (uint32_t v = 0; v < nv; v++) known |= cps[i] == vocab[v];
        cr_assert(known, "character %zu (U+%04X) is not in the vocabulary", i, (unsigned)cps[i]);
    }
    /* the defaults: a newline prompt and 200 tokens */
    sample_cli(&r, (const char *[]){run_dir, NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert_eq(generated(r.out, "\n", cps, 256), 200);
    /* a checkpoint works as --weights */
    char ckpt[512], final[512];
    sl_run_path(final, sizeof final, run_dir, SL_RUN_FINAL, 0, 0);
    sl_run_path(ckpt, sizeof ckpt, run_dir, SL_RUN_CHECKPOINT, 0, 50);
    cr_assert_eq(rename(final, ckpt), 0);
    sample_cli(&r, (const char *[]){run_dir, "--tokens", "5", NULL});
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "final.safetensors"), "%s", r.err);
    sample_cli(&r, (const char *[]){run_dir, "--tokens", "5", "--weights", ckpt, NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert_eq(generated(r.out, "\n", cps, 256), 5);
}

Test(sample, a_seed_gives_one_text_and_another_seed_another)
{
    cli_result a, b, c;
    const char *const seed7[] = {run_dir, "--prompt", "to", "--tokens", "50", "--seed", "7", NULL};
    const char *const seed8[] = {run_dir, "--prompt", "to", "--tokens", "50", "--seed", "8", NULL};
    sample_cli(&a, seed7);
    sample_cli(&b, seed7);
    sample_cli(&c, seed8);
    cr_assert_eq(a.status, 0, "%s", a.err);
    cr_assert_eq(c.status, 0, "%s", c.err);
    cr_assert_str_eq(a.out, b.out);
    cr_assert_str_neq(a.out, c.out);
    /* temperature and top-k change the draws too */
    sample_cli(&b, (const char *[]){run_dir, "--prompt", "to", "--tokens", "50", "--seed", "7",
                                    "--temperature", "2", "--top-k", "0", NULL});
    cr_assert_eq(b.status, 0, "%s", b.err);
    cr_assert_str_neq(a.out, b.out);
}

/* The model's logits at position n-1 for the context ids[0..n-1], computed here with a stage of
 * our own and the window padded with `pad` (not the 0 the sampler pads with). */
static void model_logits(const int32_t *ids, int n, int32_t pad, float *logits)
{
    sl_plan plan;
    cr_assert_eq(sl_plan_load(run_dir, &plan), SL_OK, "%s", sl_last_error());
    sl_weights w;
    char path[512];
    sl_run_path(path, sizeof path, run_dir, SL_RUN_FINAL, 0, 0);
    cr_assert_eq(sl_weights_load(&plan.model, path, &w), SL_OK, "%s", sl_last_error());
    sl_device *dev;
    cr_assert_eq(sl_device_open("cpu", &dev), SL_OK);
    sl_stage *stage;
    sl_stash stash;
    cr_assert_eq(sl_stage_create(dev, &plan.model, 0, plan.model.nlayers, &w, &stage), SL_OK);
    cr_assert_eq(sl_stash_alloc(stage, 1, &stash), SL_OK);
    int32_t window[8];
    for (int i = 0; i < 8; i++) window[i] = i < n ? ids[i] : pad;
    sl_buffer *x;
    cr_assert_eq(sl_buffer_alloc(dev, sizeof window, &x), SL_OK);
    cr_assert_eq(sl_buffer_upload(x, 0, window, sizeof window), SL_OK);
    cr_assert_eq(sl_stage_forward(stage, 1, x, &stash), SL_OK, "%s", sl_last_error());
    float all[8 * 16];
    cr_assert_eq(sl_buffer_download(sl_stash_output(&stash), 0, all, sizeof all), SL_OK);
    memcpy(logits, all + (n - 1) * 16, 16 * sizeof(float));
    sl_buffer_free(x);
    sl_stash_free(&stash);
    sl_stage_free(stage);
    sl_device_close(dev);
    sl_weights_free(&w);
    sl_plan_free(&plan);
}

Test(sample, top_k_1_is_greedy_whatever_the_seed)
{
    uint32_t vocab[16], cps[64];
    uint32_t nv = vocab_of_run(vocab);
    /* "to b" as token ids */
    const char *prompt = "to b";
    int32_t ids[4];
    for (int i = 0; i < 4; i++)
        for (uint32_t v = 0; v < nv; v++)
            if (vocab[v] == (uint32_t)prompt[i]) ids[i] = (int32_t)v;
    float logits[16];
    model_logits(ids, 4, 5, logits);
    uint32_t best = 0;
    for (uint32_t v = 1; v < nv; v++)
        if (logits[v] > logits[best]) best = v;
    cli_result a, b;
    sample_cli(&a, (const char *[]){run_dir, "--prompt", prompt, "--tokens", "20", "--top-k", "1",
                                    "--seed", "1", NULL});
    sample_cli(&b, (const char *[]){run_dir, "--prompt", prompt, "--tokens", "20", "--top-k", "1",
                                    "--seed", "99", "--temperature", "3", NULL});
    cr_assert_eq(a.status, 0, "%s", a.err);
    cr_assert_str_eq(a.out, b.out);
    cr_assert_eq(generated(a.out, prompt, cps, 64), 20);
    cr_assert_eq(cps[0], vocab[best], "first token U+%04X, the argmax is U+%04X", (unsigned)cps[0],
                 (unsigned)vocab[best]);

    /* the library's logits are the model's at position n-1, whatever pads the window */
    sl_plan plan;
    cr_assert_eq(sl_plan_load(run_dir, &plan), SL_OK, "%s", sl_last_error());
    sl_weights w;
    char path[512];
    sl_run_path(path, sizeof path, run_dir, SL_RUN_FINAL, 0, 0);
    cr_assert_eq(sl_weights_load(&plan.model, path, &w), SL_OK, "%s", sl_last_error());
    sl_device *dev;
    cr_assert_eq(sl_device_open("cpu", &dev), SL_OK);
    sl_generator *g;
    cr_assert_eq(sl_generator_create(dev, &plan.model, &w, &g), SL_OK, "%s", sl_last_error());
    float mine[16];
    cr_assert_eq(sl_generator_logits(g, ids, 4, mine), SL_OK, "%s", sl_last_error());
    for (int v = 0; v < 16; v++)
        cr_assert_float_eq(mine[v], logits[v], 1e-5f, "logit %d: %g vs %g", v, (double)mine[v],
                           (double)logits[v]);
    /* a context longer than block_size counts its last 8 tokens only */
    int32_t ctx[12] = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8};
    float longer[16], last8[16];
    cr_assert_eq(sl_generator_logits(g, ctx, 12, longer), SL_OK);
    cr_assert_eq(sl_generator_logits(g, ctx + 4, 8, last8), SL_OK);
    cr_assert_arr_eq(longer, last8, sizeof longer);
    sl_generator_free(g);
    sl_device_close(dev);
    sl_weights_free(&w);
    sl_plan_free(&plan);
}

Test(sample, a_prompt_character_outside_the_vocabulary_is_named)
{
    cli_result r;
    sample_cli(&r, (const char *[]){run_dir, "--prompt", "to bz", NULL});
    cr_assert_eq(r.status, 1);
    cr_assert_str_empty(r.out);
    cr_assert(strstr(r.err, "'z'") && strstr(r.err, "position 4"), "%s", r.err);
    sample_cli(&r, (const char *[]){run_dir, "--prompt", "t\xe2\x82\xac", NULL}); /* euro sign */
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "U+20AC") && strstr(r.err, "position 1"), "%s", r.err);
    sample_cli(&r, (const char *[]){run_dir, "--prompt", "", NULL});
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "empty"), "%s", r.err);
}

Test(sample, a_run_that_is_not_a_gpt_or_bad_options_fail_clearly)
{
    cli_result r;
    sample_cli(&r, (const char *[]){linear_dir, NULL});
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "not a GPT"), "%s", r.err);
    sample_cli(&r, (const char *[]){run_dir, "--temperature", "0", NULL});
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "--temperature"), "%s", r.err);
    sample_cli(&r, (const char *[]){run_dir, "--top-k", "-1", NULL});
    cr_assert_eq(r.status, 2);
    sample_cli(&r, (const char *[]){run_dir, "--bogus", NULL});
    cr_assert_eq(r.status, 2);
    char missing[256];
    tmppath(missing, sizeof missing, "no-such-run");
    sample_cli(&r, (const char *[]){missing, NULL});
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "plan.json"), "%s", r.err);
}

Test(sample, the_pick_keeps_to_top_k_and_follows_the_softmax)
{
    const float logits[4] = {1.0f, 3.0f, 2.0f, 0.0f};
    float work[4];
    sl_rng rng;
    sl_rng_seed(&rng, 1);
    int counts[4] = {0}, tok;
    const int draws = 20000;
    for (int i = 0; i < draws; i++) {
        cr_assert_eq(sl_sample_pick(logits, 4, 0.5f, 2, &rng, work, &tok), SL_OK);
        counts[tok]++;
    }
    cr_assert_eq(counts[0] + counts[3], 0, "top-k 2 drew outside the top 2");
    double p1 = exp(3.0 / 0.5) / (exp(3.0 / 0.5) + exp(2.0 / 0.5));
    cr_assert_float_eq((double)counts[1] / draws, p1, 0.01);
    /* no top-k: every token, in proportion to exp(logit) at temperature 1 */
    memset(counts, 0, sizeof counts);
    for (int i = 0; i < draws; i++) {
        cr_assert_eq(sl_sample_pick(logits, 4, 1.0f, 0, &rng, work, &tok), SL_OK);
        counts[tok]++;
    }
    double z = exp(1.0) + exp(3.0) + exp(2.0) + exp(0.0);
    for (int v = 0; v < 4; v++)
        cr_assert_float_eq((double)counts[v] / draws, exp((double)logits[v]) / z, 0.01,
                           "token %d: %d draws", v, counts[v]);
    /* top-k 1: the argmax, with no draw */
    sl_rng before = rng;
    cr_assert_eq(sl_sample_pick(logits, 4, 1.0f, 1, &rng, work, &tok), SL_OK);
    cr_assert_eq(tok, 1);
    cr_assert_arr_eq(before.s, rng.s, sizeof rng.s);
    /* ties with the k-th largest stay in, as sample.py keeps them */
    const float tied[4] = {2.0f, 5.0f, 2.0f, 1.0f};
    bool seen[4] = {false};
    for (int i = 0; i < 2000; i++) {
        cr_assert_eq(sl_sample_pick(tied, 4, 1.0f, 2, &rng, work, &tok), SL_OK);
        seen[tok] = true;
    }
    cr_assert(seen[0] && seen[1] && seen[2] && !seen[3]);
    /* a NaN logit and a zero temperature are errors */
    const float nan_logits[2] = {0.0f, NAN};
    assert_fails_with(sl_sample_pick(nan_logits, 2, 1.0f, 0, &rng, work, &tok), "NaN");
    cr_assert_neq(sl_sample_pick(logits, 4, 0.0f, 0, &rng, work, &tok), SL_OK);
    /* the PRNG: a seed gives one stream */
    sl_rng a, b;
    sl_rng_seed(&a, 1337);
    sl_rng_seed(&b, 1337);
    for (int i = 0; i < 100; i++) cr_assert_eq(sl_rng_next(&a), sl_rng_next(&b));
    sl_rng_seed(&b, 1338);
    cr_assert_neq(sl_rng_next(&a), sl_rng_next(&b));
}
