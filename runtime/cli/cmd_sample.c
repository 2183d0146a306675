/* `sluice sample`: text from a GPT run directory, as nanoGPT's sample.py generates it (the
 * sampling itself is sl_generate, runtime/model/sample.c). */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cli/cli.h"
#include "runtime/data/data.h"
#include "runtime/plan/plan.h"

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: sluice sample RUN_DIR [--prompt TEXT] [--tokens N] [--temperature T]\n"
        "                     [--top-k K] [--seed S] [--device ID] [--weights FILE]\n\n"
        "Generates text from a GPT that `sluice train` trained on a text (data.text), as\n"
        "nanoGPT's sample.py does: the model and its config come from RUN_DIR/plan.json, the\n"
        "characters of the token ids from RUN_DIR/vocab.json. Each new token is drawn from the\n"
        "logits of the last position of the context (its last block_size tokens): logits /\n"
        "temperature, the top K kept, softmax, one draw. Writes the prompt and the generated\n"
        "characters to stdout as UTF-8, and nothing else (no newline is added).\n\n"
        "  --prompt TEXT        the start of the text, UTF-8, every character in the\n"
        "                       vocabulary (default: a newline)\n"
        "  --tokens N           characters to generate (default 200)\n"
        "  --temperature T      > 0; below 1 sharper, above 1 flatter (default 0.8)\n"
        "  --top-k K            draw among the K likeliest tokens only; 0 = all; 1 = always\n"
        "                       the likeliest (greedy) (default 200)\n"
        "  --seed S             the seed of the draws (default 1337); the PRNG is\n"
        "                       xoshiro256** seeded by splitmix64, not torch's, so a seed gives\n"
        "                       the same text on every machine but not the text PyTorch would\n"
        "  --device ID          the device to run on, as `sluice devices` lists (default cpu)\n"
        "  --weights FILE       the weights (default RUN_DIR/final.safetensors; a\n"
        "                       RUN_DIR/checkpoint-<step>/model.safetensors works too)\n");
}

static int bad_value(const char *opt, const char *value, const char *want)
{
    fprintf(stderr, "sluice sample: %s '%s': want %s\n", opt, value, want);
    return 2;
}

static bool parse_long(const char *s, long long min, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < min) return false;
    *out = v;
    return true;
}

/* The printable form of a character for a message: 'a', '\n', U+00A0. */
static void describe_char(uint32_t cp, char *buf, size_t cap)
{
    if (cp == '\n')
        snprintf(buf, cap, "'\\n'");
    else if (cp == '\t')
        snprintf(buf, cap, "'\\t'");
    else if (cp < 0x20 || cp == 0x7f)
        snprintf(buf, cap, "U+%04X", (unsigned)cp);
    else {
        char utf8[5] = {0};
        sl_utf8_put(cp, utf8);
        snprintf(buf, cap, "'%s' (U+%04X)", utf8, (unsigned)cp);
    }
}

/* The prompt's token ids into ids[0..*n-1] (ids has room for strlen(prompt) + extra). */
static int tokenise(const char *prompt, const uint32_t *vocab, int nvocab, int32_t *ids, size_t *n)
{
    const unsigned char *b = (const unsigned char *)prompt;
    size_t len = strlen(prompt), count = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t used, bad;
        if (!sl_utf8_next(b, len, i, &cp, &used, &bad))
            return sl_fail(SL_EINVAL, "the prompt is not UTF-8 (byte %zu, 0x%02x)", bad, b[bad]);
        int id = -1;
        for (int v = 0; v < nvocab && id < 0; v++)
            if (vocab[v] == cp) id = v;
        if (id < 0) {
            char what[48];
            describe_char(cp, what, sizeof what);
            return sl_fail(SL_EINVAL,
                           "the prompt's character %s at position %zu (counting characters from "
                           "0) is not in the vocabulary of the run (%d characters)",
                           what, count, nvocab);
        }
        ids[count++] = id;
        i += used;
    }
    if (count == 0) return sl_fail(SL_EINVAL, "the prompt is empty: give at least one character");
    *n = count;
    return SL_OK;
}

typedef struct emit_ctx {
    const uint32_t *vocab;
} emit_ctx;

static int emit(int32_t token, void *ctx)
{
    const emit_ctx *e = ctx;
    char utf8[4];
    size_t n = sl_utf8_put(e->vocab[token], utf8);
    if (fwrite(utf8, 1, n, stdout) != n || fflush(stdout) != 0)
        return sl_fail(SL_EIO, "cannot write to stdout");
    return SL_OK;
}

