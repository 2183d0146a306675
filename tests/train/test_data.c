/* Data: CSV and safetensors loading, bad data, the split, and the rows of every step. */
#include <criterion/criterion.h>
#include <math.h>

#include "helpers.h"
#include "runtime/data/data.h"
#include "runtime/safetensors/safetensors.h"

/* A config for a 3-input, 3-class model over `data_path` (absolute), with extra --set lines. */
static int config(const char *data_path, const char *extra, sl_config *cfg)
{
    char json[1024];
    snprintf(json, sizeof json,
             "{\"model\": {\"inputs\": 3, \"layers\": [\"linear:4\", \"relu\", \"linear:3\"]},"
             " \"data\": {\"path\": \"%s\"},"
             " \"train\": {\"steps\": 1, \"batch\": 4, \"microbatches\": 2,"
             " \"optimizer\": {\"name\": \"sgd\", \"lr\": 0.1}}}",
             data_path);
    const char *sets[] = {extra};
    return sl_config_parse(json, tmpdir(), sets, extra ? 1 : 0, cfg);
}

static int load_csv_text(const char *name, const char *text, const char *extra, sl_data *d)
{
    char path[256];
    tmppath(path, sizeof path, name);
    write_text(path, text);
    sl_config cfg;
    int st = config(path, extra, &cfg);
    cr_assert_eq(st, SL_OK, "%s", sl_last_error());
    st = sl_data_load(&cfg, 3, d);
    sl_config_free(&cfg);
    return st;
}

Test(data, csv_values_and_scale)
{
    sl_data d;
    cr_assert_eq(
        load_csv_text("a.csv", "# comment\n1,2,3,0\n\n4, 5 ,6,2\r\n7,8,9,1", "data.scale=0.5", &d),
        SL_OK, "%s", sl_last_error());
    cr_assert_eq(d.train.rows, 3);
    cr_assert_eq(d.test.rows, 0);
    cr_assert_float_eq(d.train.x[3], 2.0f, 0);
    cr_assert_float_eq(d.train.x[8], 4.5f, 0);
    cr_assert_eq(d.train.labels[1], 2);
    sl_data_free(&d);
}

Test(data, csv_bad_inputs)
{
    sl_data d;
    assert_fails_with(load_csv_text("nan.csv", "1,2,3,0\n1,nan,3,1\n", NULL, &d),
                      "line 2, column 2 is NaN");
    assert_fails_with(load_csv_text("inf.csv", "1,2,inf,0\n", NULL, &d), "is infinite");
    assert_fails_with(load_csv_text("range.csv", "1,2,3,0\n1,2,3,3\n", NULL, &d),
                      "row 2: label 3 is not a class id in [0, 3)");
    assert_fails_with(load_csv_text("neg.csv", "1,2,3,-1\n", NULL, &d), "label -1");
    assert_fails_with(load_csv_text("frac.csv", "1,2,3,0.5\n", NULL, &d), "label 0.5");
    assert_fails_with(load_csv_text("cols.csv", "1,2,0\n", NULL, &d),
                      "rows have 3 columns but model.inputs (3) + one label (1) = 4");
    assert_fails_with(load_csv_text("ragged.csv", "1,2,3,0\n1,2,3,4,0\n", NULL, &d),
                      "line 2 has 5 columns");
    assert_fails_with(load_csv_text("text.csv", "1,2,x,0\n", NULL, &d),
                      "line 1, column 3 is not a number");
    assert_fails_with(load_csv_text("empty.csv", "\n", NULL, &d), "no rows");
    assert_fails_with(load_csv_text("few.csv", "1,2,3,0\n", "data.test_fraction=0.5", &d),
                      "leaves no training rows");
}

static void save_xy(const char *path, const float *x, size_t n, const void *y, enum sl_dtype ydt,
                    const char *xname)
{
    sl_tensor t[] = {
        {.name = xname, .dtype = SL_DTYPE_F32, .ndim = 2, .shape = {(int64_t)n, 3}, .data = x},
        {.name = "y", .dtype = ydt, .ndim = 1, .shape = {(int64_t)n}, .data = y},
    };
    cr_assert_eq(sl_safetensors_save(path, t, 2, NULL, NULL, 0), SL_OK, "%s", sl_last_error());
}

