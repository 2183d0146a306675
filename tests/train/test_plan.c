/* The plan: built once from a config, written as plan.json, loaded back by ranks, refused when it
 * does not describe its config's plan. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <stdlib.h>

#include "helpers.h"
#include "runtime/plan/plan.h"

static char csv_path[256];

static void setup(void)
{
    tmppath(csv_path, sizeof csv_path, "tiny.csv");
    write_text(csv_path, "1,2,3,0\n4,5,6,1\n7,8,9,2\n1,1,1,1\n");
}

TestSuite(plan, .init = setup);

#define CONFIG                                                                                     \
    "{\"model\": {\"inputs\": 3, \"layers\": [\"linear:8\", \"relu\", \"linear:8\", \"tanh\", "    \
    "\"linear:6\", \"gelu\", \"linear:3\"]}, \"data\": {\"path\": \"tiny.csv\"}, "                 \
    "\"train\": {\"steps\": 2, \"batch\": 8, \"microbatches\": 4, \"optimizer\": {\"name\": "      \
    "\"sgd\", \"lr\": 0.1}}, \"pipeline\": {\"stages\": 2, \"schedule\": \"1f1b\"}, "              \
    "\"devices\": [\"cpu\", \"opencl:0\"]}"

static void build(const char *const *sets, int nsets, sl_plan *out)
{
    sl_config cfg;
    cr_assert_eq(sl_config_parse(CONFIG, tmpdir(), sets, nsets, &cfg), SL_OK, "%s",
                 sl_last_error());
    cr_assert_eq(sl_plan_build(&cfg, out), SL_OK, "%s", sl_last_error());
    sl_config_free(&cfg);
}

Test(plan, holds_model_partition_schedule_and_devices)
{
    sl_plan p;
    build(NULL, 0, &p);
    cr_assert_eq(p.ranks, 2);
    cr_assert_eq(p.rows, 2);
    cr_assert_eq(p.model.nlayers, 7);
    cr_assert_eq(p.part.nstages, 2);
    /* Four layers with parameters: two per stage, each with the activation after it. */
    cr_assert_eq(p.part.stages[0].first, 0);
    cr_assert_eq(p.part.stages[0].last, 4);
    cr_assert_eq(p.part.stages[1].last, 7);
    cr_assert_str_eq(p.rank[0].device, "cpu");
    cr_assert_str_eq(p.rank[1].device, "opencl:0");
    cr_assert_eq(p.sched->ranks, 2);
    cr_assert_eq(p.sched->microbatches, 4);
    cr_assert_eq(sl_schedule_validate(p.sched, 0), SL_OK);
    cr_assert_str_eq(p.rank[0].bind, "", "no endpoints before the launcher names them");
    sl_plan_free(&p);
}

Test(plan, json_lists_each_rank_with_its_actions_and_endpoints)
{
    sl_plan p;
    build(NULL, 0, &p);
    const char *eps[] = {"ipc:///tmp/x/r0", "ipc:///tmp/x/r1"};
    sl_plan_set_endpoints(&p, eps);
    char *text = sl_plan_to_json(&p, false);
    cJSON *root = cJSON_Parse(text);
    cr_assert_not_null(root);
    cJSON *r1 = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "ranks"), 1);
    cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(r1, "bind")), eps[1]);
    cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(r1, "next")), eps[0]);
    cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(r1, "device")), "opencl:0");
    /* The action list is the schedule's, in text form. */
    size_t n;
    const sl_action *a = sl_schedule_actions(p.sched, 1, &n);
    char first[32];
    sl_action_format(&a[0], first, sizeof first);
    const char *actions = cJSON_GetStringValue(cJSON_GetObjectItem(r1, "actions"));
    cr_assert_not_null(actions);
    cr_assert_eq(strncmp(actions, first, strlen(first)), 0, "'%s' starts with %s", actions, first);
    cr_assert_not_null(strstr(actions, "OPT"));
    cJSON *stage1 = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "stages"), 1);
    cr_assert_eq(cJSON_GetNumberValue(cJSON_GetObjectItem(stage1, "first_layer")), 4);
    cr_assert_eq(cJSON_GetNumberValue(cJSON_GetObjectItem(stage1, "input_bytes")), 2 * 8 * 4);
    cr_assert_not_null(cJSON_GetObjectItem(root, "config"));
    cJSON_Delete(root);
    free(text);
    sl_plan_free(&p);
}

