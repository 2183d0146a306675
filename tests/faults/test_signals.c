/* Signals to `sluice train`: a first SIGINT or SIGTERM stops every rank after the same step,
 * writes that step's checkpoint and exits 128+signal with no rank left; the run resumed from it
 * equals the uninterrupted run bit for bit. A second signal stops the ranks at once. */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "tests/faults/faults.h"

TestSuite(signals, .init = faults_setup, .fini = faults_teardown, .timeout = 0);

static const char *mlp =
    "{\"model\": {\"inputs\": 64, \"layers\": [\"linear:32\", \"relu\", \"linear:16\", \"relu\","
    " \"linear:10\"], \"loss\": \"cross_entropy\", \"seed\": 3},"
    " \"data\": {\"path\": \"samples/digits/digits.csv.gz\", \"scale\": 0.0625, \"shuffle\": true},"
    " \"train\": {\"steps\": 100000, \"batch\": 16, \"microbatches\": 4, \"threads\": 1,"
    "  \"optimizer\": {\"name\": \"adam\", \"lr\": 0.001}},"
    " \"pipeline\": {\"stages\": 3}, \"devices\": \"cpu\","
    " \"output\": {\"checkpoint_interval\": 100000}}";

/* Starts `sluice train` on mlp into faults_dir/dir, its stderr in faults_dir/dir.log, and waits
 * until it has trained a few steps. */
static pid_t start(const char *dir)
{
    char cfg[1024], out[1024], set[1100], log[1100];
    FILE *f = fopen(fpath(cfg, sizeof cfg, "signals.json"), "w");
    cr_assert_not_null(f);
    fputs(mlp, f);
    fclose(f);
    snprintf(set, sizeof set, "output.dir=\"%s\"", fpath(out, sizeof out, dir));
    snprintf(log, sizeof log, "%s.log", out);
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(log, "w", stderr) || !freopen("/dev/null", "w", stdout)) _exit(126);
        execl(getenv("SLUICE_EXE"), "sluice", "train", cfg, "--set", set, (char *)NULL);
        _exit(127);
    }
    char metrics[1100];
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", out);
    for (;;) {
        struct stat sb;
        if (stat(metrics, &sb) == 0 && sb.st_size > 1000) break;
        cr_assert_eq(waitpid(pid, NULL, WNOHANG), 0, "the run ended early");
        usleep(20000);
    }
    return pid;
}

static int lines(const char *dir)
{
    char *text = read_output(dir, "metrics.jsonl");
    cr_assert_not_null(text);
    int n = 0;
    for (char *p = text; *p; p++) n += *p == '\n';
    free(text);
    return n;
}

Test(signals, sigint_checkpoints_and_resumes_bit_identical)
{
    pid_t pid = start("int");
    kill(pid, SIGINT);
    int ws;
    cr_assert_eq(waitpid(pid, &ws, 0), pid);
    char *log = read_output(".", "int.log");
    cr_assert(WIFEXITED(ws) && WEXITSTATUS(ws) == 128 + SIGINT, "exit status %d: %s", ws, log);
    /* Every rank stopped after step S: S metrics lines, checkpoint-S, and the progress lines said
     * so. */
    int s = lines("int");
    char name[64], want[128];
    snprintf(name, sizeof name, "checkpoint-%d/manifest.json", s);
    char *manifest = read_output("int", name);
    cr_assert_not_null(manifest, "no %s: %s", name, log);
    free(manifest);
    snprintf(want, sizeof want, "the ranks stop after step %d, writing its checkpoint", s);
    cr_assert(strstr(log, want) && strstr(log, "go on with --resume"), "%s", log);
    free(log);
    char *final = read_output("int", "final.safetensors");
    cr_assert_null(final, "a stopped run writes no final weights");
    /* Resumed to S + 3 steps, it equals a run of S + 3 steps from the start. */
    char steps[64];
    snprintf(steps, sizeof steps, "train.steps=%d", s + 3);
    const char *sets[] = {steps};
    cr_assert_eq(run_train(mlp, sets, 1, "int", true, NULL), SL_OK, "%s", sl_last_error());
    cr_assert_eq(run_train(mlp, sets, 1, "int_ref", false, NULL), SL_OK, "%s", sl_last_error());
    char *m1 = metrics_untimed("int"), *m2 = metrics_untimed("int_ref");
    cr_assert_str_eq(m1, m2);
    free(m1);
    free(m2);
    char a[1024], b[1024];
    cr_assert(same_file(fpath(a, sizeof a, "int/final.safetensors"),
                        fpath(b, sizeof b, "int_ref/final.safetensors")));
}

Test(signals, a_second_signal_stops_at_once)
{
    pid_t pid = start("twice");
    /* The ranks cannot stop before the first signal is relayed: SIGSTOP holds the coordinator
     * while both arrive, so the second one is seen as soon as it runs again. */
    kill(pid, SIGSTOP);
    kill(pid, SIGTERM);
    kill(pid, SIGINT);
    kill(pid, SIGCONT);
    int ws;
    cr_assert_eq(waitpid(pid, &ws, 0), pid);
    char *log = read_output(".", "twice.log");
    cr_assert(WIFEXITED(ws) && WEXITSTATUS(ws) == 1, "exit status %d: %s", ws, log);
    cr_assert(strstr(log, "every rank was stopped"), "%s", log);
    free(log);
    char cmd[1200], out[1024];
    snprintf(cmd, sizeof cmd, "pgrep -f -- '[-]-run-dir .*' -P %d > /dev/null", (int)pid);
    cr_assert_neq(system(cmd), 0, "a rank is left");
    cr_assert_null(read_output("twice", "final.safetensors"));
    (void)out;
}
