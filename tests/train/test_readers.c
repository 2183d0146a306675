/* Every reader refuses what is not a sound file of its kind, with a message naming the file and
 * what was wrong: FIFOs and devices (which would block or never end), files over the size limits
 * (sparse files here, so nothing large is written), gzip streams cut short, NUL bytes, values
 * beyond float's range, safetensors files with holes or bytes after their data, NaN in initial
 * weights, and config texts with something after their JSON. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <math.h>
#include <sys/stat.h>
#include <zlib.h>

#include "helpers.h"
#include "runtime/config/config.h"
#include "runtime/data/data.h"
#include "runtime/model/model.h"
#include "runtime/safetensors/safetensors.h"

#define MODEL "\"model\": {\"inputs\": 3, \"layers\": [\"linear:4\", \"relu\", \"linear:3\"]%s}"
#define TRAIN                                                                                      \
    "\"train\": {\"steps\": 1, \"batch\": 2, \"optimizer\": {\"name\": \"sgd\", \"lr\": 0.1}}"

/* A config over data.path `data` (and model.init `init` when not NULL), parsed from text. */
static int config(const char *data, const char *init, sl_config *cfg)
{
    char model_extra[300] = "", json[1024];
    if (init) snprintf(model_extra, sizeof model_extra, ", \"init\": \"%s\"", init);
    char model[512];
    snprintf(model, sizeof model, MODEL, model_extra);
    snprintf(json, sizeof json, "{%s, \"data\": {\"path\": \"%s\"}, " TRAIN "}", model, data);
    return sl_config_parse(json, tmpdir(), NULL, 0, cfg);
}

static const char *good_csv(void)
{
    static char path[256];
    if (!path[0]) write_text(tmppath(path, sizeof path, "good.csv"), "1,2,3,0\n4,5,6,1\n");
    return path;
}

/* Loads `path` as the data of the config above, bypassing the config's own checks of the path
 * (the reader must refuse by itself what the config would). */
static int load_data_at(const char *path, sl_data *d)
{
    sl_config cfg;
    cr_assert_eq(config(good_csv(), NULL, &cfg), SL_OK, "%s", sl_last_error());
    free(cfg.data.path);
    cfg.data.path = strdup(path);
    int st = sl_data_load(&cfg, 3, d);
    sl_config_free(&cfg);
    return st;
}

static int load_csv_bytes(const char *name, const void *bytes, size_t n, sl_data *d)
{
    char path[256];
    FILE *f = fopen(tmppath(path, sizeof path, name), "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(bytes, 1, n, f), n);
    fclose(f);
    return load_data_at(path, d);
}

static void make_sparse(const char *path, off_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, size), 0, "a sparse file of %lld bytes", (long long)size);
    close(fd);
}

/* ------------------------------------------------------------------------------------------------
 * Not regular files, size limits */

Test(readers, fifos_and_devices_are_refused_not_read)
{
    char fifo[256];
    tmppath(fifo, sizeof fifo, "fifo.csv");
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    sl_config cfg;
    /* The config names the key ... */
    assert_fails_with(config(fifo, NULL, &cfg), "data.path: '");
    cr_assert(strstr(sl_last_error(), "is not a regular file"), "%s", sl_last_error());
    assert_fails_with(config(good_csv(), "/dev/zero", &cfg),
                      "model.init: '/dev/zero' is not a regular file");
    /* ... and each reader refuses by itself, at once (a FIFO without a writer would block). */
    sl_data d;
    assert_fails_with(load_data_at(fifo, &d), "is a FIFO, not a regular file");
    sl_safetensors st;
    assert_fails_with(sl_safetensors_load("/dev/zero", &st),
                      "'/dev/zero' is a character device, not a regular file");
    assert_fails_with(sl_safetensors_load(tmpdir(), &st), "is a directory");
    assert_fails_with(sl_config_load(fifo, NULL, 0, &cfg), "is a FIFO");
    uint32_t *vocab;
    int nvocab;
    assert_fails_with(sl_data_read_vocab(fifo, &vocab, &nvocab), "is a FIFO");
    char *text;
    size_t len;
    assert_fails_with(sl_read_file("/dev/zero", &text, &len), "is a character device");
}

Test(readers, files_over_the_limits_are_refused_before_reading)
{
    char path[256];
    sl_safetensors st;
    make_sparse(tmppath(path, sizeof path, "huge.safetensors"),
                (off_t)SL_SAFETENSORS_MAX_BYTES + 1);
    assert_fails_with(sl_safetensors_load(path, &st), "more than the");
    cr_assert(strstr(sl_last_error(), "huge.safetensors"), "%s", sl_last_error());
    sl_config cfg;
    make_sparse(tmppath(path, sizeof path, "huge.json"), (off_t)SL_CONFIG_MAX_BYTES + 1);
    assert_fails_with(sl_config_load(path, NULL, 0, &cfg), "huge.json' is 16777217 bytes");
    sl_data d;
    make_sparse(tmppath(path, sizeof path, "huge.csv"), (off_t)SL_DATA_MAX_BYTES + 1);
    assert_fails_with(load_data_at(path, &d), "more than the 268435456 bytes");
}

