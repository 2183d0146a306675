/* The wire format alone: header round trip, every malformed header refused with its reason,
 * CRC32C against known values and against the table version on odd lengths and alignments. */
#include <criterion/criterion.h>

#include "helpers.h"

static void decode_fails(const sl_wire_header *h, int status, const char *needle)
{
    uint8_t raw[SL_WIRE_HEADER_SIZE];
    sl_wire_encode(h, raw);
    sl_wire_header out;
    int s = sl_wire_decode(raw, sizeof raw, &out);
    cr_assert_eq(s, status, "status %d (%s), wanted %d", s, sl_last_error(), status);
    cr_assert(strstr(sl_last_error(), needle), "message '%s' lacks '%s'", sl_last_error(), needle);
}

Test(wire, round_trip)
{
    sl_wire_header h, out;
    raw_header(&h, SL_MSG_GRADIENT, 4, 5, 77);
    h.step = 1ull << 40;
    h.aux = 99;
    h.crc = 0xdeadbeef;
    uint8_t raw[SL_WIRE_HEADER_SIZE];
    sl_wire_encode(&h, raw);
    cr_assert_eq(raw[0], 'S');
    cr_assert_eq(raw[3], 'E');
    cr_assert_eq(sl_wire_decode(raw, sizeof raw, &out), SL_OK, "%s", sl_last_error());
    cr_assert_eq(memcmp(&h, &out, sizeof h), 0);
    h.flags = SL_WIRE_FLAG_RING; /* a tensor in the sender's ring: bytes 52..55 */
    sl_wire_encode(&h, raw);
    cr_assert_eq(raw[52], 1);
    cr_assert_eq(sl_wire_decode(raw, sizeof raw, &out), SL_OK, "%s", sl_last_error());
    cr_assert_eq(out.flags, SL_WIRE_FLAG_RING);
}

Test(wire, malformed_headers)
{
    sl_wire_header h;
    raw_header(&h, SL_MSG_ACTIVATION, 0, 1, 1);
    h.magic = 0x12345678;
    decode_fails(&h, SL_EFORMAT, "magic");
    raw_header(&h, SL_MSG_ACTIVATION, 0, 1, 1);
    h.version = SL_WIRE_VERSION + 1;
    decode_fails(&h, SL_EPROTOCOL, "version");
    raw_header(&h, SL_MSG_ACTIVATION, 0, 1, 1);
    h.type = 0;
    decode_fails(&h, SL_EFORMAT, "message type");
    h.type = 200;
    decode_fails(&h, SL_EFORMAT, "message type");
    h.type = 4; /* LOSS and METRIC, never sent, are retired */
    decode_fails(&h, SL_EFORMAT, "message type");
    h.type = 5;
    decode_fails(&h, SL_EFORMAT, "message type");
    raw_header(&h, SL_MSG_ACTIVATION, 0, 1, 1);
    h.dtype = 42;
    decode_fails(&h, SL_EFORMAT, "dtype");
    raw_header(&h, SL_MSG_ACTIVATION, 0, 1, 1);
    h.ndim = 9;
    decode_fails(&h, SL_EFORMAT, "ndim");
    raw_header(&h, SL_MSG_ACTIVATION, 0, 1, 1);
    h.shape[1] = 0;
    decode_fails(&h, SL_EFORMAT, "positive");
    h.shape[1] = -3;
    decode_fails(&h, SL_EFORMAT, "positive");
    raw_header(&h, SL_MSG_ACTIVATION, 0, 1, 1);
    h.shape[4] = 7; /* beyond ndim */
    decode_fails(&h, SL_EFORMAT, "beyond ndim");
    raw_header(&h, SL_MSG_ACTIVATION, 0, 1, 1);
    h.ndim = 3;
    h.shape[0] = h.shape[1] = h.shape[2] = 1ll << 30;
    decode_fails(&h, SL_EFORMAT, "overflow");
    raw_header(&h, SL_MSG_ACTIVATION, 0, 1, 1);
    h.shape[0] = 1ll << 62; /* elements fit, bytes do not */
    h.shape[1] = 1;
    decode_fails(&h, SL_EFORMAT, "overflow");
    raw_header(&h, SL_MSG_ACTIVATION, 0, 1, 1);
    h.payload_len = 20;
    decode_fails(&h, SL_EFORMAT, "does not match the shape");
    /* The ring flag (bytes 52..55) is the only flag, and only HELLO and tensors carry it. */
    raw_header(&h, SL_MSG_ACTIVATION, 0, 1, 1);
    h.flags = 2;
    decode_fails(&h, SL_EFORMAT, "unknown flags");
    h.flags = SL_WIRE_FLAG_RING | 0x80000000u;
    decode_fails(&h, SL_EFORMAT, "unknown flags");
    int no_ring[] = {SL_MSG_DONE, SL_MSG_ABORT, SL_MSG_NORM};
    for (size_t i = 0; i < SL_ARRAY_LEN(no_ring); i++) {
        raw_header(&h, no_ring[i], 0, 1, 1);
        h.flags = SL_WIRE_FLAG_RING;
        decode_fails(&h, SL_EFORMAT, "ring flag");
    }

    uint8_t raw[SL_WIRE_HEADER_SIZE + 1] = {0};
    raw_header(&h, SL_MSG_ACTIVATION, 0, 1, 1);
    sl_wire_encode(&h, raw);
    sl_wire_header out;
    cr_assert_eq(sl_wire_decode(raw, 100, &out), SL_EFORMAT);
    cr_assert(strstr(sl_last_error(), "truncated"));
    cr_assert_eq(sl_wire_decode(raw, sizeof raw, &out), SL_EFORMAT);
    cr_assert_eq(sl_wire_decode(NULL, 0, &out), SL_EFORMAT);
}