Test(plan, loads_back_what_it_wrote)
{
    sl_plan p, q;
    build(NULL, 0, &p);
    const char *eps[] = {"ipc:///tmp/x/r0", "ipc:///tmp/x/r1"};
    sl_plan_set_endpoints(&p, eps);
    cr_assert_eq(sl_plan_write(&p, tmpdir()), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_plan_load(tmpdir(), &q), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_plan_hash(&q), sl_plan_hash(&p));
    cr_assert_str_eq(q.rank[0].next, eps[1]);
    cr_assert_str_eq(q.rank[1].device, "opencl:0");
    sl_plan_free(&q);
    sl_plan_free(&p);
}

/* A plan.json whose action lists are not what its config gives is refused, not run. */
Test(plan, refuses_a_plan_that_does_not_match_its_config)
{
    sl_plan p, q;
    build(NULL, 0, &p);
    cr_assert_eq(sl_plan_write(&p, tmpdir()), SL_OK, "%s", sl_last_error());
    char path[256], *text;
    size_t len;
    tmppath(path, sizeof path, "plan.json");
    cr_assert_eq(sl_read_file(path, &text, &len), SL_OK);
    char *opt = strstr(text, "OPT\"");
    cr_assert_not_null(opt);
    memcpy(opt, "0F9", 3); /* one action changed */
    write_text(path, text);
    free(text);
    assert_fails_with(sl_plan_load(tmpdir(), &q), "does not describe");
    write_text(path, "{\"no\": \"config\"}");
    assert_fails_with(sl_plan_load(tmpdir(), &q), "not a plan");
    sl_plan_free(&p);
}

Test(plan, static_endpoints_come_from_the_config)
{
    const char *sets[] = {"launch.endpoints=[\"tcp://a:5000\", \"tcp://b:5001\"]"};
    sl_plan p;
    build(sets, 1, &p);
    cr_assert_str_eq(p.rank[0].bind, "tcp://a:5000");
    cr_assert_str_eq(p.rank[0].next, "tcp://b:5001");
    cr_assert_str_eq(p.rank[1].next, "tcp://a:5000");
    sl_plan_free(&p);
}

/* The config alone cannot tell that interleaved 1F1B needs M to be a multiple of D: the plan's
 * schedule generation does, before anything runs. */
Test(plan, a_schedule_that_cannot_run_is_a_config_error)
{
    sl_config cfg;
    sl_plan p;
    const char *bad[] = {"pipeline.schedule=\"interleaved\"", "pipeline.chunks=2",
                         "train.microbatches=1", "train.batch=1"};
    cr_assert_eq(sl_config_parse(CONFIG, tmpdir(), bad, 4, &cfg), SL_OK, "%s", sl_last_error());
    assert_fails_with(sl_plan_build(&cfg, &p), "multiple of stages");
    cr_assert(strstr(sl_last_error(), "config: pipeline"), "%s", sl_last_error());
    sl_config_free(&cfg);
}

Test(plan, run_directory_names)
{
    char buf[128];
    cr_assert_str_eq(sl_run_path(buf, sizeof buf, "d", SL_RUN_PLAN, 0, 0), "d/plan.json");
    cr_assert_str_eq(sl_run_path(buf, sizeof buf, "d", SL_RUN_CHECKPOINT, 0, 20),
                     "d/checkpoint-20");
    cr_assert_str_eq(sl_run_path(buf, sizeof buf, "d", SL_RUN_RANK_CHECKPOINT, 3, 20),
                     "d/.weights-r3-step20.safetensors");
    cr_assert_str_eq(sl_run_path(buf, sizeof buf, NULL, SL_RUN_SECRET_KEY, 1, 0), "rank1.key");
    cr_assert_str_eq(sl_run_path(buf, sizeof buf, "d", SL_RUN_LINK_SOCKET, 2, 0), "d/r2");
}
