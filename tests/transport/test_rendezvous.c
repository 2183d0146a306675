/* The rendezvous messages: each kind round-trips byte for byte as launch sends it, and each has
 * malformed twins that are refused with a message saying what was wrong. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/transport.h"

/* A directory of three ranks in which rank 2 has registered. */
static void directory_of_three(sl_rdv_directory *d)
{
    cr_assert_eq(sl_rdv_directory_init(d, 3), SL_OK);
    snprintf(d->endpoints[0], sizeof d->endpoints[0], "tcp://host0:5000");
    snprintf(d->endpoints[2], sizeof d->endpoints[2], "tcp://host2:5002");
}

/* ------------------------------------------------------------------------------------------------
 * Registration */

Test(rendezvous, registration_round_trip)
{
    char buf[SL_RDV_REGISTER_MAX + 1];
    size_t n = 0;
    cr_assert_eq(sl_rdv_register_encode(1, 3, "tcp://host1:5001", buf, sizeof buf, &n), SL_OK, "%s",
                 sl_last_error());
    /* The exact bytes every earlier build sent. */
    const char *want = "{\"rank\": 1, \"world\": 3, \"endpoint\": \"tcp://host1:5001\"}";
    cr_assert_eq(n, strlen(want));
    cr_assert_str_eq(buf, want);
    sl_rdv_directory d;
    directory_of_three(&d);
    int rank = 0;
    char ep[SL_RDV_ENDPOINT_BYTES];
    cr_assert_eq(sl_rdv_register_decode(buf, n, &d, &rank, ep), SL_OK, "%s", sl_last_error());
    cr_assert_eq(rank, 1);
    cr_assert_str_eq(ep, "tcp://host1:5001");
    sl_rdv_directory_free(&d);
    sl_rdv_directory_free(&d); /* twice is fine */
}

