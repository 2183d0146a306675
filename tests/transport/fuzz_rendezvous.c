/* libFuzzer target for the rendezvous messages: any bytes, read as a registration by rank 0 or as
 * rank 0's answer by another rank, must be taken or refused, never crash, read out of bounds or
 * leak, and what is taken must be what the format allows. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transport/transport.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int endpoint_ok(const char *ep)
{
    size_t n = strlen(ep);
    if (!n || n >= SL_RDV_ENDPOINT_BYTES) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)ep[i] < 0x20 || ep[i] == '"' || ep[i] == '\\') return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly `size` bytes, so ASan catches any read past the end. */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    sl_rdv_directory d;
    if (sl_rdv_directory_init(&d, 3, 1234567890123456789ull, "job-42") != SL_OK) abort();
    memcpy(d.endpoints[2], "tcp://host2:5002", 17);
    int rank, ours;
    char ep[SL_RDV_ENDPOINT_BYTES];
    if (sl_rdv_register_decode(buf, size, &d, &rank, ep, &ours) == SL_OK) {
        if (rank != 1 || !endpoint_ok(ep) || !ours) abort();
    } else if (rank != -1 || ep[0]) {
        abort();
    }
    sl_rdv_directory_free(&d);
    if (sl_rdv_directory_init(&d, 3, 1234567890123456789ull, "job-42") != SL_OK) abort();
    if (sl_rdv_directory_decode(buf, size, &d) == SL_OK) {
        for (int i = 0; i < 3; i++)
            if (!endpoint_ok(d.endpoints[i])) abort();
        if (!endpoint_ok(d.report)) abort();
        /* What was taken encodes again and reads back the same. */
        char *again = NULL;
        if (sl_rdv_directory_encode(&d, &again) != SL_OK) abort();
        sl_rdv_directory e;
        if (sl_rdv_directory_init(&e, 3, d.config_hash, d.job) != SL_OK ||
            sl_rdv_directory_decode(again, strlen(again), &e) != SL_OK || e.run_id != d.run_id ||
            strcmp(e.report, d.report))
            abort();
        free(again);
        sl_rdv_directory_free(&e);
    }
    sl_rdv_directory_free(&d);
    free(buf);
    return 0;
}
