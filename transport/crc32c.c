/* CRC32C (Castagnoli), the checksum of every wire message: the reflected polynomial 0x82f63b78.
 * With SSE4.2 three independent streams keep the crc32 instruction's pipeline full (latency 3,
 * throughput 1 per cycle); the three partial CRCs are joined by multiplying by x^(8n) modulo the
 * polynomial (Mark Adler's method). With VPCLMULQDQ the bulk is folded instead (see crc_clmul).
 * Kept free of libzmq, like wire.c, so the fuzzer can build it alone. */
#include "transport/transport.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

#define POLY 0x82f63b78u

static uint32_t table[256];
static uint32_t x8n_long; /* x^(8*LONG_BLOCK) mod P, to shift a CRC over one block */
#define LONG_BLOCK 8192
/* The paths, slowest first; crc_level is the fastest this processor has, capped by SLUICE_CRC. */
enum { CRC_TABLE, CRC_SSE42, CRC_CLMUL256, CRC_CLMUL512, CRC_LEVELS };
static const char *const crc_names[CRC_LEVELS] = {"table", "sse4.2", "avx2-vpclmulqdq",
                                                  "avx512-vpclmulqdq"};
static int crc_level;
/* Folding constants for moving a 128-bit lane 128, 256, 512 and 1024 bits on, see
 * crc_clmul. */
enum { K128, K256, K512, K1024, KS };
static uint64_t k_fold[KS][2];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

/* a * b modulo P, both reflected polynomials. */
static uint32_t multmodp(uint32_t a, uint32_t b)
{
    uint32_t m = (uint32_t)1 << 31, prod = 0;
    for (;;) {
        if (a & m) {
            prod ^= b;
            if ((a & (m - 1)) == 0) break;
        }
        m >>= 1;
        b = b & 1 ? (b >> 1) ^ POLY : b >> 1;
    }
    return prod;
}

/* x^(8*n) modulo P. */
static uint32_t x8nmodp(size_t n)
{
    uint32_t xp = (uint32_t)1 << 31; /* x^0 */
    uint32_t sq = (uint32_t)1 << 23; /* x^8 */
    while (n) {
        if (n & 1) xp = multmodp(sq, xp);
        sq = multmodp(sq, sq);
        n >>= 1;
    }
    return xp;
}

/* x^n modulo P. */
static uint32_t xnmodp(unsigned n)
{
    uint32_t xp = (uint32_t)1 << 31, base = (uint32_t)1 << 30; /* x^0, x^1 */
    while (n) {
        if (n & 1) xp = multmodp(base, xp);
        base = multmodp(base, base);
        n >>= 1;
    }
    return xp;
}

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
        table[i] = c;
    }
    x8n_long = x8nmodp(LONG_BLOCK);
    for (int i = 0; i < KS; i++) {
        unsigned dist = 128u << i;
        k_fold[i][0] = (uint64_t)xnmodp(dist + 63) << 32;
        k_fold[i][1] = (uint64_t)xnmodp(dist - 1) << 32;
    }
    crc_level = CRC_TABLE;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) {
        crc_level = CRC_SSE42;
        if (__builtin_cpu_supports("vpclmulqdq") && __builtin_cpu_supports("avx2"))
            crc_level = CRC_CLMUL256;
        if (crc_level == CRC_CLMUL256 && __builtin_cpu_supports("avx512f"))
            crc_level = CRC_CLMUL512;
    }
#endif
    /* SLUICE_CRC names a slower path to use instead (to test it, or to rule it out). */
    const char *cap = getenv("SLUICE_CRC");
    for (int i = 0; cap && i < crc_level; i++)
        if (!strcmp(cap, crc_names[i])) crc_level = i;
}

const char *sl_crc32c_path(void)
{
    pthread_once(&crc_once, crc_init);
    return crc_names[crc_level];
}

/* The portable fallback (about 1 GB/s). */
static uint32_t crc_table(uint32_t c, const uint8_t *p, size_t n)
{
    while (n--) c = table[(c ^ *p++) & 0xff] ^ (c >> 8);
    return c;
}

#if defined(__x86_64__)
#include <nmmintrin.h>