Test(wire, scalar_and_every_dtype)
{
    for (int d = 1; d < SL_DTYPE_COUNT; d++) {
        sl_wire_header h, out;
        raw_header(&h, SL_MSG_DONE, 0, 1, 1);
        h.dtype = (uint16_t)d;
        h.ndim = 0;
        h.shape[0] = h.shape[1] = 0;
        h.payload_len = sl_dtype_size(d);
        uint8_t raw[SL_WIRE_HEADER_SIZE];
        sl_wire_encode(&h, raw);
        cr_assert_eq(sl_wire_decode(raw, sizeof raw, &out), SL_OK, "%s", sl_last_error());
    }
}

static uint32_t crc_bitwise(const uint8_t *p, size_t n)
{
    uint32_t c = ~0u;
    while (n--) {
        c ^= *p++;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
    }
    return ~c;
}

/* Two 64-byte aligned buffers of at least n + 128 bytes (returned in *cap), the first filled
 * with a pattern. */
static size_t crc_buffers(size_t n, uint8_t **buf, uint8_t **copy)
{
    size_t cap = (n + 128 + 63) / 64 * 64; /* aligned_alloc takes a multiple of the alignment */
    *buf = aligned_alloc(64, cap);
    *copy = aligned_alloc(64, cap);
    cr_assert(*buf && *copy);
    for (size_t i = 0; i < cap; i++) (*buf)[i] = (uint8_t)(i * 2654435761u >> 13);
    return cap;
}

/* sl_crc32c and sl_crc32c_copy over src[0..len) against the bitwise definition, whole and chained
 * in two parts split at `split` (the second from a nonzero CRC), copying to copy + each of
 * dst_offs: same CRC, same bytes, nothing written past the end. */
