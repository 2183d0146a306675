/* The rendezvous messages: a rank's registration, rank 0's directory and its refusal (see
 * transport.h for the format). runtime/launch moves them over its sockets; everything that reads
 * them, from whatever connected to rank 0's port, is checked here before it is used. Free of
 * libzmq. */
#include "transport/transport.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

/* Printable text the messages carry as it is: non-empty, shorter than cap, and without the
 * characters JSON would have to escape. */
static int text_ok(const char *s, size_t cap)
{
    if (!s || !*s || strlen(s) >= cap) return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == '"' || *p == '\\' || *p == 0x7f) return 0;
    return 1;
}

static int endpoint_ok(const char *ep)
{
    return text_ok(ep, SL_RDV_ENDPOINT_BYTES);
}

/* A job id may be empty (no launcher job); otherwise printable text. */
static int job_ok(const char *job)
{
    return job && (!*job || text_ok(job, SL_RDV_JOB_BYTES));
}

int sl_rdv_directory_init(sl_rdv_directory *d, int world, uint64_t config_hash, const char *job)
{
    memset(d, 0, sizeof *d);
    if (world < 1) return sl_fail(SL_EINVAL, "a directory of %d ranks", world);
    if (!job_ok(job ? job : ""))
        return sl_fail(SL_EINVAL,
                       "launcher job id '%.60s' is longer than %d bytes or holds quotes, "
                       "backslashes or control characters",
                       job, SL_RDV_JOB_BYTES - 1);
    d->world = world;
    d->config_hash = config_hash;
    snprintf(d->job, sizeof d->job, "%s", job ? job : "");
    d->endpoints = sl_alloc((size_t)world * sizeof *d->endpoints);
    return d->endpoints ? SL_OK : SL_ENOMEM;
}

void sl_rdv_directory_free(sl_rdv_directory *d)
{
    if (!d) return;
    free(d->endpoints);
    d->endpoints = NULL;
}

/* ------------------------------------------------------------------------------------------------
 * The envelope every message shares: magic, version, kind */

static cJSON *envelope(const char *kind)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "magic", SL_RDV_MAGIC);
    cJSON_AddNumberToObject(o, "version", SL_RDV_VERSION);
    cJSON_AddStringToObject(o, "kind", kind);
    return o;
}

static void add_u64(cJSON *o, const char *key, uint64_t v)
{
    char s[32];
    snprintf(s, sizeof s, "%llu", (unsigned long long)v);
    cJSON_AddStringToObject(o, key, s);
}

/* A 64-bit value as the messages write it: decimal digits only, within 64 bits. */
static int parse_u64(const char *s, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9') return 0;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno == ERANGE) return 0;
    *out = v;
    return 1;
}

static const char *str_of(const cJSON *j, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItem(j, key));
}

/* Parses text of at most `max` bytes and checks magic, version and kind: NULL with SL_EPROTOCOL
 * saying what it is instead. A refusal when `kind` is the directory is SL_EPEER with rank 0's
 * message. */
static cJSON *open_message(const void *buf, size_t len, size_t max, const char *kind,
                           const char *what, int *status)
{
    if (len > max) {
        *status = sl_fail(SL_EPROTOCOL, "%s of %zu bytes (at most %zu): not a sluice rank's", what,
                          len, max);
        return NULL;
    }
    cJSON *j = cJSON_ParseWithLength(buf, len);
    const char *magic = str_of(j, "magic"), *k = str_of(j, "kind");
    double version = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "version"));
    int st = SL_OK;
    if (!j || !magic || strcmp(magic, SL_RDV_MAGIC))
        st = sl_fail(SL_EPROTOCOL, "%s without sluice's magic \"%s\": not a sluice rank's", what,
                     SL_RDV_MAGIC);
    else if (version != SL_RDV_VERSION)
        st = sl_fail(SL_EPROTOCOL,
                     "%s of rendezvous version %g, this build speaks %d: run the same sluice on "
                     "every host",
                     what, version, SL_RDV_VERSION);
    else if (k && !strcmp(k, "refused") && !strcmp(kind, "directory"))
        st = sl_fail(SL_EPEER, "rank 0 refused this rank: %.900s",
                     str_of(j, "message") ? str_of(j, "message") : "(no reason given)");
    else if (!k || strcmp(k, kind))
        st = sl_fail(SL_EPROTOCOL, "%s of kind '%.40s', expected '%s'", what, k ? k : "(none)",
                     kind);
    *status = st;
    if (st != SL_OK) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/* ------------------------------------------------------------------------------------------------
 * Registration: rank r -> rank 0 */

