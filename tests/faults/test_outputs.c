/* Nothing saved is lost: a full disk (SLUICE_ENOSPC, sl_write_all's test hook) while writing
 * final.safetensors, metrics.jsonl or a checkpoint is an error naming the file and its reason,
 * and leaves what was there before whole; a second run on a locked output.dir is refused naming
 * the first one's pid; a coordinator killed with SIGKILL leaves no rank, no run directory and no
 * cut line behind. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "tests/faults/faults.h"

TestSuite(outputs, .init = faults_setup, .fini = faults_teardown, .timeout = 0);

static const char *mlp =
    "{\"model\": {\"inputs\": 64, \"layers\": [\"linear:32\", \"relu\", \"linear:10\"],"
    " \"loss\": \"cross_entropy\", \"seed\": 3},"
    " \"data\": {\"path\": \"samples/digits/digits.csv.gz\", \"scale\": 0.0625},"
    " \"train\": {\"steps\": 6, \"batch\": 16, \"microbatches\": 2, \"threads\": 1,"
    "  \"optimizer\": {\"name\": \"sgd\", \"lr\": 0.1, \"momentum\": 0.9}},"
    " \"pipeline\": {\"stages\": 2}, \"devices\": \"cpu\"}";

static int run_full_disk(const char *hook, const char *const *sets, int nsets, const char *dir)
{
    setenv("SLUICE_ENOSPC", hook, 1);
    int st = run_train(mlp, sets, nsets, dir, false, NULL);
    unsetenv("SLUICE_ENOSPC");
    return st;
}

static bool ends_whole(const char *text)
{
    size_t n = strlen(text);
    return n == 0 || text[n - 1] == '\n';
}

Test(outputs, a_full_disk_keeps_the_previous_final_weights)
{
    cr_assert_eq(run_train(mlp, NULL, 0, "final", false, NULL), SL_OK, "%s", sl_last_error());
    char path[1024], copy[1024];
    fpath(path, sizeof path, "final/final.safetensors");
    fpath(copy, sizeof copy, "final.before");
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", path, copy);
    cr_assert_eq(system(cmd), 0);
    const char *more[] = {"train.steps=3"};
    int st = run_full_disk("final.safetensors:1000", more, 1, "final");
    cr_assert_eq(st, SL_EIO, "%s", sl_last_error());
    cr_assert(strstr(sl_last_error(), "final.safetensors") &&
                  strstr(sl_last_error(), strerror(ENOSPC)),
              "the message names the file and the reason: %s", sl_last_error());
    cr_assert(same_file(path, copy), "the previous final.safetensors is untouched");
}

Test(outputs, a_full_disk_cuts_no_metrics_line)
{
    int st = run_full_disk("metrics.jsonl:300", NULL, 0, "metrics");
    cr_assert_eq(st, SL_EIO, "%s", sl_last_error());
    cr_assert(strstr(sl_last_error(), "metrics.jsonl") && strstr(sl_last_error(), strerror(ENOSPC)),
              "%s", sl_last_error());
    char *text = read_output("metrics", "metrics.jsonl");
    cr_assert_not_null(text);
    cr_assert(strlen(text) > 0 && strlen(text) <= 300 && ends_whole(text), "%s", text);
    free(text);
}

Test(outputs, a_full_disk_keeps_the_previous_checkpoint)
{
    const char *sets[] = {"output.checkpoint_interval=2"};
    int st = run_full_disk("checkpoint-4.tmp:2000", sets, 1, "ckpt");
    cr_assert_eq(st, SL_EIO, "%s", sl_last_error());
    cr_assert(strstr(sl_last_error(), "checkpoint-4") && strstr(sl_last_error(), strerror(ENOSPC)),
              "%s", sl_last_error());
    char *manifest = read_output("ckpt", "checkpoint-2/manifest.json");
    cr_assert_not_null(manifest, "checkpoint-2 stays complete");
    free(manifest);
    char path[1024];
    struct stat sb;
    cr_assert_neq(stat(fpath(path, sizeof path, "ckpt/checkpoint-4"), &sb), 0);
    /* Nothing half written is left under any name. */
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q tmp", fpath(path, sizeof path, "ckpt"));
    cr_assert_neq(system(cmd), 0, "a temporary file or directory was left in %s", path);
    /* And it resumes. */
    cr_assert_eq(run_train(mlp, sets, 1, "ckpt", true, NULL), SL_OK, "%s", sl_last_error());
}