/* gzip members concatenated: a small file that decompresses to more than the limit. The reader
 * stops at the limit instead of filling the memory. */
Test(readers, a_gzip_bomb_stops_at_the_limit)
{
    size_t block = 1 << 20;
    char *lines = malloc(block);
    for (size_t i = 0; i < block; i += 8) memcpy(lines + i, "1,2,3,0\n", 8);
    uLongf clen = compressBound(block) + 32;
    unsigned char *member = malloc(clen);
    z_stream z = {0};
    cr_assert_eq(deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = (unsigned char *)lines;
    z.avail_in = (uInt)block;
    z.next_out = member;
    z.avail_out = (uInt)clen;
    cr_assert_eq(deflate(&z, Z_FINISH), Z_STREAM_END);
    size_t mlen = z.total_out;
    deflateEnd(&z);
    char path[256];
    FILE *f = fopen(tmppath(path, sizeof path, "bomb.csv.gz"), "wb");
    cr_assert_not_null(f);
    for (size_t i = 0; i <= SL_DATA_MAX_BYTES / block; i++) fwrite(member, 1, mlen, f);
    fclose(f);
    free(member);
    free(lines);
    sl_data d;
    assert_fails_with(load_data_at(path, &d), "more than 268435456 bytes (once decompressed)");
    cr_assert(strstr(sl_last_error(), "bomb.csv.gz"), "%s", sl_last_error());
}

/* ------------------------------------------------------------------------------------------------
 * CSV */

Test(readers, csv_nul_bytes_overflow_and_empty_columns)
{
    sl_data d;
    /* A NUL at the start of a line used to end the data there, silently. */
    static const char nul[] = "1,2,3,0\n\0,2,3,1\n4,5,6,2\n";
    assert_fails_with(load_csv_bytes("nul.csv", nul, sizeof nul - 1, &d),
                      "nul.csv: line 2 has a NUL byte");
    static const char nul_mid[] = "1,2,3,0\n4,5\0,6,1\n";
    assert_fails_with(load_csv_bytes("nulmid.csv", nul_mid, sizeof nul_mid - 1, &d),
                      "line 2 has a NUL byte at byte 4");
    /* 1e39 is a finite double but no float: it used to become inf and train NaNs. */
    static const char big[] = "1,2,3,0\n1e39,2,3,1\n";
    assert_fails_with(load_csv_bytes("big.csv", big, sizeof big - 1, &d),
                      "big.csv: line 2, column 1: 1e+39 is too large for a 32-bit float");
    static const char nbig[] = "1,-4e38,3,0\n";
    assert_fails_with(load_csv_bytes("nbig.csv", nbig, sizeof nbig - 1, &d),
                      "line 1, column 2: -4e+38 is too large");
    static const char empty[] = "1,,3,0\n";
    assert_fails_with(load_csv_bytes("empty.csv", empty, sizeof empty - 1, &d),
                      "line 1, column 2 is empty");
    static const char trailing[] = "1,2,3,\n4,5,6,1\n";
    assert_fails_with(load_csv_bytes("trailing.csv", trailing, sizeof trailing - 1, &d),
                      "line 1, column 4 is empty");
    /* Features that data.scale takes beyond float's range. */
    char path[256];
    write_text(tmppath(path, sizeof path, "scaled.csv"), "1,2,3e30,0\n");
    sl_config cfg;
    cr_assert_eq(config(path, NULL, &cfg), SL_OK, "%s", sl_last_error());
    cfg.data.scale = 1e30;
    assert_fails_with(sl_data_load(&cfg, 3, &d), "row 1, column 3 times data.scale (1e+30)");
    sl_config_free(&cfg);
}

/* A gzip'd CSV with its end cut off, or a byte of its stream changed. */
Test(readers, truncated_and_corrupt_gzip)
{
    char text[4096] = "";
    for (int i = 0; i < 200; i++)
        snprintf(text + strlen(text), sizeof text - strlen(text), "%d,%d,%d,%d\n", i, i + 1, i + 2,
                 i % 3);
    char path[256];
    tmppath(path, sizeof path, "whole.csv.gz");
    gzFile gz = gzopen(path, "wb");
    cr_assert_not_null(gz);
    gzputs(gz, text);
    gzclose(gz);
    char *bytes;
    size_t n;
    cr_assert_eq(sl_read_file(path, &bytes, &n), SL_OK);
    sl_data d;
    cr_assert_eq(load_csv_bytes("ok.csv.gz", bytes, n, &d), SL_OK, "%s", sl_last_error());
    cr_assert_eq(d.train.rows, 200);
    sl_data_free(&d);
    assert_fails_with(load_csv_bytes("cut.csv.gz", bytes, n - 12, &d), "cut.csv.gz: ");
    cr_assert(strstr(sl_last_error(), "truncated or corrupt gzip"), "%s", sl_last_error());
    bytes[n / 2] ^= 0x55;
    assert_fails_with(load_csv_bytes("bad.csv.gz", bytes, n, &d), "bad.csv.gz: ");
    free(bytes);
    /* A NUL at the start of a line inside the gzip stream is refused as in a plain file. */
    tmppath(path, sizeof path, "nul.csv.gz");
    gz = gzopen(path, "wb");
    cr_assert_not_null(gz);
    gzwrite(gz, "1,2,3,0\n\0,5,6,1\n", 16);
    gzclose(gz);
    assert_fails_with(load_data_at(path, &d), "nul.csv.gz: line 2 has a NUL byte");
}

/* ------------------------------------------------------------------------------------------------
 * Safetensors */

/* A file in memory from a header text and `data_bytes` bytes of 0x3f (1.0f is 0x3f800000: any
 * F32 value read from them is finite). */
static int parse_header(const char *header, size_t data_bytes, sl_safetensors *st)
{
    size_t h = strlen(header), n = 8 + h + data_bytes;
    unsigned char *buf = malloc(n);
    memset(buf, 0x3f, n);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(buf + 8, header, h);
    int rc = sl_safetensors_parse(buf, n, st);
    free(buf);
    return rc;
}

Test(readers, safetensors_tile_their_data_exactly)
{
    sl_safetensors st;
    assert_fails_with(
        parse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                     "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                     12, &st),
        "data bytes [4, 8) belong to no tensor (a hole before tensor 'b')");
    assert_fails_with(
        parse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, &st),
        "the file has 4 bytes after the last tensor's data");
    assert_fails_with(
        parse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}xy", 4, &st),
        "the header has bytes after its JSON object");
    /* Padding after the JSON (as writers align the data) is fine, and so is an empty tensor. */
    cr_assert_eq(parse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                              "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}   ",
                              4, &st),
                 SL_OK, "%s", sl_last_error());
    sl_safetensors_free(&st);
    char header[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    unsigned char buf[8 + sizeof header + 4] = {sizeof header - 1};
    memcpy(buf + 8, header, sizeof header - 1);
    buf[8 + 6] = '\0'; /* inside the name */
    cr_assert_eq(sl_safetensors_parse(buf, 8 + sizeof header - 1 + 4, &st), SL_EFORMAT);
    cr_assert(strstr(sl_last_error(), "NUL byte at byte 14"), "%s", sl_last_error());
}

