/* The rendezvous messages: each kind round-trips, and each has malformed twins that are refused
 * with a message saying what was wrong; a registration's refusal also says whether the sender is
 * a rank of this launch (the rendezvous then fails at once) or a stranger (ignored). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/transport.h"

#define HASH 1234567890123456789ull
#define JOB  "job-42"

/* A directory of three ranks in which rank 2 has registered. */
static void directory_of_three(sl_rdv_directory *d)
{
    cr_assert_eq(sl_rdv_directory_init(d, 3, HASH, JOB), SL_OK);
    snprintf(d->endpoints[0], sizeof d->endpoints[0], "tcp://host0:5000");
    snprintf(d->endpoints[2], sizeof d->endpoints[2], "tcp://host2:5002");
}

/* ------------------------------------------------------------------------------------------------
 * Registration */

Test(rendezvous, registration_round_trip)
{
    sl_rdv_directory d;
    directory_of_three(&d);
    char buf[SL_RDV_REGISTER_MAX + 1];
    size_t n = 0;
    cr_assert_eq(sl_rdv_register_encode(&d, 1, "tcp://host1:5001", buf, sizeof buf, &n), SL_OK,
                 "%s", sl_last_error());
    const char *want = "{\"magic\":\"sluice-rendezvous\",\"version\":2,\"kind\":\"register\","
                       "\"rank\":1,\"world\":3,\"config_hash\":\"1234567890123456789\","
                       "\"job\":\"job-42\",\"endpoint\":\"tcp://host1:5001\"}";
    cr_assert_str_eq(buf, want);
    cr_assert_eq(n, strlen(want));
    int rank = 0, ours = 0;
    char ep[SL_RDV_ENDPOINT_BYTES];
    cr_assert_eq(sl_rdv_register_decode(buf, n, &d, &rank, ep, &ours), SL_OK, "%s",
                 sl_last_error());
    cr_assert_eq(rank, 1);
    cr_assert_str_eq(ep, "tcp://host1:5001");
    sl_rdv_directory_free(&d);
    sl_rdv_directory_free(&d); /* twice is fine */
}