Test(outputs, a_second_run_on_the_same_dir_is_refused)
{
    char dir[1024], lock[1100];
    fpath(dir, sizeof dir, "locked");
    cr_assert_eq(sl_mkdir_p(dir), SL_OK);
    snprintf(lock, sizeof lock, "%s/.lock", dir);
    /* Another process holds the lock, as a run in progress does: it says so on `ready` and
     * keeps it until `hold` closes. */
    int ready[2], hold[2];
    cr_assert(pipe(ready) == 0 && pipe(hold) == 0);
    pid_t holder = fork();
    if (holder == 0) {
        close(hold[1]);
        int fd = open(lock, O_RDWR | O_CREAT, 0644);
        char pid[32];
        int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
        if (fd < 0 || flock(fd, LOCK_EX) != 0 || write(fd, pid, (size_t)n) != n) _exit(1);
        if (write(ready[1], "x", 1) != 1) _exit(1);
        char c;
        while (read(hold[0], &c, 1) > 0) {
        }
        _exit(0);
    }
    close(ready[1]);
    close(hold[0]);
    char c;
    cr_assert_eq(read(ready[0], &c, 1), 1);
    int st = run_train(mlp, NULL, 0, "locked", false, NULL);
    char want[32];
    snprintf(want, sizeof want, "pid %ld", (long)holder);
    cr_assert_eq(st, SL_EIO, "%s", sl_last_error());
    cr_assert(strstr(sl_last_error(), "in use by another run") && strstr(sl_last_error(), want),
              "%s", sl_last_error());
    /* The lock goes with its holder, however it ends. */
    kill(holder, SIGKILL);
    waitpid(holder, NULL, 0);
    close(hold[1]);
    close(ready[0]);
    cr_assert_eq(run_train(mlp, NULL, 0, "locked", false, NULL), SL_OK, "%s", sl_last_error());
}

Test(outputs, a_killed_coordinator_leaves_nothing_behind)
{
    char tmp[1024], cfgpath[1024], out[1024], set[1100];
    fpath(tmp, sizeof tmp, "tmp");
    cr_assert_eq(sl_mkdir_p(tmp), SL_OK);
    FILE *f = fopen(fpath(cfgpath, sizeof cfgpath, "long.json"), "w");
    cr_assert_not_null(f);
    fputs(mlp, f);
    fclose(f);
    snprintf(set, sizeof set, "output.dir=\"%s\"", fpath(out, sizeof out, "killed"));
    pid_t pid = fork();
    if (pid == 0) {
        setenv("TMPDIR", tmp, 1);
        execl(getenv("SLUICE_EXE"), "sluice", "train", cfgpath, "--quiet", "--set",
              "train.steps=100000", "--set", set, (char *)NULL);
        _exit(127);
    }
    /* Wait until it trains (metrics.jsonl has lines), then kill it. */
    char metrics[1100];
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", out);
    for (;;) {
        struct stat sb;
        if (stat(metrics, &sb) == 0 && sb.st_size > 2000) break;
        cr_assert_eq(waitpid(pid, NULL, WNOHANG), 0, "the run ended early");
        usleep(20000);
    }
    kill(pid, SIGKILL);
    int ws;
    cr_assert_eq(waitpid(pid, &ws, 0), pid);
    /* Its run directory goes, and with it every rank (they die with their coordinator). */
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s')\"", tmp);
    while (system(cmd) != 0) usleep(20000);
    snprintf(cmd, sizeof cmd, "pgrep -f -- '[-]-run-dir %s/' > /dev/null", tmp);
    while (system(cmd) == 0) usleep(20000);
    char *text = read_output("killed", "metrics.jsonl");
    cr_assert_not_null(text);
    cr_assert(ends_whole(text), "metrics.jsonl ends with a whole line");
    free(text);
}