Test(readers, a_truncated_safetensors_file_names_the_file)
{
    float w[6] = {1, 2, 3, 4, 5, 6};
    sl_tensor t = {.name = "w", .dtype = SL_DTYPE_F32, .ndim = 1, .shape = {6}, .data = w};
    char path[256];
    tmppath(path, sizeof path, "cut.safetensors");
    cr_assert_eq(sl_safetensors_save(path, &t, 1, NULL, NULL, 0), SL_OK);
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    cr_assert_eq(truncate(path, sb.st_size - 3), 0);
    sl_safetensors st;
    assert_fails_with(sl_safetensors_load(path, &st), "cut.safetensors: tensor 'w'");
    cr_assert(strstr(sl_last_error(), "a truncated file?"), "%s", sl_last_error());
}

/* The model of config() with its weights written to `name`, `bad` put into element 5 of
 * '2.weight' (F32), or the whole file written as F64 when `f64`. */
static void write_init(const char *name, float bad, bool f64, double bad64, char *path)
{
    sl_config cfg;
    cr_assert_eq(config(good_csv(), NULL, &cfg), SL_OK, "%s", sl_last_error());
    sl_model m;
    cr_assert_eq(sl_model_init(&cfg, &m), SL_OK, "%s", sl_last_error());
    sl_weights w;
    cr_assert_eq(sl_weights_init(&m, 1, &w), SL_OK);
    int p = sl_model_find_param(&m, "2.weight");
    cr_assert_geq(p, 0);
    w.data[p][5] = bad;
    tmppath(path, 256, name);
    sl_tensor t[8];
    double *wide[8] = {0};
    for (int i = 0; i < m.ntensors; i++) {
        t[i] = (sl_tensor){.name = m.params[i].name,
                           .dtype = f64 ? SL_DTYPE_F64 : SL_DTYPE_F32,
                           .ndim = m.params[i].spec.ndim,
                           .data = w.data[i]};
        memcpy(t[i].shape, m.params[i].spec.shape, sizeof(int64_t) * (size_t)t[i].ndim);
        if (f64) {
            wide[i] = malloc(sizeof(double) * m.params[i].numel);
            for (size_t j = 0; j < m.params[i].numel; j++) wide[i][j] = w.data[i][j];
            if (i == p) wide[i][5] = bad64;
            t[i].data = wide[i];
        }
    }
    cr_assert_eq(sl_safetensors_save(path, t, (size_t)m.ntensors, NULL, NULL, 0), SL_OK);
    for (int i = 0; i < 8; i++) free(wide[i]);
    sl_weights_free(&w);
    sl_model_free(&m);
    sl_config_free(&cfg);
}