static int load_st(const char *path, const char *extra, sl_data *d)
{
    sl_config cfg;
    cr_assert_eq(config(path, extra, &cfg), SL_OK, "%s", sl_last_error());
    int st = sl_data_load(&cfg, 3, d);
    sl_config_free(&cfg);
    return st;
}

Test(data, safetensors_source)
{
    float x[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    int64_t y64[4] = {0, 1, 2, 1};
    int32_t y32[4] = {2, 2, 0, 1};
    char p1[256], p2[256], p3[256], p4[256];
    save_xy(tmppath(p1, sizeof p1, "d64.safetensors"), x, 4, y64, SL_DTYPE_I64, "x");
    save_xy(tmppath(p2, sizeof p2, "d32.safetensors"), x, 4, y32, SL_DTYPE_I32, "features");
    sl_data d;
    cr_assert_eq(load_st(p1, NULL, &d), SL_OK, "%s", sl_last_error());
    cr_assert_eq(d.train.rows, 4);
    cr_assert_eq(d.train.labels[2], 2);
    cr_assert_float_eq(d.train.x[11], 12.0f, 0);
    sl_data_free(&d);
    assert_fails_with(load_st(p2, NULL, &d), "no tensor 'x' (set data.inputs");
    cr_assert_eq(load_st(p2, "data.inputs=features", &d), SL_OK, "%s", sl_last_error());
    cr_assert_eq(d.train.labels[0], 2);
    sl_data_free(&d);

    int64_t bad[4] = {0, 1, 3, 1};
    save_xy(tmppath(p3, sizeof p3, "bad.safetensors"), x, 4, bad, SL_DTYPE_I64, "x");
    assert_fails_with(load_st(p3, NULL, &d), "tensor 'y' row 2: label 3 is out of range [0, 3)");
    x[4] = NAN;
    save_xy(tmppath(p4, sizeof p4, "nan.safetensors"), x, 4, y64, SL_DTYPE_I64, "x");
    assert_fails_with(load_st(p4, NULL, &d), "nan.safetensors: tensor 'x' element [1, 1] is NaN");
    float fy[4] = {0};
    x[4] = 5;
    save_xy(p4, x, 4, fy, SL_DTYPE_F32, "x");
    assert_fails_with(load_st(p4, NULL, &d), "must be I64 or I32 [4] class ids");
}

static int load_digits(const char *set1, const char *set2, sl_data *d)
{
    char path[512];
    snprintf(path, sizeof path, "%s/samples/digits/digits.json", source_dir());
    const char *sets[] = {set1, set2};
    sl_config cfg;
    cr_assert_eq(sl_config_load(path, sets, (set1 != NULL) + (set2 != NULL), &cfg), SL_OK, "%s",
                 sl_last_error());
    int st = sl_data_load(&cfg, 10, d);
    sl_config_free(&cfg);
    return st;
}

/* A row's identity: its features hashed with its label. */
static uint64_t row_key(const sl_dataset *ds, size_t r)
{
    uint64_t h = 1469598103934665603ull;
    for (int c = 0; c < ds->inputs; c++)
        h = (h ^ (uint64_t)(ds->x[r * 64 + (size_t)c] * 16)) * 1099511628211ull;
    return (h ^ (uint64_t)ds->labels[r]) * 1099511628211ull;
}

Test(data, digits_split_is_deterministic)
{
    sl_data a, b, c;
    cr_assert_eq(load_digits(NULL, NULL, &a), SL_OK, "%s", sl_last_error());
    cr_assert_eq(load_digits(NULL, NULL, &b), SL_OK);
    cr_assert_eq(load_digits("data.seed=1", NULL, &c), SL_OK);
    /* ceil(0.15 * 1797) = 270, as scikit-learn's train_test_split. */
    cr_assert_eq(a.test.rows, 270);
    cr_assert_eq(a.train.rows, 1527);
    cr_assert_float_eq(a.train.x[5], a.train.x[5], 0);
    cr_assert_arr_eq(a.test.labels, b.test.labels, 270 * sizeof(int32_t));
    cr_assert_arr_eq(a.train.x, b.train.x, 1527 * 64 * sizeof(float));
    cr_assert(memcmp(a.test.labels, c.test.labels, 270 * sizeof(int32_t)) != 0,
              "another seed draws another split");
    /* Train and test together are the whole file: compare the sum of row keys. */
    sl_data all;
    cr_assert_eq(load_digits("data.test_fraction=0", NULL, &all), SL_OK);
    cr_assert_eq(all.train.rows, 1797);
    uint64_t s1 = 0, s2 = 0;
    for (size_t r = 0; r < all.train.rows; r++) s1 += row_key(&all.train, r);
    for (size_t r = 0; r < a.train.rows; r++) s2 += row_key(&a.train, r);
    for (size_t r = 0; r < a.test.rows; r++) s2 += row_key(&a.test, r);
    cr_assert_eq(s1, s2);
    cr_assert_float_eq(all.train.x[2], 5.0f / 16.0f, 0, "first row of the file, scaled by 1/16");
    sl_data_free(&a);
    sl_data_free(&b);
    sl_data_free(&c);
    sl_data_free(&all);
}

Test(data, permutation_is_pinned)
{
    size_t p[10];
    sl_data_permutation(0, 10, p);
    int seen[10] = {0};
    for (int i = 0; i < 10; i++) seen[p[i]]++;
    for (int i = 0; i < 10; i++) cr_assert_eq(seen[i], 1);
    /* The documented algorithm's output for seed 0; a change here changes every split. */
    size_t expect[10] = {4, 9, 2, 5, 1, 7, 6, 0, 3, 8};
    cr_assert_arr_eq(p, expect, sizeof p);
}

Test(data, rows_of_each_step)
{
    sl_data d;
    /* 5 rows, batch 4, 2 micro-batches: step k uses rows (4k + i) mod 5. */
    cr_assert_eq(
        load_csv_text("five.csv", "0,0,0,0\n1,1,1,1\n2,2,2,2\n3,3,3,0\n4,4,4,1\n", NULL, &d), SL_OK,
        "%s", sl_last_error());
    size_t rows[4];
    cr_assert_eq(sl_data_batch_rows(&d, 0, rows), SL_OK);
    cr_assert(rows[0] == 0 && rows[1] == 1 && rows[2] == 2 && rows[3] == 3);
    cr_assert_eq(sl_data_batch_rows(&d, 1, rows), SL_OK);
    cr_assert(rows[0] == 4 && rows[1] == 0 && rows[2] == 1 && rows[3] == 2);
    float x[6];
    int32_t y[2];
    cr_assert_eq(sl_data_microbatch(&d, 1, 0, x, y, NULL), SL_OK);
    cr_assert_float_eq(x[0], 4.0f, 0);
    cr_assert_float_eq(x[3], 0.0f, 0);
    cr_assert_eq(y[0], 1);
    cr_assert_eq(sl_data_microbatch(&d, 1, 1, x, y, NULL), SL_OK);
    cr_assert_float_eq(x[0], 1.0f, 0);
    cr_assert_float_eq(x[3], 2.0f, 0);
    cr_assert_neq(sl_data_microbatch(&d, 1, 2, x, y, NULL), SL_OK);
    sl_data_free(&d);
}

Test(data, shuffle_covers_each_epoch)
{
    sl_data d;
    /* 8 rows, batch 4: steps 2k and 2k+1 form epoch k, a permutation of all 8 rows. */
    cr_assert_eq(load_csv_text("eight.csv",
                               "0,0,0,0\n1,1,1,1\n2,2,2,2\n3,3,3,0\n4,4,4,1\n5,5,5,2\n6,6,6,0\n"
                               "7,7,7,1\n",
                               "data.shuffle=true", &d),
                 SL_OK, "%s", sl_last_error());
    size_t first[8], again[8];
    int differs = 0;
    for (int epoch = 0; epoch < 4; epoch++) {
        size_t rows[8];
        cr_assert_eq(sl_data_batch_rows(&d, 2 * epoch, rows), SL_OK);
        cr_assert_eq(sl_data_batch_rows(&d, 2 * epoch + 1, rows + 4), SL_OK);
        int seen[8] = {0};
        for (int i = 0; i < 8; i++) seen[rows[i]]++;
        for (int i = 0; i < 8; i++) cr_assert_eq(seen[i], 1, "epoch %d misses row %d", epoch, i);
        if (epoch == 0)
            memcpy(first, rows, sizeof rows);
        else
            differs |= memcmp(first, rows, sizeof rows) != 0;
    }
    cr_assert(differs, "epochs are reshuffled");
    /* Going back to step 0 gives the same rows (no hidden state beyond a cache). */
    cr_assert_eq(sl_data_batch_rows(&d, 0, again), SL_OK);
    cr_assert_eq(sl_data_batch_rows(&d, 1, again + 4), SL_OK);
    cr_assert_arr_eq(first, again, sizeof first);
    sl_data_free(&d);
}

/* ------------------------------------------------------------------------------------------------
 * Token data for a GPT: texts and token fixtures */

#include <cjson/cJSON.h>
#include <zlib.h>

/* A GPT config over data.text (or data.path when `path_key` is "path") with extra --set lines. */
static int gpt_config(const char *path_key, const char *file, int vocab, int block, int batch,
                      int micro, const char *extra, sl_config *cfg)
{
    char json[1024];
    snprintf(json, sizeof json,
             "{\"model\": {\"gpt\": {\"vocab_size\": %d, \"block_size\": %d, \"n_layer\": 1,"
             " \"n_head\": 1, \"n_embd\": 4}},"
             " \"data\": {\"%s\": \"%s\"},"
             " \"train\": {\"steps\": 1, \"batch\": %d, \"microbatches\": %d,"
             " \"optimizer\": {\"name\": \"adamw\", \"lr\": 0.001}}}",
             vocab, block, path_key, file, batch, micro);
    const char *sets[] = {extra};
    return sl_config_parse(json, tmpdir(), sets, extra ? 1 : 0, cfg);
}

/* Writes `n` bytes to tmpdir()/name and loads it as a text. */
static int load_text_bytes(const char *name, const char *bytes, size_t n, int vocab, int block,
                           int batch, int micro, const char *extra, sl_data *d)
{
    char path[256];
    FILE *f = fopen(tmppath(path, sizeof path, name), "wb");
    cr_assert_not_null(f);
    fwrite(bytes, 1, n, f);
    fclose(f);
    sl_config cfg;
    cr_assert_eq(gpt_config("text", path, vocab, block, batch, micro, extra, &cfg), SL_OK, "%s",
                 sl_last_error());
    int st = sl_data_load(&cfg, 0, d);
    sl_config_free(&cfg);
    return st;
}

static int load_text(const char *name, const char *text, int vocab, int block, const char *extra,
                     sl_data *d)
{
    return load_text_bytes(name, text, strlen(text), vocab, block, 2, 1, extra, d);
}

Test(data, text_tokenised_by_character)
{
    sl_data d;
    /* Distinct code points sorted: '\n' ' ' '"' 'a' 'b' 'é' (U+00E9, two bytes). */
    cr_assert_eq(load_text("small.txt", "b\xc3\xa9 a\n\"ab", 65, 4, "data.val_fraction=0", &d),
                 SL_OK, "%s", sl_last_error());
    cr_assert(d.tokens);
    cr_assert_eq(d.label_width, 4);
    cr_assert_eq(d.block_size, 4);
    cr_assert_eq(sl_data_vocab_size(&d), 6);
    uint32_t vocab[6] = {'\n', ' ', '"', 'a', 'b', 0xe9};
    cr_assert_arr_eq(d.vocab, vocab, sizeof vocab);
    cr_assert_eq(d.text.len, 8);
    cr_assert_eq(d.val.len, 0);
    int32_t ids[8] = {4, 5, 1, 3, 0, 2, 3, 4};
    cr_assert_arr_eq(d.text.ids, ids, sizeof ids);

    char path[256];
    cr_assert_eq(sl_data_write_vocab(&d, tmppath(path, sizeof path, "vocab.json")), SL_OK, "%s",
                 sl_last_error());
    char *text = NULL;
    size_t size = 0;
    cr_assert_eq(sl_read_file(path, &text, &size), SL_OK);
    cr_assert_str_eq(text, "[\"\\n\", \" \", \"\\\"\", \"a\", \"b\", \"\xc3\xa9\"]\n");
    cJSON *arr = cJSON_Parse(text);
    cr_assert(cJSON_IsArray(arr) && cJSON_GetArraySize(arr) == 6);
    const char *want[6] = {"\n", " ", "\"", "a", "b", "\xc3\xa9"};
    for (int i = 0; i < 6; i++)
        cr_assert_str_eq(cJSON_GetArrayItem(arr, i)->valuestring, want[i], "itos[%d]", i);
    cJSON_Delete(arr);
    free(text);
    sl_data_free(&d);

    /* Four-byte characters (U+1F600) and every class of UTF-8 length. */
    cr_assert_eq(load_text("wide.txt", "\xf0\x9f\x98\x80z\xe2\x82\xac\xc3\xa9z", 8, 2,
                           "data.val_fraction=0", &d),
                 SL_OK, "%s", sl_last_error());
    uint32_t wide[4] = {'z', 0xe9, 0x20ac, 0x1f600};
    cr_assert_eq(d.nvocab, 4);
    cr_assert_arr_eq(d.vocab, wide, sizeof wide);
    int32_t wide_ids[5] = {3, 0, 2, 1, 0};
    cr_assert_arr_eq(d.text.ids, wide_ids, sizeof wide_ids);
    sl_data_free(&d);
}

Test(data, text_split_as_nanogpt)
{
    char text[101];
    for (int i = 0; i < 100; i++) text[i] = (char)('a' + i % 7);
    text[100] = '\0';
    sl_data d;
    cr_assert_eq(load_text("hundred.txt", text, 65, 8, NULL, &d), SL_OK, "%s", sl_last_error());
    cr_assert_eq(d.text.len, 90, "the default val_fraction 0.1: int(100 * 0.9)");
    cr_assert_eq(d.val.len, 10);
    cr_assert_eq(d.val.ids[0], 90 % 7, "the validation share is the end of the text");
    sl_data_free(&d);
    cr_assert_eq(load_text("hundred.txt", text, 65, 8, "data.val_fraction=0.25", &d), SL_OK);
    cr_assert_eq(d.text.len, 75);
    cr_assert_eq(d.val.len, 25);
    sl_data_free(&d);
    /* int(7 * 0.7) = int(4.8999999999999995) = 4, as Python truncates. */
    cr_assert_eq(load_text("seven.txt", "abcdefg", 65, 2, "data.val_fraction=0.3", &d), SL_OK, "%s",
                 sl_last_error());
    cr_assert_eq(d.text.len, 4);
    cr_assert_eq(d.val.len, 3);
    sl_data_free(&d);
}

/* 200 letters from a small LCG: a text whose windows are all different. */
static void letters(char *text, size_t n)
{
    uint32_t s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 1103515245u + 12345u;
        text[i] = (char)('a' + (s >> 16) % 26);
    }
    text[n] = '\0';
}

