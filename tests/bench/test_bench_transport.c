/* `sluice bench transport` when one end of a trial fails (SLUICE_BENCH_FAULT makes an end fail as
 * its timed part starts): the other end, left waiting in a send or receive that raw libzmq would
 * never end on its own, is released; the bench exits with status 1 and one line naming the
 * contender, the rank and the reason. A hang here is a failure by ctest's timeout. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "run.h"

/* Runs the bench with SLUICE_BENCH_FAULT=fault; returns stdout and stderr (malloc'd). Each test
 * runs in a process of its own, so the variable stays with it. */
static char *run_with_fault(const char *fault, int *status)
{
    setenv("SLUICE_BENCH_FAULT", fault, 1);
    return run_sluice(status, "bench transport --quick --rounds 1 --no-curve 2>&1");
}

static int count(const char *s, const char *what)
{
    int n = 0;
    for (const char *at = s; (at = strstr(at, what)); at += strlen(what)) n++;
    return n;
}

static void check_fault(const char *fault, const char *line)
{
    int status;
    char *out = run_with_fault(fault, &status);
    cr_assert_eq(status, 1, "SLUICE_BENCH_FAULT=%s: exit %d:\n%s", fault, status, out);
    cr_assert(strstr(out, line), "no '%s' in:\n%s", line, out);
    cr_assert_eq(count(out, "a transfer failed"), 1, "the released end spoke too:\n%s", out);
    free(out);
}

Test(bench_transport, raw_sender_fails)
{
    check_fault("raw:0", "raw libzmq, rank 0: a transfer failed: failure injected");
}

Test(bench_transport, raw_receiver_fails)
{
    check_fault("raw:1", "raw libzmq, rank 1: a transfer failed: failure injected");
}

Test(bench_transport, sluice_sender_fails)
{
    check_fault("sluice:0", "sluice, rank 0: a transfer failed: failure injected");
}

Test(bench_transport, sluice_receiver_fails)
{
    check_fault("sluice:1", "sluice, rank 1: a transfer failed: failure injected");
}

Test(bench_transport, bad_fault_refused)
{
    int status;
    char *out = run_with_fault("raw:2", &status);
    cr_assert_eq(status, 2, "exit %d:\n%s", status, out);
    cr_assert(strstr(out, "expected sluice:0, sluice:1, raw:0 or raw:1"), "%s", out);
    free(out);
}