int sl_rdv_register_encode(const sl_rdv_directory *d, int rank, const char *endpoint, char *out,
                           size_t cap, size_t *len)
{
    if (d->world < 2 || rank < 1 || rank >= d->world)
        return sl_fail(SL_EINVAL, "rank %d of %d does not register (ranks 1..world-1 do)", rank,
                       d->world);
    if (!endpoint_ok(endpoint))
        return sl_fail(SL_EINVAL,
                       "rank %d cannot register endpoint '%.60s': it must be 1 to %d bytes without "
                       "quotes, backslashes or control characters",
                       rank, endpoint ? endpoint : "(none)", SL_RDV_ENDPOINT_BYTES - 1);
    cJSON *o = envelope("register");
    cJSON_AddNumberToObject(o, "rank", rank);
    cJSON_AddNumberToObject(o, "world", d->world);
    add_u64(o, "config_hash", d->config_hash);
    cJSON_AddStringToObject(o, "job", d->job);
    cJSON_AddStringToObject(o, "endpoint", endpoint);
    int ok = cJSON_PrintPreallocated(o, out, (int)SL_MIN(cap, (size_t)1 << 30), 0);
    cJSON_Delete(o);
    size_t n = ok ? strlen(out) : cap;
    if (!ok || n > SL_RDV_REGISTER_MAX)
        return sl_fail(SL_ERANGE, "a registration does not fit in %zu bytes (at most %d)", cap,
                       SL_RDV_REGISTER_MAX);
    if (len) *len = n;
    return SL_OK;
}

int sl_rdv_register_decode(const void *buf, size_t len, const sl_rdv_directory *d, int *rank,
                           char endpoint[SL_RDV_ENDPOINT_BYTES], int *of_this_run)
{
    *rank = -1;
    *of_this_run = 0;
    endpoint[0] = '\0';
    int st = SL_OK;
    cJSON *j = open_message(buf, len, SL_RDV_REGISTER_MAX, "register", "a registration", &st);
    if (!j) return st;
    const cJSON *jr = cJSON_GetObjectItem(j, "rank"), *jw = cJSON_GetObjectItem(j, "world");
    int r = cJSON_IsNumber(jr) ? sl_to_int(jr->valuedouble, -1) : -1;
    int w = cJSON_IsNumber(jw) ? sl_to_int(jw->valuedouble, -1) : -1;
    const char *ep = str_of(j, "endpoint"), *job = str_of(j, "job");
    uint64_t hash = 0;
    int hash_ok = parse_u64(str_of(j, "config_hash"), &hash);
    if (!job || strcmp(job, d->job))
        st = sl_fail(SL_EPROTOCOL,
                     "a registration of launcher job '%.60s' (this run is job '%s'): a rank of "
                     "another run, or another program, uses the same MASTER_PORT",
                     job ? job : "(none)", d->job);
    else if (!hash_ok || hash != d->config_hash)
        st = sl_fail(SL_EPROTOCOL,
                     "rank %d registered with config hash %.24s, this run's is %llu: every rank "
                     "must run the same config (and --set overrides)",
                     r, str_of(j, "config_hash") ? str_of(j, "config_hash") : "(none)",
                     (unsigned long long)d->config_hash);
    else if (w != d->world)
        st = sl_fail(SL_EPROTOCOL,
                     "rank %d registered with a world of %d ranks, this run has %d: the launcher "
                     "must start one rank per pipeline stage (pipeline.stages = %d)",
                     r, w, d->world, d->world);
    else if (r < 1 || r >= d->world)
        st = sl_fail(SL_EPROTOCOL, "a rank registered as rank %d of %d (ranks 1..%d register)", r,
                     w, d->world - 1);
    else if (d->endpoints[r][0])
        st = sl_fail(SL_EPROTOCOL,
                     "rank %d registered twice (first from %s): did the launcher start it twice?",
                     r, d->endpoints[r]);
    else if (!endpoint_ok(ep))
        st = sl_fail(SL_EPROTOCOL,
                     "rank %d registered endpoint '%.60s', which is missing, empty, longer than %d "
                     "bytes or holds quotes, backslashes or control characters",
                     r, ep ? ep : "", SL_RDV_ENDPOINT_BYTES - 1);
    /* Past the job check the sender is a sluice rank of this launch that cannot join: waiting for
     * it longer helps no one. */
    *of_this_run = job && !strcmp(job, d->job);
    if (st == SL_OK) {
        *rank = r;
        memcpy(endpoint, ep, strlen(ep) + 1);
    }
    cJSON_Delete(j);
    return st;
}