/* With dst != NULL the bytes are copied to dst in the same pass, so a payload is read from
 * memory once for both its checksum and its copy. */
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t c, uint8_t *dst, const uint8_t *p,
                                                         size_t n)
{
    uint64_t c0 = c;
    while (n && ((uintptr_t)p & 7)) {
        if (dst) *dst++ = *p;
        c0 = _mm_crc32_u8((uint32_t)c0, *p++);
        n--;
    }
    while (n >= 3 * LONG_BLOCK) {
        uint64_t c1 = 0, c2 = 0;
        const uint8_t *end = p + LONG_BLOCK;
        do {
            uint64_t a, b, d;
            memcpy(&a, p, 8);
            memcpy(&b, p + LONG_BLOCK, 8);
            memcpy(&d, p + 2 * LONG_BLOCK, 8);
            c0 = _mm_crc32_u64(c0, a);
            c1 = _mm_crc32_u64(c1, b);
            c2 = _mm_crc32_u64(c2, d);
            if (dst) {
                memcpy(dst, &a, 8);
                memcpy(dst + LONG_BLOCK, &b, 8);
                memcpy(dst + 2 * LONG_BLOCK, &d, 8);
                dst += 8;
            }
            p += 8;
        } while (p < end);
        c0 = multmodp(x8n_long, (uint32_t)c0) ^ (uint32_t)c1;
        c0 = multmodp(x8n_long, (uint32_t)c0) ^ (uint32_t)c2;
        p += 2 * LONG_BLOCK;
        if (dst) dst += 2 * LONG_BLOCK;
        n -= 3 * LONG_BLOCK;
    }
    while (n >= 8) {
        uint64_t a;
        memcpy(&a, p, 8);
        c0 = _mm_crc32_u64(c0, a);
        if (dst) {
            memcpy(dst, &a, 8);
            dst += 8;
        }
        p += 8;
        n -= 8;
    }
    while (n--) {
        if (dst) *dst++ = *p;
        c0 = _mm_crc32_u8((uint32_t)c0, *p++);
    }
    return (uint32_t)c0;
}
#endif

#if defined(__x86_64__)
#include <immintrin.h>

/* The folding constants for one distance in a lane: x^(D+63) mod P low, x^(D-1) mod P high. */
static inline __m128i fold_k(int distance)
{
    return _mm_set_epi64x((long long)k_fold[distance][1], (long long)k_fold[distance][0]);
}

/* Folds four 256-bit accumulators (the last 128 bytes folded, in order) into one 128-bit lane
 * and returns its CRC from zero: the CRC state of everything folded. */
__attribute__((target("avx2,vpclmulqdq,pclmul,sse4.2"))) static uint32_t fold_finish(__m256i a[4])
{
    const __m256i k256 = _mm256_broadcastsi128_si256(fold_k(K256));
    for (int i = 1; i < 4; i++) {
        __m256i lo = _mm256_clmulepi64_epi128(a[i - 1], k256, 0x00);
        __m256i hi = _mm256_clmulepi64_epi128(a[i - 1], k256, 0x11);
        a[i] = _mm256_xor_si256(a[i], _mm256_xor_si256(lo, hi));
    }
    const __m128i k128 = fold_k(K128);
    __m128i first = _mm256_castsi256_si128(a[3]), last = _mm256_extracti128_si256(a[3], 1);
    __m128i x = _mm_xor_si128(last, _mm_xor_si128(_mm_clmulepi64_si128(first, k128, 0x00),
                                                  _mm_clmulepi64_si128(first, k128, 0x11)));
    uint64_t crc = _mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(x));
    return (uint32_t)_mm_crc32_u64(crc, (uint64_t)_mm_extract_epi64(x, 1));
}

/* One fold step: lane a moved on by the distance in k, and the next data d XORed on; and a store
 * of d to the copy's destination, streamed or not (see SL_CRC_STREAM_BYTES). */
__attribute__((target("avx2,vpclmulqdq"))) static inline __m256i fold256(__m256i a, __m256i k,
                                                                         __m256i d)
{
    return _mm256_xor_si256(_mm256_xor_si256(_mm256_clmulepi64_epi128(a, k, 0x00),
                                             _mm256_clmulepi64_epi128(a, k, 0x11)),
                            d);
}

__attribute__((target("avx2"))) static inline void put256(uint8_t *dst, __m256i d, int stream)
{
    if (stream)
        _mm256_stream_si256((__m256i *)dst, d);
    else
        _mm256_storeu_si256((__m256i *)dst, d);
}

/* Asks for the destination's lines PREFETCH_DST bytes ahead of the copy, for writing, as the
 * fold's loads already have the source's in flight: without it the copying fold waits for each
 * destination line to be read in (`sluice bench transport --quick` prints its speed beside
 * memcpy's; bench/transport.md has the figures). always_inline: as a plain inline function GCC 12
 * took it for one without side effects and dropped its calls. */