Test(data, text_windows)
{
    char text[201];
    letters(text, 200);
    sl_data d, again;
    enum { T = 8, B = 6, M = 3, PER = B / M };
    cr_assert_eq(load_text_bytes("letters.txt", text, 200, 26, T, B, M, NULL, &d), SL_OK, "%s",
                 sl_last_error());
    cr_assert_eq(load_text_bytes("letters.txt", text, 200, 26, T, B, M, NULL, &again), SL_OK);
    cr_assert_eq(d.text.len, 180);
    /* The documented rule, computed independently (Python): seed 0, steps 0 and 1. */
    size_t off[B];
    cr_assert_eq(sl_data_windows(&d, 0, off), SL_OK, "%s", sl_last_error());
    size_t step0[B] = {112, 120, 66, 112, 135, 25};
    cr_assert_arr_eq(off, step0, sizeof off);
    cr_assert_eq(sl_data_windows(&d, 1, off), SL_OK);
    size_t step1[B] = {67, 14, 144, 95, 163, 140};
    cr_assert_arr_eq(off, step1, sizeof off);

    size_t lo = SIZE_MAX, hi = 0;
    for (int64_t step = 0; step < 500; step++) {
        cr_assert_eq(sl_data_windows(&d, step, off), SL_OK);
        for (int mb = 0; mb < M; mb++) {
            int32_t x[PER * T], y[PER * T], x2[PER * T], y2[PER * T];
            cr_assert_eq(sl_data_microbatch(&d, step, mb, x, y, NULL), SL_OK, "%s",
                         sl_last_error());
            cr_assert_eq(sl_data_microbatch(&again, step, mb, x2, y2, NULL), SL_OK);
            cr_assert_arr_eq(x, x2, sizeof x, "deterministic across loads");
            cr_assert_arr_eq(y, y2, sizeof y);
            for (int i = 0; i < PER; i++) {
                size_t o = off[mb * PER + i];
                cr_assert_leq(o, d.text.len - T - 1, "offset within [0, len - T - 1]");
                lo = SL_MIN(lo, o);
                hi = SL_MAX(hi, o);
                /* Micro-batch mb is the mb-th slice of the step's windows; y is x shifted. */
                cr_assert_arr_eq(x + i * T, d.text.ids + o, T * sizeof(int32_t));
                cr_assert_arr_eq(y + i * T, d.text.ids + o + 1, T * sizeof(int32_t));
                for (int t = 0; t + 1 < T; t++) cr_assert_eq(y[i * T + t], x[i * T + t + 1]);
            }
        }
    }
    cr_assert_eq(lo, 0, "offset 0 is drawn");
    cr_assert_eq(hi, d.text.len - T - 1, "the last offset (len - T - 1) is drawn");

    /* Different steps differ; another seed draws other windows. */
    size_t a[B], b[B];
    cr_assert_eq(sl_data_windows(&d, 5, a), SL_OK);
    cr_assert_eq(sl_data_windows(&d, 6, b), SL_OK);
    cr_assert(memcmp(a, b, sizeof a) != 0);
    sl_data seeded;
    cr_assert_eq(load_text_bytes("letters.txt", text, 200, 26, T, B, M, "data.seed=7", &seeded),
                 SL_OK);
    cr_assert_eq(sl_data_windows(&seeded, 5, b), SL_OK);
    cr_assert(memcmp(a, b, sizeof a) != 0);

    /* The validation share: its own stream, windows inside it. */
    cr_assert_eq(seeded.val.len, 20);
    cr_assert_eq(sl_data_eval_windows(&seeded, true, 3, off), SL_OK);
    size_t val3[B] = {2, 6, 9, 7, 10, 6};
    cr_assert_arr_eq(off, val3, sizeof off);
    int32_t vx[PER * T], vy[PER * T];
    cr_assert_eq(sl_data_eval_batch(&seeded, true, 3, 1, vx, vy), SL_OK, "%s", sl_last_error());
    cr_assert_arr_eq(vx, seeded.val.ids + 9, T * sizeof(int32_t), "windows 2 and 3");
    cr_assert_arr_eq(vy + T, seeded.val.ids + 7 + 1, T * sizeof(int32_t));
    cr_assert_neq(sl_data_eval_batch(&seeded, true, 3, M, vx, vy), SL_OK,
                  "micro-batch out of range");
    int32_t x[PER * T];
    cr_assert_neq(sl_data_microbatch(&d, 0, M, x, NULL, NULL), SL_OK);
    size_t rows[B];
    cr_assert_neq(sl_data_batch_rows(&d, 0, rows), SL_OK, "a text has windows, not rows");
    sl_data_free(&d);
    sl_data_free(&again);
    sl_data_free(&seeded);

    /* Without a held-out share there is no validation batch. */
    cr_assert_eq(load_text_bytes("letters.txt", text, 200, 26, T, B, M, "data.val_fraction=0", &d),
                 SL_OK);
    assert_fails_with(sl_data_eval_batch(&d, true, 0, 0, vx, vy), "no validation share");
    sl_data_free(&d);
}

