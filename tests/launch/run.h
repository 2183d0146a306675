/* Shared by the suites that run `sluice train` under launchers: start processes with extra
 * environment variables, wait for them, and compare a run's outputs with the local run's. */
#ifndef SL_TESTS_LAUNCH_RUN_H
#define SL_TESTS_LAUNCH_RUN_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/core.h"
#include "runtime/launch/launch.h"

/* The sample the guide (samples/multihost/README.md) runs, cut to a few steps on 4 ranks. */
#define SAMPLE "samples/multihost/multihost.json"
#define RANKS  4

static char outdir_template[] = "/tmp/sluice-launchers-XXXXXX";
static char *outdir;

static __attribute__((unused)) void launchers_setup(void)
{
    outdir = mkdtemp(outdir_template);
    cr_assert_not_null(outdir);
    const char *src = getenv("SLUICE_SOURCE_DIR");
    cr_assert(src && chdir(src) == 0, "run through ctest (SLUICE_SOURCE_DIR)");
    cr_assert(getenv("SLUICE_EXE"), "run through ctest (SLUICE_EXE)");
}

static __attribute__((unused)) void launchers_teardown(void)
{
    if (outdir) cr_assert_eq(sl_remove_tree(outdir), SL_OK, "%s", sl_last_error());
}

/* Skips the test, saying why; its directory goes first (a skipped test's .fini does not run). */
#define launchers_skip(...)                                                                        \
    do {                                                                                           \
        sl_remove_tree(outdir);                                                                    \
        outdir = NULL;                                                                             \
        cr_skip_test(__VA_ARGS__);                                                                 \
    } while (0)

/* Starts argv (argv[0] looked up in PATH, or SLUICE_EXE for "sluice") with `env` ("K=V", NULL
 * ended) added, its output appended to `log`. */
static __attribute__((unused)) pid_t spawn(char *const argv[], const char *const env[],
                                           const char *log)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        for (int i = 0; env && env[i]; i++) putenv(strdup(env[i]));
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) dup2(fd, 1), dup2(fd, 2);
        const char *exe = strcmp(argv[0], "sluice") ? argv[0] : getenv("SLUICE_EXE");
        execvp(exe, argv);
        _exit(127);
    }
    return pid;
}

/* Waits for pid; its exit status, or 128 + signal. */
static __attribute__((unused)) int wait_for(pid_t pid)
{
    int ws;
    cr_assert_eq(waitpid(pid, &ws, 0), pid);
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
}

static __attribute__((unused)) char *read_text(const char *path)
{
    char *data = NULL;
    size_t len;
    cr_assert_eq(sl_read_file(path, &data, &len), SL_OK, "%s", sl_last_error());
    return data;
}

/* "train SAMPLE --quiet" with the suite's overrides and output.dir = outdir/name, as argv from
 * argv[at] on; returns the number of entries written. */
static __attribute__((unused)) int train_args(char **argv, int at, const char *name, char *dir_set,
                                              size_t cap)
{
    snprintf(dir_set, cap, "output.dir=\"%s/%s\"", outdir, name);
    const char *a[] = {
        "train",           SAMPLE,          "--quiet", "--set",          "pipeline.stages=4",
        "--set",           "train.steps=6", "--set",   "train.batch=32", "--set",
        "train.threads=1", "--set",         dir_set};
    for (size_t i = 0; i < sizeof a / sizeof *a; i++) argv[at + (int)i] = (char *)a[i];
    argv[at + (int)(sizeof a / sizeof *a)] = NULL;
    return (int)(sizeof a / sizeof *a);
}

/* The local run every launcher's run is compared with, trained once per suite process. */
static __attribute__((unused)) void local_run(void)
{
    static int done;
    if (done) return;
    char *argv[32], set[512], log[600];
    argv[0] = "sluice";
    train_args(argv, 1, "local", set, sizeof set);
    snprintf(log, sizeof log, "%s/local.log", outdir);
    int st = wait_for(spawn(argv, NULL, log));
    cr_assert_eq(st, 0, "the local run failed: %s", read_text(log));
    done = 1;
}

/* The losses of a run's metrics.jsonl, as text, one per line. */
static __attribute__((unused)) void losses(const char *dir, char *out, size_t cap)
{
    char path[700];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    char *text = read_text(path);
    size_t n = 0;
    out[0] = '\0';
    for (char *p = strstr(text, "\"loss\": "); p && n + 64 < cap; p = strstr(p + 1, "\"loss\": ")) {
        size_t k = strcspn(p + 8, ",}");
        n += (size_t)snprintf(out + n, cap - n, "%.*s\n", (int)k, p + 8);
    }
    free(text);
}

/* outdir/name holds what the local run wrote, nothing else, with the same losses and the same
 * final weights, byte for byte. */
static __attribute__((unused)) void assert_equals_local(const char *name, const char *log)
{
    char dir[600], ref[600], got_l[4096], ref_l[4096];
    snprintf(dir, sizeof dir, "%s/%s", outdir, name);
    snprintf(ref, sizeof ref, "%s/local", outdir);
    const char *files[] = {"final.safetensors", "metrics.jsonl", "plan.json", "summary.json",
                           "trace.json"};
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s wrote no output.dir: %s", name, read_text(log));
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        int known = 0;
        for (size_t i = 0; i < sizeof files / sizeof *files; i++)
            known |= !strcmp(e->d_name, files[i]);
        cr_assert(known, "%s: output.dir holds %s, which the local run does not write", name,
                  e->d_name);
        n++;
    }
    closedir(d);
    cr_assert_eq(n, 5, "%s: %d files in output.dir", name, n);
    losses(dir, got_l, sizeof got_l);
    losses(ref, ref_l, sizeof ref_l);
    cr_assert_str_eq(got_l, ref_l, "%s: losses differ from the local run's", name);
    char a[700], b[700], *x, *y;
    size_t nx, ny;
    snprintf(a, sizeof a, "%s/final.safetensors", dir);
    snprintf(b, sizeof b, "%s/final.safetensors", ref);
    cr_assert_eq(sl_read_file(a, &x, &nx), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_read_file(b, &y, &ny), SL_OK, "%s", sl_last_error());
    cr_assert(nx == ny && !memcmp(x, y, nx), "%s: final weights differ from the local run's", name);
    free(x);
    free(y);
}

/* A free TCP port on this host. */
static __attribute__((unused)) int free_port(void)
{
    char host[256];
    int port;
    cr_assert_eq(sl_rendezvous_local(host, sizeof host, &port), SL_OK);
    return port;
}

/* Whether `prog` is on the PATH. */
static __attribute__((unused)) int have(const char *prog)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", prog);
    return system(cmd) == 0;
}

#endif