#define PREFETCH_DST 1024
__attribute__((target("prfchw"), always_inline)) static inline void prefetch_dst(uint8_t *dst,
                                                                                 int stream)
{
    if (!stream) {
        _mm_prefetch((const char *)dst + PREFETCH_DST, _MM_HINT_ET0);
        _mm_prefetch((const char *)dst + PREFETCH_DST + 64, _MM_HINT_ET0);
    }
}

/* Folding with carry-less multiplication, 128 bytes per round in four 256-bit accumulators (twice
 * the crc32 instruction's 8 bytes per cycle where VPCLMULQDQ issues once per cycle). A 128-bit
 * lane holds 16 message bytes; read reflected, its low 64 bits are the polynomial's high-degree
 * half A0 (times x^64) and its high 64 bits the low half A1. Moving a lane D bits further down
 * the message multiplies it by x^D, which is congruent to
 *   clmul(A0, x^(D+63) mod P) ^ clmul(A1, x^(D-1) mod P)
 * (a reflected product comes out one bit off, hence 63 and -1); the result still fits in 128
 * bits, so it is XORed onto the lane D bits later. At the end one lane remains whose CRC (from
 * zero) is the CRC of everything folded into it: two crc32 instructions. The starting CRC is
 * XORed into the first four bytes, which is what the crc32 instruction does with it. Returns the
 * CRC state after n bytes, n a multiple of 128 and >= 128; with dst the bytes are copied too, and
 * with `stream` by non-temporal stores (dst then 64-byte aligned, see SL_CRC_STREAM_BYTES). */
__attribute__((target("avx2,vpclmulqdq,pclmul,sse4.2,prfchw"))) static uint32_t
crc_clmul(uint32_t c, uint8_t *dst, const uint8_t *p, size_t n, int stream)
{
    const __m256i k1024 = _mm256_broadcastsi128_si256(fold_k(K1024));
    /* The accumulators are named variables, not an array: GCC 12 kept an array (which
     * fold_finish takes) on the stack and stored it there after every fold, which took a third of
     * the copying fold's speed (`sluice bench transport --quick`, the CRC32C line). */
    __m256i a0 = _mm256_loadu_si256((const __m256i *)p);
    __m256i a1 = _mm256_loadu_si256((const __m256i *)(p + 32));
    __m256i a2 = _mm256_loadu_si256((const __m256i *)(p + 64));
    __m256i a3 = _mm256_loadu_si256((const __m256i *)(p + 96));
    if (dst) {
        put256(dst, a0, 0), put256(dst + 32, a1, 0), put256(dst + 64, a2, 0);
        put256(dst + 96, a3, 0);
        dst += 128;
    }
    a0 = _mm256_xor_si256(a0, _mm256_set_epi64x(0, 0, 0, (long long)c));
    for (p += 128, n -= 128; n; p += 128, n -= 128) {
        __m256i d0 = _mm256_loadu_si256((const __m256i *)p);
        __m256i d1 = _mm256_loadu_si256((const __m256i *)(p + 32));
        __m256i d2 = _mm256_loadu_si256((const __m256i *)(p + 64));
        __m256i d3 = _mm256_loadu_si256((const __m256i *)(p + 96));
        if (dst) {
            put256(dst, d0, stream), put256(dst + 32, d1, stream), put256(dst + 64, d2, stream);
            put256(dst + 96, d3, stream);
            prefetch_dst(dst, stream);
            dst += 128;
        }
        a0 = fold256(a0, k1024, d0), a1 = fold256(a1, k1024, d1);
        a2 = fold256(a2, k1024, d2), a3 = fold256(a3, k1024, d3);
    }
    if (stream) _mm_sfence(); /* the streamed stores are seen before whoever takes dst next */
    __m256i a[4] = {a0, a1, a2, a3};
    return fold_finish(a);
}

__attribute__((target("avx512f,vpclmulqdq"))) static inline __m512i fold512(__m512i a, __m512i k,
                                                                            __m512i d)
{
    return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(a, k, 0x00),
                                     _mm512_clmulepi64_epi128(a, k, 0x11), d,
                                     0x96); /* lo ^ hi ^ d */
}

__attribute__((target("avx512f"))) static inline void put512(uint8_t *dst, __m512i d, int stream)
{
    if (stream)
        _mm512_stream_si512((void *)dst, d);
    else
        _mm512_storeu_si512(dst, d);
}

