/* `sluice bench transport` when one end of a trial fails (SLUICE_BENCH_FAULT makes an end fail as
 * its timed part starts): the other end, left waiting in a send or receive that raw libzmq would
 * never end on its own, is released; the bench exits with status 1 and one line naming the
 * contender, the rank and the reason. A hang here is a failure by ctest's timeout. And when the
 * run is interrupted (Ctrl-C): it ends by the signal and leaves no temp dir or socket file. Each
 * run gets a TMPDIR of its own, which must be empty when the run has ended. */
#define _GNU_SOURCE /* usleep */
#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "run.h"

/* A fresh TMPDIR for this test's process (each Criterion test runs in a process of its own). */
static const char *private_tmpdir(void)
{
    static char dir[] = "/tmp/sl-bench-test-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    setenv("TMPDIR", dir, 1);
    return dir;
}

/* How many names lie under dir, in it and in its subdirectories; with sockets_only, how many
 * socket files. */
static int entries(const char *dir, int sockets_only)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (e->d_type == DT_DIR)
            n += entries(path, sockets_only) + !sockets_only;
        else
            n += !sockets_only || e->d_type == DT_SOCK;
    }
    closedir(d);
    return n;
}

/* Runs the bench with SLUICE_BENCH_FAULT=fault; returns stdout and stderr (malloc'd). */
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
    const char *tmp = private_tmpdir();
    int status;
    char *out = run_with_fault(fault, &status);
    cr_assert_eq(status, 1, "SLUICE_BENCH_FAULT=%s: exit %d:\n%s", fault, status, out);
    cr_assert(strstr(out, line), "no '%s' in:\n%s", line, out);
    cr_assert_eq(count(out, "a transfer failed"), 1, "the released end spoke too:\n%s", out);
    cr_assert_eq(entries(tmp, 0), 0, "the failed run left files in %s", tmp);
    rmdir(tmp);
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

/* Ctrl-C in the middle of a trial over ipc (the first trials are): the run ends by SIGINT, as a
 * shell expects, and its temp dir with the trial's socket files is gone. */
Test(bench_transport, interrupted_run_leaves_nothing)
{
    const char *exe = getenv("SLUICE_EXE");
    cr_assert_not_null(exe, "SLUICE_EXE is not set (ctest sets it)");
    const char *tmp = private_tmpdir();
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        freopen("/dev/null", "w", stdout);
        execl(exe, exe, "bench", "transport", "--quick", "--no-curve", (char *)NULL);
        _exit(127);
    }
    /* Waits for a trial's socket file (at most a minute: a bound, not a speed limit). */
    int found = 0;
    for (int i = 0; i < 3000 && !(found = entries(tmp, 1) > 0); i++) usleep(20000);
    kill(pid, SIGINT);
    int ws;
    cr_assert_eq(waitpid(pid, &ws, 0), pid);
    cr_assert(found, "no ipc socket file appeared under %s", tmp);
    cr_assert(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGINT,
              "the run did not end by SIGINT (wait status %#x)", ws);
    cr_assert_eq(entries(tmp, 0), 0, "the interrupted run left files in %s", tmp);
    rmdir(tmp);
}