Test(data, text_gzip_reads_the_same)
{
    char text[201], plain[256], gzpath[256];
    letters(text, 200);
    memcpy(text + 10, "\xc3\xa9", 2); /* one multi-byte character */
    write_text(tmppath(plain, sizeof plain, "g.txt"), text);
    gzFile gz = gzopen(tmppath(gzpath, sizeof gzpath, "g.txt.gz"), "wb");
    cr_assert_not_null(gz);
    cr_assert_eq(gzwrite(gz, text, 200), 200);
    cr_assert_eq(gzclose(gz), Z_OK);
    sl_data a, b;
    sl_config cfg;
    cr_assert_eq(gpt_config("text", plain, 27, 8, 4, 2, NULL, &cfg), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_data_load(&cfg, 0, &a), SL_OK, "%s", sl_last_error());
    sl_config_free(&cfg);
    cr_assert_eq(gpt_config("text", gzpath, 27, 8, 4, 2, NULL, &cfg), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_data_load(&cfg, 0, &b), SL_OK, "%s", sl_last_error());
    sl_config_free(&cfg);
    cr_assert_eq(a.text.len, 179, "199 characters: int(199 * 0.9)");
    cr_assert_eq(a.text.len, b.text.len);
    cr_assert_eq(a.val.len, b.val.len);
    cr_assert_eq(a.nvocab, b.nvocab);
    cr_assert_arr_eq(a.vocab, b.vocab, sizeof(uint32_t) * (size_t)a.nvocab);
    cr_assert_arr_eq(a.text.ids, b.text.ids, sizeof(int32_t) * (a.text.len + a.val.len));
    sl_data_free(&a);
    sl_data_free(&b);
}

