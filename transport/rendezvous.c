/* The rendezvous messages: a rank's registration and rank 0's directory (see transport.h for the
 * format). runtime/launch moves them over its sockets; everything that reads them, from whatever
 * connected to rank 0's port, is checked here before it is used. Free of libzmq. */
#include "transport/transport.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

int sl_rdv_directory_init(sl_rdv_directory *d, int world)
{
    memset(d, 0, sizeof *d);
    if (world < 1) return sl_fail(SL_EINVAL, "a directory of %d ranks", world);
    d->world = world;
    d->endpoints = sl_alloc((size_t)world * sizeof *d->endpoints);
    return d->endpoints ? SL_OK : SL_ENOMEM;
}

void sl_rdv_directory_free(sl_rdv_directory *d)
{
    if (!d) return;
    free(d->endpoints);
    d->endpoints = NULL;
}

/* An endpoint as the messages carry it: non-empty, shorter than SL_RDV_ENDPOINT_BYTES, and
 * without the characters JSON would have to escape (the registration is written as it is). */
static int endpoint_ok(const char *ep)
{
    if (!ep || !*ep || strlen(ep) >= SL_RDV_ENDPOINT_BYTES) return 0;
    for (const unsigned char *p = (const unsigned char *)ep; *p; p++)
        if (*p < 0x20 || *p == '"' || *p == '\\') return 0;
    return 1;
}

/* ------------------------------------------------------------------------------------------------
 * Registration: rank r -> rank 0 */

int sl_rdv_register_encode(int rank, int world, const char *endpoint, char *out, size_t cap,
                           size_t *len)
{
    if (world < 2 || rank < 1 || rank >= world)
        return sl_fail(SL_EINVAL, "rank %d of %d does not register (ranks 1..world-1 do)", rank,
                       world);
    if (!endpoint_ok(endpoint))
        return sl_fail(SL_EINVAL,
                       "rank %d cannot register endpoint '%.60s': it must be 1 to %d bytes without "
                       "quotes, backslashes or control characters",
                       rank, endpoint ? endpoint : "(none)", SL_RDV_ENDPOINT_BYTES - 1);
    int n = snprintf(out, cap, "{\"rank\": %d, \"world\": %d, \"endpoint\": \"%s\"}", rank, world,
                     endpoint);
    if (n < 0 || (size_t)n >= cap)
        return sl_fail(SL_ERANGE, "a registration of %d bytes does not fit in the %zu given", n,
                       cap);
    if (len) *len = (size_t)n;
    return SL_OK;
}

int sl_rdv_register_decode(const void *buf, size_t len, const sl_rdv_directory *d, int *rank,
                           char endpoint[SL_RDV_ENDPOINT_BYTES])
{
    *rank = -1;
    endpoint[0] = '\0';
    if (len > SL_RDV_REGISTER_MAX)
        return sl_fail(SL_EPROTOCOL,
                       "a registration of %zu bytes (at most %d): is another program "
                       "using the same MASTER_PORT?",
                       len, SL_RDV_REGISTER_MAX);
    cJSON *j = cJSON_ParseWithLength(buf, len);
    int r = sl_to_int(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "rank")), -1);
    int w = sl_to_int(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "world")), -1);
    const char *ep = cJSON_GetStringValue(cJSON_GetObjectItem(j, "endpoint"));
    int st = SL_OK;
    if (!ep || w != d->world || r < 1 || r >= d->world || d->endpoints[r][0])
        st = sl_fail(SL_EPROTOCOL,
                     "a rank registered as %d of %d (this run has %d ranks, each once): is another "
                     "run using the same MASTER_PORT?",
                     r, w, d->world);
    else if (!endpoint_ok(ep))
        st = sl_fail(SL_EPROTOCOL,
                     "rank %d registered endpoint '%.60s', which is empty, longer than %d bytes "
                     "or holds quotes, backslashes or control characters",
                     r, ep, SL_RDV_ENDPOINT_BYTES - 1);
    if (st == SL_OK) {
        *rank = r;
        memcpy(endpoint, ep, strlen(ep) + 1);
    }
    cJSON_Delete(j);
    return st;
}

/* ------------------------------------------------------------------------------------------------
 * Directory: rank 0 -> every other rank */

int sl_rdv_directory_encode(const sl_rdv_directory *d, char **out)
{
    *out = NULL;
    /* Refused here what every other rank would refuse, so that the failure is rank 0's. */
    for (int i = 0; i < d->world; i++)
        if (!endpoint_ok(d->endpoints[i]))
            return sl_fail(SL_EINVAL,
                           "the directory cannot carry rank %d's endpoint '%.60s': it must be 1 to "
                           "%d bytes without quotes, backslashes or control characters",
                           i, d->endpoints[i], SL_RDV_ENDPOINT_BYTES - 1);
    if (!endpoint_ok(d->report))
        return sl_fail(SL_EINVAL, "the directory cannot carry report endpoint '%.60s'", d->report);
    cJSON *o = cJSON_CreateObject();
    cJSON *eps = cJSON_AddArrayToObject(o, "endpoints");
    for (int i = 0; i < d->world; i++)
        cJSON_AddItemToArray(eps, cJSON_CreateString(d->endpoints[i]));
    cJSON_AddStringToObject(o, "report", d->report);
    char id[32];
    snprintf(id, sizeof id, "%llu", (unsigned long long)d->run_id);
    cJSON_AddStringToObject(o, "run_id", id);
    *out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!*out)
        return sl_fail(SL_ENOMEM, "no memory for the rendezvous directory of %d ranks", d->world);
    return SL_OK;
}

/* A run id as the directory writes it: decimal digits only, within 64 bits. */
static int parse_run_id(const char *s, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9') return 0;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno == ERANGE) return 0;
    *out = v;
    return 1;
}

int sl_rdv_directory_decode(const void *buf, size_t len, sl_rdv_directory *d)
{
    cJSON *j = cJSON_ParseWithLength(buf, len);
    const cJSON *eps = cJSON_GetObjectItem(j, "endpoints");
    const char *report = cJSON_GetStringValue(cJSON_GetObjectItem(j, "report"));
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(j, "run_id"));
    int st = SL_OK;
    if (!cJSON_IsArray(eps) || cJSON_GetArraySize(eps) != d->world || !report || !id)
        st = sl_fail(SL_EPROTOCOL,
                     "not a directory: expected a JSON object with %d endpoints, a report "
                     "endpoint and a run id",
                     d->world);
    for (int i = 0; st == SL_OK && i < d->world; i++) {
        const char *ep = cJSON_GetStringValue(cJSON_GetArrayItem(eps, i));
        if (!endpoint_ok(ep))
            st = sl_fail(SL_EPROTOCOL, "the endpoint of rank %d is not an endpoint string", i);
        else
            memcpy(d->endpoints[i], ep, strlen(ep) + 1);
    }
    if (st == SL_OK && !endpoint_ok(report))
        st = sl_fail(SL_EPROTOCOL, "the report endpoint '%.60s' is not an endpoint string", report);
    if (st == SL_OK && !parse_run_id(id, &d->run_id))
        st = sl_fail(SL_EPROTOCOL, "run id '%.40s' is not a decimal number within 64 bits", id);
    if (st == SL_OK) memcpy(d->report, report, strlen(report) + 1);
    cJSON_Delete(j);
    return st;
}
