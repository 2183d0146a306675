/* The run's Chrome trace (trace.json): one track per rank, opens in Perfetto. */
#include <string.h>

#include "core/core.h"
#include "runtime/train/train_impl.h"

int sl__trace_init(sl__trace *t)
{
    *t = (sl__trace){.events = cJSON_CreateArray()};
    return t->events ? SL_OK : sl_fail(SL_ENOMEM, "out of memory for the trace");
}

void sl__trace_add(sl__trace *t, int rank, const cJSON *events)
{
    const cJSON *ev;
    cJSON_ArrayForEach(ev, events)
    {
        const char *name = cJSON_GetStringValue(cJSON_GetArrayItem(ev, 0));
        double ts = cJSON_GetNumberValue(cJSON_GetArrayItem(ev, 1));
        double dur = cJSON_GetNumberValue(cJSON_GetArrayItem(ev, 2));
        if (!name) continue;
        if (t->t0 == 0 || ts < t->t0) t->t0 = ts;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", name);
        bool comm = !strncmp(name, "SEND", 4) || !strncmp(name, "RECV", 4);
        cJSON_AddStringToObject(e, "cat", comm ? "comm" : "compute");
        cJSON_AddStringToObject(e, "ph", "X");
        cJSON_AddNumberToObject(e, "pid", 0);
        cJSON_AddNumberToObject(e, "tid", rank);
        cJSON_AddNumberToObject(e, "ts", ts);
        cJSON_AddNumberToObject(e, "dur", dur);
        cJSON_AddItemToArray(t->events, e);
    }
}

int sl__trace_write(sl__trace *t, const sl__run *r)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *events = t->events;
    t->events = NULL;
    cJSON *e;
    cJSON_ArrayForEach(e, events)
    {
        cJSON *ts = cJSON_GetObjectItem(e, "ts");
        cJSON_SetNumberValue(ts, cJSON_GetNumberValue(ts) - t->t0);
    }
    for (int rank = 0; rank < r->plan->ranks; rank++) {
        cJSON *m = cJSON_CreateObject();
        char name[128];
        snprintf(name, sizeof name, "rank %d (%s)", rank, r->ranks[rank].device);
        cJSON_AddStringToObject(m, "name", "thread_name");
        cJSON_AddStringToObject(m, "ph", "M");
        cJSON_AddNumberToObject(m, "pid", 0);
        cJSON_AddNumberToObject(m, "tid", rank);
        cJSON_AddItemToObject(m, "args", cJSON_CreateObject());
        cJSON_AddStringToObject(cJSON_GetObjectItem(m, "args"), "name", name);
        cJSON_AddItemToArray(events, m);
    }
    cJSON_AddItemToObject(root, "traceEvents", events);
    cJSON_AddStringToObject(root, "displayTimeUnit", "ms");
    int rc = sl__write_json(r, SL_RUN_TRACE, root);
    cJSON_Delete(root);
    return rc;
}

void sl__trace_free(sl__trace *t)
{
    cJSON_Delete(t->events);
    t->events = NULL;
}