/* The same with two 512-bit accumulators, 128 bytes per round: four lanes per VPCLMULQDQ instead
 * of two. Two accumulators measured faster than four, which had looked the natural choice
 * (`sluice bench transport --quick`, against SLUICE_CRC=avx2-vpclmulqdq for the 256-bit fold;
 * figures in bench/transport.md). At the end the first accumulator is folded into the second,
 * and its two halves handed to fold_finish as the last 64 of 128 bytes (folding zeros adds
 * nothing). n a multiple of 128 and >= 128. */
__attribute__((target("avx512f,avx2,vpclmulqdq,pclmul,sse4.2,prfchw"))) static uint32_t
crc_clmul512(uint32_t c, uint8_t *dst, const uint8_t *p, size_t n, int stream)
{
    const __m512i k1024 = _mm512_broadcast_i32x4(fold_k(K1024));
    __m512i a0 = _mm512_loadu_si512(p), a1 = _mm512_loadu_si512(p + 64);
    if (dst) {
        put512(dst, a0, 0), put512(dst + 64, a1, 0);
        dst += 128;
    }
    a0 = _mm512_xor_si512(a0, _mm512_set_epi64(0, 0, 0, 0, 0, 0, 0, (long long)c));
    for (p += 128, n -= 128; n; p += 128, n -= 128) {
        __m512i d0 = _mm512_loadu_si512(p), d1 = _mm512_loadu_si512(p + 64);
        if (dst) {
            put512(dst, d0, stream), put512(dst + 64, d1, stream);
            prefetch_dst(dst, stream);
            dst += 128;
        }
        a0 = fold512(a0, k1024, d0), a1 = fold512(a1, k1024, d1);
    }
    if (stream) _mm_sfence();
    a1 = fold512(a0, _mm512_broadcast_i32x4(fold_k(K512)), a1);
    __m256i last[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm512_castsi512_si256(a1),
                       _mm512_extracti64x4_epi64(a1, 1)};
    return fold_finish(last);
}

/* Copies of SL_CRC_STREAM_BYTES or more store past the caches (non-temporal stores, whole lines,
 * without first reading each destination line in). Below it the folds prefetch the destination
 * for writing instead, and the copy stays in the cache for whoever reads it next (the kernel, on
 * the sending side). Leaving the copy in the cache measured faster at 1 MiB and streaming faster
 * at 16 MiB, so the threshold lies between the two sizes measured (`sluice bench transport`, its
 * ipc and tcp 1 MiB and 16 MiB rows; the runs are in bench/transport.md). */

/* The hardware paths: folding for the bulk where the processor has it, crc32 streams otherwise
 * and for the head and the tail. The head runs up to a 64-byte boundary of the destination when
 * copying, else of the source, so that the fold's stores (or loads) never straddle two cache
 * lines: libzmq's message buffers lie 8 bytes past a 16-byte boundary, and straddling loads and
 * stores cost the fold about a fifth of its speed (measured by a standalone loop; the figures are
 * in bench/transport.md). */
static uint32_t crc_fast(uint32_t c, uint8_t *dst, const uint8_t *p, size_t n)
{
    int wide = crc_level >= CRC_CLMUL512 && n >= 1024;
    if (!wide && !(crc_level >= CRC_CLMUL256 && n >= 512)) return crc_hw(c, dst, p, n);
    size_t head = -(uintptr_t)(dst ? dst : p) & 63;
    c = crc_hw(c, dst, p, head);
    p += head;
    n -= head;
    if (dst) dst += head;
    size_t bulk = n & ~(size_t)127; /* both folds take multiples of 128 bytes */
    int stream = dst && n >= SL_CRC_STREAM_BYTES;
    c = wide ? crc_clmul512(c, dst, p, bulk, stream) : crc_clmul(c, dst, p, bulk, stream);
    return crc_hw(c, dst ? dst + bulk : NULL, p + bulk, n - bulk);
}
#endif

uint32_t sl_crc32c(uint32_t crc, const void *data, size_t len)
{
    pthread_once(&crc_once, crc_init);
    uint32_t c = ~crc;
#if defined(__x86_64__)
    if (crc_level >= CRC_SSE42) return ~crc_fast(c, NULL, data, len);
#endif
    return ~crc_table(c, data, len);
}

uint32_t sl_crc32c_copy(uint32_t crc, void *dst, const void *src, size_t len)
{
    pthread_once(&crc_once, crc_init);
    uint32_t c = ~crc;
#if defined(__x86_64__)
    if (crc_level >= CRC_SSE42) return ~crc_fast(c, dst, src, len);
#endif
    if (len) memcpy(dst, src, len);
    return ~crc_table(c, dst, len);
}