Test(rendezvous, registration_encode_refusals)
{
    sl_rdv_directory d;
    directory_of_three(&d);
    char buf[SL_RDV_REGISTER_MAX + 1], small[16], longer[400];
    memset(longer, 'a', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    cr_assert_eq(sl_rdv_register_encode(&d, 0, "tcp://h:1", buf, sizeof buf, NULL), SL_EINVAL);
    cr_assert_eq(sl_rdv_register_encode(&d, 3, "tcp://h:1", buf, sizeof buf, NULL), SL_EINVAL);
    cr_assert_eq(sl_rdv_register_encode(&d, 1, "", buf, sizeof buf, NULL), SL_EINVAL);
    cr_assert_eq(sl_rdv_register_encode(&d, 1, NULL, buf, sizeof buf, NULL), SL_EINVAL);
    cr_assert_eq(sl_rdv_register_encode(&d, 1, longer, buf, sizeof buf, NULL), SL_EINVAL);
    cr_assert_eq(sl_rdv_register_encode(&d, 1, "tcp://\"h\":1", buf, sizeof buf, NULL), SL_EINVAL);
    cr_assert(strstr(sl_last_error(), "quotes"), "%s", sl_last_error());
    cr_assert_eq(sl_rdv_register_encode(&d, 1, "tcp://h:1", small, sizeof small, NULL), SL_ERANGE);
    sl_rdv_directory_free(&d);
    cr_assert_eq(sl_rdv_directory_init(&d, 3, HASH, "a\"b"), SL_EINVAL);
    cr_assert_eq(sl_rdv_directory_init(&d, 0, HASH, JOB), SL_EINVAL);
}

/* A registration's malformed twin: refused by rank 0 with `needle` in the message; `ours` says
 * whether the sender counts as a rank of this launch. */
static void bad_registration(const char *text, size_t len, const char *needle, int ours)
{
    sl_rdv_directory d;
    directory_of_three(&d);
    int rank = 7, of_run = 5;
    char ep[SL_RDV_ENDPOINT_BYTES] = "x";
    int st = sl_rdv_register_decode(text, len, &d, &rank, ep, &of_run);
    cr_assert_eq(st, SL_EPROTOCOL, "'%.80s' gave %d: %s", text, st, sl_last_error());
    cr_assert(strstr(sl_last_error(), needle), "'%s' lacks '%s'", sl_last_error(), needle);
    cr_assert_eq(rank, -1);
    cr_assert_str_eq(ep, "");
    cr_assert_eq(of_run, ours, "'%.80s': of this run %d, expected %d", text, of_run, ours);
    sl_rdv_directory_free(&d);
}

#define ENV    "\"magic\":\"sluice-rendezvous\",\"version\":2,\"kind\":\"register\","
#define OURS   "\"config_hash\":\"1234567890123456789\",\"job\":\"job-42\","
#define REG(x) "{" ENV OURS x "}"
#define BAD_REGISTRATION(name, text, needle, ours)                                                 \
    Test(rendezvous, registration_##name)                                                          \
    {                                                                                              \
        bad_registration(text, strlen(text), needle, ours);                                        \
    }

BAD_REGISTRATION(not_json, "HELLO sluice", "without sluice's magic", 0)
BAD_REGISTRATION(old_format, "{\"rank\": 1, \"world\": 3, \"endpoint\": \"tcp://h:1\"}",
                 "without sluice's magic", 0)
BAD_REGISTRATION(other_magic,
                 "{\"magic\":\"sluice\",\"version\":2,\"kind\":\"register\",\"rank\":1}",
                 "without sluice's magic", 0)
BAD_REGISTRATION(other_version,
                 "{\"magic\":\"sluice-rendezvous\",\"version\":3,\"kind\":\"register\"}",
                 "rendezvous version 3", 0)
BAD_REGISTRATION(other_kind,
                 "{\"magic\":\"sluice-rendezvous\",\"version\":2,\"kind\":\"directory\"}",
                 "kind 'directory'", 0)
BAD_REGISTRATION(truncated, "{" ENV OURS "\"rank\":1,\"world\":3,\"endpoint\":\"tcp://h",
                 "without sluice's magic", 0)
BAD_REGISTRATION(other_job,
                 "{" ENV "\"config_hash\":\"1234567890123456789\",\"job\":\"job-7\",\"rank\":1,"
                 "\"world\":3,\"endpoint\":\"tcp://h:1\"}",
                 "launcher job 'job-7'", 0)
BAD_REGISTRATION(no_job,
                 "{" ENV "\"config_hash\":\"1234567890123456789\",\"rank\":1,"
                 "\"world\":3,\"endpoint\":\"tcp://h:1\"}",
                 "launcher job '(none)'", 0)
BAD_REGISTRATION(other_config,
                 "{" ENV "\"config_hash\":\"99\",\"job\":\"job-42\",\"rank\":1,"
                 "\"world\":3,\"endpoint\":\"tcp://h:1\"}",
                 "config hash 99", 1)
BAD_REGISTRATION(config_hash_as_number,
                 "{" ENV "\"config_hash\":1234567890123456789,\"job\":\"job-42\",\"rank\":1,"
                 "\"world\":3,\"endpoint\":\"tcp://h:1\"}",
                 "config hash (none)", 1)
BAD_REGISTRATION(other_world, REG("\"rank\":1,\"world\":4,\"endpoint\":\"tcp://h:1\""),
                 "a world of 4 ranks, this run has 3", 1)
BAD_REGISTRATION(rank_zero, REG("\"rank\":0,\"world\":3,\"endpoint\":\"tcp://h:1\""),
                 "as rank 0 of 3", 1)
BAD_REGISTRATION(rank_beyond_world, REG("\"rank\":3,\"world\":3,\"endpoint\":\"tcp://h:1\""),
                 "as rank 3 of 3", 1)
BAD_REGISTRATION(rank_as_text, REG("\"rank\":\"1\",\"world\":3,\"endpoint\":\"tcp://h:1\""),
                 "as rank -1 of 3", 1)
BAD_REGISTRATION(rank_huge, REG("\"rank\":1e300,\"world\":3,\"endpoint\":\"tcp://h:1\""),
                 "as rank -1 of 3", 1)
BAD_REGISTRATION(twice, REG("\"rank\":2,\"world\":3,\"endpoint\":\"tcp://h:1\""),
                 "rank 2 registered twice (first from tcp://host2:5002)", 1)
BAD_REGISTRATION(no_endpoint, REG("\"rank\":1,\"world\":3"), "endpoint ''", 1)
BAD_REGISTRATION(endpoint_not_text, REG("\"rank\":1,\"world\":3,\"endpoint\":5"), "endpoint ''", 1)
BAD_REGISTRATION(empty_endpoint, REG("\"rank\":1,\"world\":3,\"endpoint\":\"\""),
                 "rank 1 registered endpoint ''", 1)
BAD_REGISTRATION(escaped_endpoint, REG("\"rank\":1,\"world\":3,\"endpoint\":\"tcp://\\\"h\\\":1\""),
                 "quotes", 1)

Test(rendezvous, registration_endpoint_too_long)
{
    char text[900];
    int n =
        snprintf(text, sizeof text, "{" ENV OURS "\"rank\":1,\"world\":3,\"endpoint\":\"tcp://");
    memset(text + n, 'h', 300);
    snprintf(text + n + 300, sizeof text - (size_t)n - 300, "\"}");
    bad_registration(text, strlen(text), "longer than 255 bytes", 1);
}

Test(rendezvous, registration_oversized)
{
    static char text[SL_RDV_REGISTER_MAX + 10];
    memset(text, ' ', sizeof text);
    const char *json = REG("\"rank\":1,\"world\":3,\"endpoint\":\"tcp://h:1\"");
    memcpy(text, json, strlen(json)); /* valid JSON, padded past the limit with spaces */
    bad_registration(text, sizeof text, "at most 1022", 0);
}

/* ------------------------------------------------------------------------------------------------
 * Directory and refusal */

Test(rendezvous, directory_round_trip)
{
    sl_rdv_directory d, got;
    directory_of_three(&d);
    snprintf(d.endpoints[1], sizeof d.endpoints[1], "tcp://host1:5001");
    snprintf(d.report, sizeof d.report, "tcp://host0:6000");
    d.run_id = UINT64_MAX; /* all 64 bits, which a JSON number would not keep */
    char *text = NULL;
    cr_assert_eq(sl_rdv_directory_encode(&d, &text), SL_OK, "%s", sl_last_error());
    cr_assert_str_eq(text, "{\"magic\":\"sluice-rendezvous\",\"version\":2,\"kind\":\"directory\","
                           "\"world\":3,\"config_hash\":\"1234567890123456789\",\"job\":\"job-42\","
                           "\"run_id\":\"18446744073709551615\",\"endpoints\":[\"tcp://"
                           "host0:5000\",\"tcp://host1:5001\",\"tcp://host2:5002\"],\"report\":"
                           "\"tcp://host0:6000\"}");
    cr_assert_eq(sl_rdv_directory_init(&got, 3, HASH, JOB), SL_OK);
    cr_assert_eq(sl_rdv_directory_decode(text, strlen(text), &got), SL_OK, "%s", sl_last_error());
    for (int i = 0; i < 3; i++) cr_assert_str_eq(got.endpoints[i], d.endpoints[i]);
    cr_assert_str_eq(got.report, d.report);
    cr_assert_eq(got.run_id, UINT64_MAX);
    free(text);
    sl_rdv_directory_free(&got);
    sl_rdv_directory_free(&d);
}

/* Rank 0 refuses to send a directory the others would refuse: here rank 1 never registered. */
Test(rendezvous, directory_encode_refusals)
{
    sl_rdv_directory d;
    directory_of_three(&d);
    snprintf(d.report, sizeof d.report, "tcp://host0:6000");
    char *text = (char *)"unchanged";
    cr_assert_eq(sl_rdv_directory_encode(&d, &text), SL_EINVAL);
    cr_assert(strstr(sl_last_error(), "rank 1"), "%s", sl_last_error());
    cr_assert_null(text);
    snprintf(d.endpoints[1], sizeof d.endpoints[1], "tcp://host1:5001");
    d.report[0] = '\0';
    cr_assert_eq(sl_rdv_directory_encode(&d, &text), SL_EINVAL);
    cr_assert(strstr(sl_last_error(), "report"), "%s", sl_last_error());
    sl_rdv_directory_free(&d);
}

/* A refusal reaches the rank as SL_EPEER carrying rank 0's reason. */
Test(rendezvous, refusal_round_trip)
{
    char *text = NULL;
    cr_assert_eq(sl_rdv_refusal_encode("rank 1 registered twice", &text), SL_OK);
    sl_rdv_directory d;
    cr_assert_eq(sl_rdv_directory_init(&d, 3, HASH, JOB), SL_OK);
    cr_assert_eq(sl_rdv_directory_decode(text, strlen(text), &d), SL_EPEER);
    cr_assert(strstr(sl_last_error(), "rank 0 refused this rank: rank 1 registered twice"), "%s",
              sl_last_error());
    free(text);
    sl_rdv_directory_free(&d);
}

/* A directory's malformed twin, read by a rank of a world of three. */
static void bad_directory(const char *text, const char *needle)
{
    sl_rdv_directory d;
    cr_assert_eq(sl_rdv_directory_init(&d, 3, HASH, JOB), SL_OK);
    int st = sl_rdv_directory_decode(text, strlen(text), &d);
    cr_assert_eq(st, SL_EPROTOCOL, "'%s' gave %d: %s", text, st, sl_last_error());
    cr_assert(strstr(sl_last_error(), needle), "'%s' lacks '%s'", sl_last_error(), needle);
    sl_rdv_directory_free(&d);
}

#define DENV     "{\"magic\":\"sluice-rendezvous\",\"version\":2,\"kind\":\"directory\","
#define DIR_OURS DENV "\"world\":3,\"config_hash\":\"1234567890123456789\",\"job\":\"job-42\","
#define EPS      "[\"tcp://a:1\",\"tcp://b:2\",\"tcp://c:3\"]"
#define BAD_DIRECTORY(name, text, needle)                                                          \
    Test(rendezvous, directory_##name)                                                             \
    {                                                                                              \
        bad_directory(text, needle);                                                               \
    }

BAD_DIRECTORY(not_json, "<html>", "without sluice's magic")
BAD_DIRECTORY(old_format, "{\"endpoints\":" EPS ",\"report\":\"tcp://r:9\",\"run_id\":\"1\"}",
              "without sluice's magic")
BAD_DIRECTORY(registration, REG("\"rank\":1,\"world\":3,\"endpoint\":\"tcp://h:1\""),
              "kind 'register'")
BAD_DIRECTORY(truncated, DIR_OURS "\"endpoints\":" EPS ",\"report\":\"tcp://r:9\",\"run_id\":\"1",
              "without sluice's magic")
BAD_DIRECTORY(other_job,
              DENV "\"world\":3,\"config_hash\":\"1234567890123456789\",\"job\":\"x\","
                   "\"endpoints\":" EPS ",\"report\":\"tcp://r:9\",\"run_id\":\"1\"}",
              "launcher job 'x'")
BAD_DIRECTORY(other_config,
              DENV "\"world\":3,\"config_hash\":\"5\",\"job\":\"job-42\","
                   "\"endpoints\":" EPS ",\"report\":\"tcp://r:9\",\"run_id\":\"1\"}",
              "config hash 5")
BAD_DIRECTORY(other_world,
              DENV "\"world\":4,\"config_hash\":\"1234567890123456789\",\"job\":\"job-42\","
                   "\"endpoints\":" EPS ",\"report\":\"tcp://r:9\",\"run_id\":\"1\"}",
              "not a directory of 3 ranks")
BAD_DIRECTORY(too_few_endpoints,
              DIR_OURS "\"endpoints\":[\"tcp://a:1\",\"tcp://b:2\"],\"report\":\"tcp://r:9\","
                       "\"run_id\":\"1\"}",
              "with 3 endpoints")
BAD_DIRECTORY(too_many_endpoints,
              DIR_OURS "\"endpoints\":[\"tcp://a:1\",\"tcp://b:2\",\"tcp://c:3\",\"tcp://d:4\"],"
                       "\"report\":\"tcp://r:9\",\"run_id\":\"1\"}",
              "with 3 endpoints")
BAD_DIRECTORY(endpoint_not_text,
              DIR_OURS "\"endpoints\":[\"tcp://a:1\",7,\"tcp://c:3\"],\"report\":\"tcp://r:9\","
                       "\"run_id\":\"1\"}",
              "endpoint of rank 1")
BAD_DIRECTORY(empty_endpoint,
              DIR_OURS "\"endpoints\":[\"tcp://a:1\",\"tcp://b:2\",\"\"],\"report\":\"tcp://r:9\","
                       "\"run_id\":\"1\"}",
              "endpoint of rank 2")
BAD_DIRECTORY(no_report, DIR_OURS "\"endpoints\":" EPS ",\"run_id\":\"1\"}",
              "report endpoint '(none)'")
BAD_DIRECTORY(empty_report, DIR_OURS "\"endpoints\":" EPS ",\"report\":\"\",\"run_id\":\"1\"}",
              "report endpoint ''")
BAD_DIRECTORY(no_run_id, DIR_OURS "\"endpoints\":" EPS ",\"report\":\"tcp://r:9\"}",
              "run id '(none)'")
BAD_DIRECTORY(run_id_as_number,
              DIR_OURS "\"endpoints\":" EPS ",\"report\":\"tcp://r:9\",\"run_id\":1}",
              "run id '(none)'")
BAD_DIRECTORY(run_id_not_decimal,
              DIR_OURS "\"endpoints\":" EPS ",\"report\":\"tcp://r:9\",\"run_id\":\"12ab\"}",
              "run id '12ab'")
BAD_DIRECTORY(run_id_negative,
              DIR_OURS "\"endpoints\":" EPS ",\"report\":\"tcp://r:9\",\"run_id\":\"-1\"}",
              "run id '-1'")
BAD_DIRECTORY(run_id_beyond_64_bits,
              DIR_OURS "\"endpoints\":" EPS
                       ",\"report\":\"tcp://r:9\",\"run_id\":\"18446744073709551616\"}",
              "within 64 bits")

Test(rendezvous, directory_oversized)
{
    size_t n = SL_RDV_DIRECTORY_MAX(3) + 1;
    char *text = malloc(n + 1);
    memset(text, ' ', n);
    text[n] = '\0';
    bad_directory(text, "bytes (at most");
    free(text);
}