/* ------------------------------------------------------------------------------------------------
 * Directory and refusal: rank 0 -> every other rank */

static int print_message(cJSON *o, char **out, const char *what)
{
    *out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return *out ? SL_OK : sl_fail(SL_ENOMEM, "no memory for the rendezvous %s", what);
}

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
    cJSON *o = envelope("directory");
    cJSON_AddNumberToObject(o, "world", d->world);
    add_u64(o, "config_hash", d->config_hash);
    cJSON_AddStringToObject(o, "job", d->job);
    add_u64(o, "run_id", d->run_id);
    cJSON *eps = cJSON_AddArrayToObject(o, "endpoints");
    for (int i = 0; i < d->world; i++)
        cJSON_AddItemToArray(eps, cJSON_CreateString(d->endpoints[i]));
    cJSON_AddStringToObject(o, "report", d->report);
    return print_message(o, out, "directory");
}

int sl_rdv_refusal_encode(const char *message, char **out)
{
    cJSON *o = envelope("refused");
    char m[1024];
    snprintf(m, sizeof m, "%s", message ? message : "");
    cJSON_AddStringToObject(o, "message", m);
    return print_message(o, out, "refusal");
}

int sl_rdv_directory_decode(const void *buf, size_t len, sl_rdv_directory *d)
{
    int st = SL_OK;
    cJSON *j =
        open_message(buf, len, SL_RDV_DIRECTORY_MAX(d->world), "directory", "a directory", &st);
    if (!j) return st;
    const cJSON *eps = cJSON_GetObjectItem(j, "endpoints"), *jw = cJSON_GetObjectItem(j, "world");
    const char *report = str_of(j, "report"), *job = str_of(j, "job");
    uint64_t hash = 0, id = 0;
    if (!job || strcmp(job, d->job))
        st = sl_fail(SL_EPROTOCOL, "a directory of launcher job '%.60s' (this rank is of '%s')",
                     job ? job : "(none)", d->job);
    else if (!parse_u64(str_of(j, "config_hash"), &hash) || hash != d->config_hash)
        st = sl_fail(SL_EPROTOCOL,
                     "a directory of config hash %.24s (this rank's is %llu): every rank must run "
                     "the same config",
                     str_of(j, "config_hash") ? str_of(j, "config_hash") : "(none)",
                     (unsigned long long)d->config_hash);
    else if (!cJSON_IsNumber(jw) || jw->valuedouble != d->world || !cJSON_IsArray(eps) ||
             cJSON_GetArraySize(eps) != d->world)
        st = sl_fail(SL_EPROTOCOL, "not a directory of %d ranks with %d endpoints", d->world,
                     d->world);
    for (int i = 0; st == SL_OK && i < d->world; i++) {
        const char *ep = cJSON_GetStringValue(cJSON_GetArrayItem(eps, i));
        if (!endpoint_ok(ep))
            st = sl_fail(SL_EPROTOCOL, "the endpoint of rank %d is not an endpoint string", i);
        else
            memcpy(d->endpoints[i], ep, strlen(ep) + 1);
    }
    if (st == SL_OK && !endpoint_ok(report))
        st = sl_fail(SL_EPROTOCOL, "the report endpoint '%.60s' is not an endpoint string",
                     report ? report : "(none)");
    if (st == SL_OK && !parse_u64(str_of(j, "run_id"), &id))
        st = sl_fail(SL_EPROTOCOL, "run id '%.40s' is not a decimal number within 64 bits",
                     str_of(j, "run_id") ? str_of(j, "run_id") : "(none)");
    if (st == SL_OK) {
        memcpy(d->report, report, strlen(report) + 1);
        d->run_id = id;
    }
    cJSON_Delete(j);
    return st;
}