Test(rendezvous, registration_encode_refusals)
{
    char buf[SL_RDV_REGISTER_MAX + 1], small[16], longer[400];
    memset(longer, 'a', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    cr_assert_eq(sl_rdv_register_encode(0, 3, "tcp://h:1", buf, sizeof buf, NULL), SL_EINVAL);
    cr_assert_eq(sl_rdv_register_encode(3, 3, "tcp://h:1", buf, sizeof buf, NULL), SL_EINVAL);
    cr_assert_eq(sl_rdv_register_encode(1, 3, "", buf, sizeof buf, NULL), SL_EINVAL);
    cr_assert_eq(sl_rdv_register_encode(1, 3, NULL, buf, sizeof buf, NULL), SL_EINVAL);
    cr_assert_eq(sl_rdv_register_encode(1, 3, longer, buf, sizeof buf, NULL), SL_EINVAL);
    cr_assert_eq(sl_rdv_register_encode(1, 3, "tcp://\"h\":1", buf, sizeof buf, NULL), SL_EINVAL);
    cr_assert(strstr(sl_last_error(), "quotes"), "%s", sl_last_error());
    cr_assert_eq(sl_rdv_register_encode(1, 3, "tcp://h:1", small, sizeof small, NULL), SL_ERANGE);
}

/* A registration's malformed twin: refused by rank 0 with `needle` in the message. */
static void bad_registration(const char *text, size_t len, const char *needle)
{
    sl_rdv_directory d;
    directory_of_three(&d);
    int rank = 7;
    char ep[SL_RDV_ENDPOINT_BYTES] = "x";
    int st = sl_rdv_register_decode(text, len, &d, &rank, ep);
    cr_assert_eq(st, SL_EPROTOCOL, "'%.80s' gave %d: %s", text, st, sl_last_error());
    cr_assert(strstr(sl_last_error(), needle), "'%s' lacks '%s'", sl_last_error(), needle);
    cr_assert_eq(rank, -1);
    cr_assert_str_eq(ep, "");
    sl_rdv_directory_free(&d);
}

#define BAD_REGISTRATION(name, text, needle)                                                       \
    Test(rendezvous, registration_##name)                                                          \
    {                                                                                              \
        bad_registration(text, strlen(text), needle);                                              \
    }

BAD_REGISTRATION(not_json, "HELLO sluice", "registered as -1 of -1")
BAD_REGISTRATION(truncated, "{\"rank\": 1, \"world\": 3, \"endpoint\": \"tcp://h", "registered as")
BAD_REGISTRATION(rank_zero, "{\"rank\": 0, \"world\": 3, \"endpoint\": \"tcp://h:1\"}",
                 "registered as 0 of 3")
BAD_REGISTRATION(rank_beyond_world, "{\"rank\": 3, \"world\": 3, \"endpoint\": \"tcp://h:1\"}",
                 "registered as 3 of 3")
BAD_REGISTRATION(rank_as_text, "{\"rank\": \"1\", \"world\": 3, \"endpoint\": \"tcp://h:1\"}",
                 "registered as -1 of 3")
BAD_REGISTRATION(rank_huge, "{\"rank\": 1e300, \"world\": 3, \"endpoint\": \"tcp://h:1\"}",
                 "registered as -1 of 3")
BAD_REGISTRATION(other_world, "{\"rank\": 1, \"world\": 4, \"endpoint\": \"tcp://h:1\"}",
                 "this run has 3 ranks")
BAD_REGISTRATION(twice, "{\"rank\": 2, \"world\": 3, \"endpoint\": \"tcp://h:1\"}",
                 "registered as 2 of 3")
BAD_REGISTRATION(no_endpoint, "{\"rank\": 1, \"world\": 3}", "registered as 1 of 3")
BAD_REGISTRATION(endpoint_not_text, "{\"rank\": 1, \"world\": 3, \"endpoint\": 5}",
                 "registered as 1 of 3")
BAD_REGISTRATION(empty_endpoint, "{\"rank\": 1, \"world\": 3, \"endpoint\": \"\"}",
                 "rank 1 registered endpoint ''")
BAD_REGISTRATION(escaped_endpoint,
                 "{\"rank\": 1, \"world\": 3, \"endpoint\": \"tcp://\\\"h\\\":1\"}", "quotes")

Test(rendezvous, registration_endpoint_too_long)
{
    char text[600];
    int n = snprintf(text, sizeof text, "{\"rank\": 1, \"world\": 3, \"endpoint\": \"tcp://");
    memset(text + n, 'h', 300);
    snprintf(text + n + 300, sizeof text - (size_t)n - 300, "\"}");
    bad_registration(text, strlen(text), "longer than 255 bytes");
}

Test(rendezvous, registration_oversized)
{
    static char text[SL_RDV_REGISTER_MAX + 10];
    memset(text, ' ', sizeof text);
    const char *json = "{\"rank\": 1, \"world\": 3, \"endpoint\": \"tcp://h:1\"}";
    memcpy(text, json, strlen(json)); /* valid JSON, padded past the limit with spaces */
    bad_registration(text, sizeof text, "at most 1022");
}

/* ------------------------------------------------------------------------------------------------
 * Directory */

Test(rendezvous, directory_round_trip)
{
    sl_rdv_directory d, got;
    directory_of_three(&d);
    snprintf(d.endpoints[1], sizeof d.endpoints[1], "tcp://host1:5001");
    snprintf(d.report, sizeof d.report, "tcp://host0:6000");
    d.run_id = UINT64_MAX; /* all 64 bits, which a JSON number would not keep */
    char *text = NULL;
    cr_assert_eq(sl_rdv_directory_encode(&d, &text), SL_OK, "%s", sl_last_error());
    cr_assert_str_eq(text, "{\"endpoints\":[\"tcp://host0:5000\",\"tcp://host1:5001\",\"tcp://"
                           "host2:5002\"],\"report\":\"tcp://host0:6000\",\"run_id\":"
                           "\"18446744073709551615\"}");
    cr_assert_eq(sl_rdv_directory_init(&got, 3), SL_OK);
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
    cr_assert_eq(sl_rdv_directory_init(&d, 0), SL_EINVAL);
}

/* A directory's malformed twin, read by a rank of a world of three. */
static void bad_directory(const char *text, const char *needle)
{
    sl_rdv_directory d;
    cr_assert_eq(sl_rdv_directory_init(&d, 3), SL_OK);
    int st = sl_rdv_directory_decode(text, strlen(text), &d);
    cr_assert_eq(st, SL_EPROTOCOL, "'%s' gave %d: %s", text, st, sl_last_error());
    cr_assert(strstr(sl_last_error(), needle), "'%s' lacks '%s'", sl_last_error(), needle);
    sl_rdv_directory_free(&d);
}

#define EPS "[\"tcp://a:1\",\"tcp://b:2\",\"tcp://c:3\"]"
#define BAD_DIRECTORY(name, text, needle)                                                          \
    Test(rendezvous, directory_##name)                                                             \
    {                                                                                              \
        bad_directory(text, needle);                                                               \
    }

BAD_DIRECTORY(not_json, "<html>", "not a directory")
BAD_DIRECTORY(truncated, "{\"endpoints\":" EPS ",\"report\":\"tcp://r:9\",\"run_id\":\"1",
              "not a directory")
BAD_DIRECTORY(too_few_endpoints,
              "{\"endpoints\":[\"tcp://a:1\",\"tcp://b:2\"],\"report\":\"tcp://r:9\",\"run_id\":"
              "\"1\"}",
              "3 endpoints")
BAD_DIRECTORY(too_many_endpoints,
              "{\"endpoints\":[\"tcp://a:1\",\"tcp://b:2\",\"tcp://c:3\",\"tcp://d:4\"],\"report\":"
              "\"tcp://r:9\",\"run_id\":\"1\"}",
              "3 endpoints")
BAD_DIRECTORY(endpoint_not_text,
              "{\"endpoints\":[\"tcp://a:1\",7,\"tcp://c:3\"],\"report\":\"tcp://r:9\",\"run_id\":"
              "\"1\"}",
              "endpoint of rank 1")
BAD_DIRECTORY(
    empty_endpoint,
    "{\"endpoints\":[\"tcp://a:1\",\"tcp://b:2\",\"\"],\"report\":\"tcp://r:9\",\"run_id\":"
    "\"1\"}",
    "endpoint of rank 2")
BAD_DIRECTORY(no_report, "{\"endpoints\":" EPS ",\"run_id\":\"1\"}", "not a directory")
BAD_DIRECTORY(empty_report, "{\"endpoints\":" EPS ",\"report\":\"\",\"run_id\":\"1\"}",
              "report endpoint")
BAD_DIRECTORY(no_run_id, "{\"endpoints\":" EPS ",\"report\":\"tcp://r:9\"}", "not a directory")
BAD_DIRECTORY(run_id_as_number, "{\"endpoints\":" EPS ",\"report\":\"tcp://r:9\",\"run_id\":1}",
              "not a directory")
BAD_DIRECTORY(run_id_not_decimal,
              "{\"endpoints\":" EPS ",\"report\":\"tcp://r:9\",\"run_id\":\"12ab\"}",
              "run id '12ab'")
BAD_DIRECTORY(run_id_negative, "{\"endpoints\":" EPS ",\"report\":\"tcp://r:9\",\"run_id\":\"-1\"}",
              "run id '-1'")
BAD_DIRECTORY(run_id_empty, "{\"endpoints\":" EPS ",\"report\":\"tcp://r:9\",\"run_id\":\"\"}",
              "run id ''")
BAD_DIRECTORY(run_id_beyond_64_bits,
              "{\"endpoints\":" EPS
              ",\"report\":\"tcp://r:9\",\"run_id\":\"18446744073709551616\"}",
              "within 64 bits")