static void check_crc_at(const char *path, const uint8_t *src, size_t len, size_t split,
                         uint8_t *copy, size_t cap, const size_t *dst_offs, size_t ndst)
{
    size_t off = (uintptr_t)src & 63; /* the buffers are 64-byte aligned: src's offset in them */
    uint32_t want_crc = crc_bitwise(src, len);
    cr_assert_eq(sl_crc32c(0, src, len), want_crc, "%s: len %zu off %zu", path, len, off);
    uint32_t c = sl_crc32c(0, src, split);
    cr_assert_eq(sl_crc32c(c, src + split, len - split), want_crc, "%s: len %zu off %zu chained",
                 path, len, off);
    for (size_t d = 0; d < ndst; d++) {
        uint8_t *dst = copy + dst_offs[d];
        memset(copy, 0, cap);
        c = sl_crc32c_copy(0, dst, src, split);
        cr_assert_eq(sl_crc32c_copy(c, dst + split, src + split, len - split), want_crc,
                     "%s copy: len %zu off %zu to %zu", path, len, off, dst_offs[d]);
        cr_assert_eq(memcmp(dst, src, len), 0);
        cr_assert_eq(dst[len], 0, "copied past the end");
    }
}

/* Checks sl_crc32c and sl_crc32c_copy against the bitwise definition on the path `want` (one of
 * sl_crc32c_path's names), which SLUICE_CRC selects: Criterion runs each test in a process of its
 * own, so the choice is made afresh. A path this processor lacks is skipped, and says so. */
static void check_crc_path(const char *want)
{
    if (want) setenv("SLUICE_CRC", want, 1);
    const char *path = sl_crc32c_path();
    if (want && strcmp(path, want))
        cr_skip_test("this processor has no %s path (best: %s)", want, path);
    cr_assert_eq(sl_crc32c(0, "123456789", 9), 0xe3069283u);
    cr_assert_eq(sl_crc32c(0, "", 0), 0u);
    /* Long enough for the three-stream path, around every folding path's block sizes, at
     * offsets from a 64-byte boundary that make the folds' head (up to the boundary of the
     * destination when copying, else of the source) every length from 0 to 63, with the source
     * and the destination equally and differently misaligned, and chained. */
    size_t n = 3 * 8192 * 3 + 1000;
    uint8_t *buf, *copy;
    size_t cap = crc_buffers(n, &buf, &copy);
    size_t lens[] = {1,    7,    8,    63,   127,  128,   129,   255,   256,   511,
                     512,  513,  639,  640,  641,  1023,  1024,  1025,  1279,  1280,
                     1281, 2047, 2048, 2049, 4099, 24575, 24576, 24577, 65536, 3 * 8192 * 2 + 5,
                     n};
    size_t offs[] = {0, 1, 3, 8, 40, 63}, dst_offs[] = {0, 8, 40, 61};
    for (size_t o = 0; o < SL_ARRAY_LEN(offs); o++)
        for (size_t i = 0; i < SL_ARRAY_LEN(lens); i++)
            check_crc_at(path, buf + offs[o], lens[i], lens[i] / 3, copy, cap, dst_offs,
                         SL_ARRAY_LEN(dst_offs));
    free(copy);
    free(buf);
    /* Copies of SL_CRC_STREAM_BYTES and more store past the caches: a streamed part chained into
     * a short one, at two source and two destination offsets. */
    size_t big = SL_CRC_STREAM_BYTES + 333, big_offs[] = {0, 40}, big_dst_offs[] = {0, 8};
    cap = crc_buffers(big, &buf, &copy);
    for (size_t o = 0; o < SL_ARRAY_LEN(big_offs); o++)
        check_crc_at(path, buf + big_offs[o], big, big - 100, copy, cap, big_dst_offs,
                     SL_ARRAY_LEN(big_dst_offs));
    free(copy);
    free(buf);
}

Test(wire, crc32c)
{
    check_crc_path(NULL); /* the fastest this processor has */
}

Test(wire, crc32c_avx2)
{
    check_crc_path("avx2-vpclmulqdq");
}

Test(wire, crc32c_sse42)
{
    check_crc_path("sse4.2");
}

Test(wire, crc32c_table)
{
    check_crc_path("table"); /* the portable fallback, which every processor has */
}

/* The reductions' messages have one shape each: TIED a gradient matrix in F32 (one or two
 * dimensions), NORM one F64 of shape [1]; any other is refused before anything trusts it. */