Test(data, text_bad_inputs)
{
    sl_data d;
    assert_fails_with(load_text_bytes("ff.txt",
                                      "ab\xff"
                                      "cdefgh",
                                      9, 65, 2, 2, 1, NULL, &d),
                      "byte 0xff at byte offset 2 is not valid UTF-8");
    assert_fails_with(load_text_bytes("overlong.txt", "abcdefg\xc0\xaf", 9, 65, 2, 2, 1, NULL, &d),
                      "byte 0xc0 at byte offset 7 is not valid UTF-8");
    assert_fails_with(load_text_bytes("cont.txt", "abcd\xc3z", 6, 65, 2, 2, 1, NULL, &d),
                      "byte 0x7a at byte offset 5 is not valid UTF-8");
    assert_fails_with(
        load_text_bytes("surrogate.txt", "abcd\xed\xa0\x80", 7, 65, 2, 2, 1, NULL, &d),
        "byte 0xa0 at byte offset 5 is not valid UTF-8");
    assert_fails_with(load_text_bytes("big.txt", "abcd\xf4\x90\x80\x80", 8, 65, 2, 2, 1, NULL, &d),
                      "byte 0x90 at byte offset 5 is not valid UTF-8");
    assert_fails_with(load_text_bytes("cut.txt", "abcdef\xe2\x82", 8, 65, 2, 2, 1, NULL, &d),
                      "ends inside the UTF-8 sequence that starts at byte offset 6");
    assert_fails_with(load_text("vocab.txt", "abcdeabcde", 3, 2, NULL, &d),
                      "the text has 5 distinct characters, more than model.gpt.vocab_size (3)");
    assert_fails_with(load_text("short.txt", "abcde", 65, 8, "data.val_fraction=0", &d),
                      "training share has 5 tokens, fewer than model.gpt.block_size + 1 (9)");
    assert_fails_with(load_text("empty.txt", "", 65, 1, "data.val_fraction=0", &d),
                      "training share has 0 tokens, fewer than model.gpt.block_size + 1 (2)");
    assert_fails_with(load_text("val.txt", "abcdefghijklmnopqrst", 65, 4, NULL, &d),
                      "validation share (data.val_fraction 0.1) has 2 tokens, fewer than "
                      "model.gpt.block_size + 1 (5)");

    /* data.text without a GPT is refused by the config. */
    char path[256], json[512];
    write_text(tmppath(path, sizeof path, "plain.txt"), "hello world\n");
    snprintf(json, sizeof json,
             "{\"model\": {\"inputs\": 3, \"layers\": [\"linear:3\"]}, \"data\": {\"text\": "
             "\"%s\"}, \"train\": {\"steps\": 1, \"batch\": 1, \"optimizer\": {\"name\": "
             "\"sgd\", \"lr\": 0.1}}}",
             path);
    sl_config cfg;
    assert_fails_with(sl_config_parse(json, tmpdir(), NULL, 0, &cfg), "data.text needs model.gpt");
    /* Nor does feature data have a vocabulary. */
    cr_assert_eq(load_csv_text("v.csv", "1,2,3,0\n", NULL, &d), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_data_vocab_size(&d), 0);
    cr_assert_eq(d.label_width, 1);
    cr_assert(!d.tokens);
    assert_fails_with(sl_data_write_vocab(&d, tmppath(path, sizeof path, "none.json")),
                      "no vocabulary");
    sl_data_free(&d);
}