static int load_init(const char *path)
{
    sl_config cfg;
    cr_assert_eq(config(good_csv(), path, &cfg), SL_OK, "%s", sl_last_error());
    sl_model m;
    cr_assert_eq(sl_model_init(&cfg, &m), SL_OK, "%s", sl_last_error());
    sl_weights w;
    int st = sl_weights_from_config(&cfg, &m, &w);
    if (st == SL_OK) sl_weights_free(&w);
    sl_model_free(&m);
    sl_config_free(&cfg);
    return st;
}

Test(readers, init_weights_must_be_finite_floats)
{
    char path[256];
    write_init("ok.safetensors", 0.5f, false, 0, path);
    cr_assert_eq(load_init(path), SL_OK, "%s", sl_last_error());
    write_init("nan.safetensors", NAN, false, 0, path);
    assert_fails_with(load_init(path), "nan.safetensors: tensor '2.weight' element [1, 1] is NaN");
    write_init("inf.safetensors", -INFINITY, false, 0, path);
    assert_fails_with(load_init(path), "tensor '2.weight' element [1, 1] is infinite");
    write_init("wide.safetensors", 0, true, 1e39, path);
    assert_fails_with(load_init(path),
                      "wide.safetensors: tensor '2.weight' element [1, 1] is 1e+39, too large for "
                      "a 32-bit float");
    write_init("wide_ok.safetensors", 0, true, 0.25, path);
    cr_assert_eq(load_init(path), SL_OK, "%s", sl_last_error());
}

/* ------------------------------------------------------------------------------------------------
 * Config and vocab.json texts */

Test(readers, config_texts_hold_one_json_object)
{
    char good[512], path[256];
    snprintf(good, sizeof good, "{" MODEL ", \"data\": {\"path\": \"good.csv\"}, " TRAIN "}", "");
    good_csv();
    sl_config cfg;
    tmppath(path, sizeof path, "c.json");
    write_text(path, good);
    cr_assert_eq(sl_config_load(path, NULL, 0, &cfg), SL_OK, "%s", sl_last_error());
    sl_config_free(&cfg);
    char text[600];
    snprintf(text, sizeof text, "%s\n{\"extra\": 1}\n", good);
    write_text(path, text);
    assert_fails_with(sl_config_load(path, NULL, 0, &cfg), "c.json: text after the JSON object");
    /* A NUL used to end the text early, leaving whatever came before as the config. */
    FILE *f = fopen(path, "wb");
    fprintf(f, "%s\n", good);
    fputc('\0', f);
    fputs("garbage", f);
    fclose(f);
    assert_fails_with(sl_config_load(path, NULL, 0, &cfg), "c.json: a NUL byte at line 2");
    /* --set values are JSON only when the whole value is. */
    const char *steps[] = {"train.steps=10abc"};
    assert_fails_with(sl_config_parse(good, tmpdir(), steps, 1, &cfg),
                      "train.steps must be an integer (got a string)");
    const char *empty[] = {"train..steps=1"};
    assert_fails_with(sl_config_parse(good, tmpdir(), empty, 1, &cfg), "has an empty part");
    const char *last[] = {"train.=1"};
    assert_fails_with(sl_config_parse(good, tmpdir(), last, 1, &cfg), "has an empty part");
    const char *inf[] = {"train.optimizer.lr=1e999"};
    assert_fails_with(sl_config_parse(good, tmpdir(), inf, 1, &cfg), "train.optimizer.lr");
}

Test(readers, vocab_json_holds_one_array)
{
    char path[256];
    uint32_t *vocab;
    int n;
    write_text(tmppath(path, sizeof path, "vocab.json"), "[\"a\", \"b\"]\n");
    cr_assert_eq(sl_data_read_vocab(path, &vocab, &n), SL_OK, "%s", sl_last_error());
    cr_assert_eq(n, 2);
    free(vocab);
    write_text(path, "[\"a\", \"b\"] [\"c\"]\n");
    assert_fails_with(sl_data_read_vocab(path, &vocab, &n), "vocab.json: not a vocabulary");
}