Test(wire, malformed_reductions)
{
    sl_wire_header h, out;
    uint8_t raw[SL_WIRE_HEADER_SIZE];
    raw_header(&h, SL_MSG_TIED, 0, 1, 1); /* F32 [2, 3] */
    sl_wire_encode(&h, raw);
    cr_assert_eq(sl_wire_decode(raw, sizeof raw, &out), SL_OK, "%s", sl_last_error());
    cr_assert_str_eq(sl_msg_type_name(SL_MSG_TIED), "TIED");
    h.dtype = SL_DTYPE_F64;
    h.payload_len = 48;
    decode_fails(&h, SL_EFORMAT, "TIED message of");
    raw_header(&h, SL_MSG_TIED, 0, 1, 1);
    h.ndim = 3;
    h.shape[2] = 1;
    decode_fails(&h, SL_EFORMAT, "one or two dimensions");
    raw_header(&h, SL_MSG_TIED, 0, 1, 1);
    h.ndim = 0;
    h.shape[0] = h.shape[1] = 0;
    h.payload_len = 4;
    decode_fails(&h, SL_EFORMAT, "TIED message of");

    raw_header(&h, SL_MSG_NORM, 0, 1, 1);
    h.dtype = SL_DTYPE_F64;
    h.ndim = 1;
    h.shape[0] = 1;
    h.shape[1] = 0;
    h.payload_len = 8;
    sl_wire_encode(&h, raw);
    cr_assert_eq(sl_wire_decode(raw, sizeof raw, &out), SL_OK, "%s", sl_last_error());
    cr_assert_str_eq(sl_msg_type_name(SL_MSG_NORM), "NORM");
    h.dtype = SL_DTYPE_F32; /* a float, not a double */
    h.payload_len = 4;
    decode_fails(&h, SL_EFORMAT, "one F64 of shape [1]");
    h.dtype = SL_DTYPE_F64;
    h.shape[0] = 2; /* two numbers */
    h.payload_len = 16;
    decode_fails(&h, SL_EFORMAT, "NORM message of");
    h.ndim = 0; /* a scalar: not the shape NORM has */
    h.shape[0] = 0;
    h.payload_len = 8;
    decode_fails(&h, SL_EFORMAT, "NORM message of");

    /* SYNC: F32 gradients of shape [n] (mb 0), or one F64 loss sum (mb 1). */
    raw_header(&h, SL_MSG_SYNC, 0, 1, 1);
    h.mb = 0;
    h.dtype = SL_DTYPE_F32;
    h.ndim = 1;
    h.shape[0] = 3;
    h.shape[1] = 0;
    h.payload_len = 12;
    sl_wire_encode(&h, raw);
    cr_assert_eq(sl_wire_decode(raw, sizeof raw, &out), SL_OK, "%s", sl_last_error());
    cr_assert_str_eq(sl_msg_type_name(SL_MSG_SYNC), "SYNC");
    h.mb = 1; /* the loss sum is one double */
    decode_fails(&h, SL_EFORMAT, "SYNC message 1 of F32");
    h.dtype = SL_DTYPE_F64;
    h.shape[0] = 1;
    h.payload_len = 8;
    sl_wire_encode(&h, raw);
    cr_assert_eq(sl_wire_decode(raw, sizeof raw, &out), SL_OK, "%s", sl_last_error());
    h.mb = 2;
    decode_fails(&h, SL_EFORMAT, "SYNC message 2");
    h.mb = 0; /* gradients are F32 */
    decode_fails(&h, SL_EFORMAT, "SYNC message 0 of F64");
}

/* Steps in messages: a training step, an evaluation batch, a stop vote. */
Test(wire, step_text)
{
    char buf[64];
    cr_assert_str_eq(sl_step_text(7, buf, sizeof buf), "step 7");
    cr_assert_str_eq(sl_step_text(SL_STEP_EVAL | 3, buf, sizeof buf), "evaluation batch 3");
    cr_assert_str_eq(sl_step_text(SL_STEP_VOTE | 2, buf, sizeof buf), "the stop vote after step 2");
}
