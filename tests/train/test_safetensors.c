/* safetensors: round trip, and a malformed twin for every header check. */
#include <criterion/criterion.h>
#include <stdint.h>

#include "helpers.h"
#include "runtime/safetensors/safetensors.h"

Test(safetensors, round_trip)
{
    float w[6] = {1, 2, 3, 4, 5, 6.5f};
    int64_t y[3] = {0, 7, -2};
    double d[2] = {0.25, -1e300};
    sl_tensor t[] = {
        {.name = "w", .dtype = SL_DTYPE_F32, .ndim = 2, .shape = {2, 3}, .data = w},
        {.name = "a.y", .dtype = SL_DTYPE_I64, .ndim = 1, .shape = {3}, .data = y},
        {.name = "d", .dtype = SL_DTYPE_F64, .ndim = 1, .shape = {2}, .data = d},
        {.name = "empty", .dtype = SL_DTYPE_F32, .ndim = 2, .shape = {0, 4}, .data = NULL},
    };
    const char *k[] = {"format", "note"}, *v[] = {"pt", "hello"};
    char path[256];
    tmppath(path, sizeof path, "rt.safetensors");
    cr_assert_eq(sl_safetensors_save(path, t, 4, k, v, 2), SL_OK, "%s", sl_last_error());

    sl_safetensors st;
    cr_assert_eq(sl_safetensors_load(path, &st), SL_OK, "%s", sl_last_error());
    cr_assert_eq(st.count, 4);
    cr_assert_str_eq(st.tensors[0].name, "a.y", "tensors are in name order");
    cr_assert_str_eq(sl_safetensors_meta(&st, "note"), "hello");
    const sl_tensor *tw = sl_safetensors_find(&st, "w");
    cr_assert_not_null(tw);
    cr_assert_eq(tw->ndim, 2);
    cr_assert_eq(tw->shape[1], 3);
    float back[6];
    cr_assert_eq(sl_tensor_to_f32(tw, back), SL_OK);
    cr_assert_arr_eq(back, w, sizeof w);
    int32_t yi[3];
    cr_assert_eq(sl_tensor_to_i32(sl_safetensors_find(&st, "a.y"), yi), SL_OK);
    cr_assert_eq(yi[1], 7);
    cr_assert_eq(yi[2], -2);
    cr_assert_eq(sl_tensor_to_i32(tw, yi), SL_EFORMAT, "F32 is not an integer tensor");
    cr_assert_eq(sl_safetensors_find(&st, "empty")->elems, 0);
    /* The data starts 8-byte aligned. */
    cr_assert_eq(((const char *)sl_safetensors_find(&st, "a.y")->data - (const char *)st.blob) % 8,
                 0);
    sl_safetensors_free(&st);
}

/* Builds a file in memory from a header text and `data_bytes` zero bytes, and parses it. */
static int parse_header(const char *header, size_t data_bytes, sl_safetensors *st)
{
    size_t h = strlen(header), n = 8 + h + data_bytes;
    unsigned char *buf = calloc(1, n);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(buf + 8, header, h);
    int rc = sl_safetensors_parse(buf, n, st);
    free(buf);
    return rc;
}

static void malformed(const char *header, size_t data_bytes, const char *needle)
{
    sl_safetensors st;
    int rc = parse_header(header, data_bytes, &st);
    cr_assert_eq(rc, SL_EFORMAT, "header %s should be malformed (got %d)", header, rc);
    cr_assert(strstr(sl_last_error(), needle), "header %s: message '%s' lacks '%s'", header,
              sl_last_error(), needle);
}

Test(safetensors, malformed_headers)
{
    sl_safetensors st;
    cr_assert_eq(
        parse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, &st),
        SL_OK, "%s", sl_last_error());
    sl_safetensors_free(&st);

    malformed("{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
              "dtype 'F8_E4M3' is not supported");
    malformed("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
              "needs 12 bytes but data_offsets span 8");
    malformed("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
              "end past the 4 data bytes after the header (a truncated file?)");
    malformed("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8,
              "end before they begin");
    malformed("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0,
              "shape[0] is not a non-negative integer");
    malformed("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,0]}}", 0, "shape[0]");
    malformed("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
              "\"data_offsets\":[0,0]}}",
              0, "overflows");
    malformed("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
              12, "overlap");
    malformed("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
              "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
              8, "appears twice");
    malformed("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "data_offsets must be");
    malformed("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "no dtype");
    malformed("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "no shape");
    malformed("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4,
              "unknown header field 'x'");
    malformed("{\"a\":7}", 0, "not an object");
    malformed("{\"__metadata__\":{\"k\":1}}", 0, "'k' is not a string");
    malformed("{\"a\":", 0, "not valid JSON");
    malformed("[1,2]", 0, "not a JSON object");

    /* Header lengths that do not fit the file. */
    unsigned char buf[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
    cr_assert_eq(sl_safetensors_parse(buf, 10, &st), SL_EFORMAT);
    cr_assert(strstr(sl_last_error(), "more than 100 MB"), "%s", sl_last_error());
    memset(buf, 0, 8);
    buf[0] = 3; /* 3 bytes of header, but only 2 follow */
    cr_assert_eq(sl_safetensors_parse(buf, 10, &st), SL_EFORMAT);
    cr_assert(strstr(sl_last_error(), "header length 3 is more than the 2 bytes after it"), "%s",
              sl_last_error());
    cr_assert_eq(sl_safetensors_parse(buf, 5, &st), SL_EFORMAT);
    cr_assert_eq(sl_safetensors_load("/nonexistent.safetensors", &st), SL_EIO);
}

/* Every prefix of a valid file, and every single-byte corruption of its header, must fail cleanly
 * or parse; never crash (ASan watches). */
Test(safetensors, truncations_and_corruptions)
{
    float w[4] = {1, 2, 3, 4};
    sl_tensor t[] = {{.name = "w", .dtype = SL_DTYPE_F32, .ndim = 2, .shape = {2, 2}, .data = w},
                     {.name = "b", .dtype = SL_DTYPE_F32, .ndim = 1, .shape = {2}, .data = w}};
    char path[256];
    tmppath(path, sizeof path, "fz.safetensors");
    cr_assert_eq(sl_safetensors_save(path, t, 2, NULL, NULL, 0), SL_OK);
    char *bytes;
    size_t size;
    cr_assert_eq(sl_read_file(path, &bytes, &size), SL_OK);
    sl_safetensors st;
    for (size_t n = 0; n < size; n++) {
        int rc = sl_safetensors_parse(bytes, n, &st);
        if (rc == SL_OK) sl_safetensors_free(&st);
        cr_assert_neq(rc, SL_OK, "a %zu-byte prefix of %zu parsed", n, size);
    }
    for (size_t i = 0; i < size && i < 120; i++) {
        for (int v = 0; v < 256; v += 17) {
            char *copy = malloc(size);
            memcpy(copy, bytes, size);
            copy[i] = (char)v;
            if (sl_safetensors_parse(copy, size, &st) == SL_OK) sl_safetensors_free(&st);
            free(copy);
        }
    }
    free(bytes);
}
