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
    assert_fails_with(load_st(p4, NULL, &d), "tensor 'x' row 1 column 1 is NaN");
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