static int run(const char *dir, const char *prompt, size_t tokens, float temperature, int top_k,
               uint64_t seed, const char *device, const char *weights)
{
    sl_plan plan;
    uint32_t *vocab = NULL;
    int nvocab = 0;
    int32_t *ids = NULL;
    size_t n = 0;
    sl_weights w = {0};
    sl_device *dev = NULL;
    sl_generator *gen = NULL;
    char path[4096];
    int st = sl_plan_load(dir, &plan);
    if (st != SL_OK) return st;
    const sl_gpt_config *gpt = &plan.cfg.model.gpt;
    if (!plan.cfg.model.has_gpt)
        st = sl_fail(SL_EINVAL,
                     "%s holds a run of a model that is not a GPT (its config has no model.gpt): "
                     "sluice sample generates text from a GPT trained on a text",
                     sl_run_path(path, sizeof path, dir, SL_RUN_PLAN, 0, 0));
    if (st == SL_OK) {
        sl_run_path(path, sizeof path, dir, SL_RUN_VOCAB, 0, 0);
        st = sl_data_read_vocab(path, &vocab, &nvocab);
        if (st != SL_OK) st = sl_fail_context(st, "the run's vocabulary");
    }
    if (st == SL_OK && nvocab > gpt->vocab_size)
        st = sl_fail(SL_EFORMAT, "%s holds %d characters, more than the model's vocab_size %d",
                     path, nvocab, gpt->vocab_size);
    if (st == SL_OK && !(ids = sl_alloc(sizeof(int32_t) * (strlen(prompt) + tokens + 1))))
        st = SL_ENOMEM;
    if (st == SL_OK) st = tokenise(prompt, vocab, nvocab, ids, &n);
    if (st == SL_OK) {
        if (!weights) weights = sl_run_path(path, sizeof path, dir, SL_RUN_FINAL, 0, 0);
        st = sl_weights_load(&plan.model, weights, &w);
    }
    if (st == SL_OK) st = sl_device_open(device, &dev);
    if (st == SL_OK) st = sl_generator_create(dev, &plan.model, &w, &gen);
    sl_weights_free(&w);
    if (st == SL_OK && (fputs(prompt, stdout) == EOF || fflush(stdout) != 0))
        st = sl_fail(SL_EIO, "cannot write to stdout");
    if (st == SL_OK) {
        sl_sample_options opt = {
            .temperature = temperature, .top_k = top_k, .seed = seed, .classes = nvocab};
        emit_ctx ctx = {.vocab = vocab};
        st = sl_generate(gen, ids, n, tokens, &opt, emit, &ctx);
    }
    sl_generator_free(gen);
    sl_device_close(dev);
    free(ids);
    free(vocab);
    sl_plan_free(&plan);
    return st;
}

int sl_cmd_sample(int argc, char **argv)
{
    if (sl_cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    const char *dir = NULL, *prompt = "\n", *device = "cpu", *weights = NULL;
    long long tokens = 200, top_k = 200;
    uint64_t seed = 1337;
    double temperature = 0.8;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-') {
            if (dir) {
                fprintf(stderr, "sluice sample: unexpected argument '%s' (try --help)\n", a);
                return 2;
            }
            dir = a;
            continue;
        }
        static const char *const with_value[] = {"--prompt", "--tokens", "--temperature", "--top-k",
                                                 "--seed",   "--device", "--weights"};
        bool known = false;
        for (size_t k = 0; k < SL_ARRAY_LEN(with_value); k++) known |= !strcmp(a, with_value[k]);
        if (!known) {
            fprintf(stderr, "sluice sample: unknown option '%s' (try --help)\n", a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "sluice sample: %s needs a value (try --help)\n", a);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--prompt")) {
            prompt = v;
        } else if (!strcmp(a, "--device")) {
            device = v;
        } else if (!strcmp(a, "--weights")) {
            weights = v;
        } else if (!strcmp(a, "--tokens")) {
            if (!parse_long(v, 0, &tokens) || tokens > 100000000)
                return bad_value(a, v, "a whole number from 0 to 100000000");
        } else if (!strcmp(a, "--top-k")) {
            if (!parse_long(v, 0, &top_k) || top_k > INT32_MAX)
                return bad_value(a, v, "a whole number >= 0 (0 = off)");
        } else if (!strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 0);
            if (errno || end == v || *end || v[0] == '-')
                return bad_value(a, v, "a whole number from 0 to 2^64 - 1");
            seed = (uint64_t)s;
        } else { /* --temperature */
            char *end;
            errno = 0;
            temperature = strtod(v, &end);
            if (errno || end == v || *end || !(temperature > 0) || !isfinite(temperature) ||
                !((float)temperature > 0))
                return bad_value(a, v, "a number > 0");
        }
    }
    if (!dir) {
        usage(stderr);
        return 2;
    }
    int st =
        run(dir, prompt, (size_t)tokens, (float)temperature, (int)top_k, seed, device, weights);
    if (st != SL_OK) {
        fflush(stdout);
        return sl_cli_error("sample", st);
    }
    return 0;
}