/* x (I32) and y (I64) [3, 4] token windows. */
static void save_tokens(const char *path, const int32_t *x, const int64_t *y, int64_t rows,
                        int64_t cols)
{
    sl_tensor t[] = {
        {.name = "x", .dtype = SL_DTYPE_I32, .ndim = 2, .shape = {rows, cols}, .data = x},
        {.name = "y", .dtype = SL_DTYPE_I64, .ndim = 2, .shape = {rows, cols}, .data = y},
    };
    cr_assert_eq(sl_safetensors_save(path, t, 2, NULL, NULL, 0), SL_OK, "%s", sl_last_error());
}

static int load_fixture(const char *path, int vocab, int block, sl_data *d)
{
    sl_config cfg;
    cr_assert_eq(gpt_config("path", path, vocab, block, 4, 2, NULL, &cfg), SL_OK, "%s",
                 sl_last_error());
    int st = sl_data_load(&cfg, 0, d);
    sl_config_free(&cfg);
    return st;
}

Test(data, token_fixture_in_order)
{
    int32_t x[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    int64_t y[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    char path[256];
    save_tokens(tmppath(path, sizeof path, "tokens.safetensors"), x, y, 3, 4);
    sl_data d;
    cr_assert_eq(load_fixture(path, 13, 4, &d), SL_OK, "%s", sl_last_error());
    cr_assert(d.tokens);
    cr_assert_eq(d.label_width, 4);
    cr_assert_eq(d.train.rows, 3);
    cr_assert_eq(sl_data_vocab_size(&d), 0);
    /* Step 1 of batch 4 over 3 rows: rows 4, 5, 6, 7 mod 3 = 1, 2, 0, 1; micro-batch 1 is 0, 1. */
    int32_t mx[8], my[8];
    cr_assert_eq(sl_data_microbatch(&d, 1, 1, mx, my, NULL), SL_OK, "%s", sl_last_error());
    int32_t want_x[8] = {0, 1, 2, 3, 4, 5, 6, 7}, want_y[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    cr_assert_arr_eq(mx, want_x, sizeof mx);
    cr_assert_arr_eq(my, want_y, sizeof my);
    cr_assert_eq(sl_data_microbatch(&d, 1, 0, mx, my, NULL), SL_OK);
    cr_assert_arr_eq(mx, x + 4, sizeof mx, "rows 1 and 2");
    sl_data_free(&d);

    assert_fails_with(load_fixture(path, 12, 4, &d),
                      "tensor 'y' row 2 column 3: token id 12 is out of range [0, 12)");
    x[5] = -1;
    save_tokens(path, x, y, 3, 4);
    assert_fails_with(load_fixture(path, 13, 4, &d),
                      "tensor 'x' row 1 column 1: token id -1 is out of range [0, 13)");
    x[5] = 5;
    save_tokens(path, x, y, 3, 4);
    assert_fails_with(load_fixture(path, 13, 6, &d), "tensor 'x' must be I64 or I32 [N, 6]");
    save_tokens(path, x, y, 2, 6);
    assert_fails_with(load_fixture(path, 13, 4, &d), "tensor 'x' must be I64 or I32 [N, 4]");
}
