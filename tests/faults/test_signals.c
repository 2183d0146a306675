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

/* Starts `sluice train` on mlp (with `n` more --set KEY=VALUE from `extra`) into faults_dir/dir,
 * its stderr in faults_dir/dir.log and its run directory under faults_dir/dir.tmp (TMPDIR), and
 * waits until it has trained a few steps. */
static pid_t start_with(const char *dir, const char *const *extra, int n)
{
    char cfg[1024], out[1024], set[1100], log[1100];
    FILE *f = fopen(fpath(cfg, sizeof cfg, "signals.json"), "w");
    cr_assert_not_null(f);
    fputs(mlp, f);
    fclose(f);
    snprintf(set, sizeof set, "output.dir=\"%s\"", fpath(out, sizeof out, dir));
    snprintf(log, sizeof log, "%s.log", out);
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    cr_assert_eq(sl_mkdir_p(tmp), SL_OK);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("TMPDIR", tmp, 1);
        if (!freopen(log, "w", stderr) || !freopen("/dev/null", "w", stdout)) _exit(126);
        const char *argv[16] = {"sluice", "train", cfg, "--set", set};
        for (int i = 0; i < n && i < 5; i++) {
            argv[5 + 2 * i] = "--set";
            argv[6 + 2 * i] = extra[i];
        }
        execv(getenv("SLUICE_EXE"), (char *const *)argv);
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

static pid_t start(const char *dir)
{
    return start_with(dir, NULL, 0);
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

/* The run in faults_dir/dir, stopped by `sig` (0: by a signal to one of its ranks), ended as a
 * first signal ends it: exit status 128+sig (any failure for 0), and every rank stopped after
 * step S: S metrics lines, checkpoint-S, and the progress lines said so, pointing to --resume.
 * Returns S. */
static int assert_stopped(pid_t pid, const char *dir, int sig)
{
    int ws;
    cr_assert_eq(waitpid(pid, &ws, 0), pid);
    char logname[64];
    snprintf(logname, sizeof logname, "%s.log", dir);
    char *log = read_output(".", logname);
    cr_assert(WIFEXITED(ws) && (sig ? WEXITSTATUS(ws) == 128 + sig : WEXITSTATUS(ws) != 0),
              "%s: exit status %d: %s", dir, ws, log);
    int s = lines(dir);
    char name[64], want[128];
    snprintf(name, sizeof name, "checkpoint-%d/manifest.json", s);
    char *manifest = read_output(dir, name);
    cr_assert_not_null(manifest, "%s: no %s: %s", dir, name, log);
    free(manifest);
    snprintf(want, sizeof want, "the ranks stop after step %d, writing its checkpoint", s);
    cr_assert(strstr(log, want) && strstr(log, "go on with --resume"), "%s: %s", dir, log);
    free(log);
    return s;
}

Test(signals, sigint_checkpoints_and_resumes_bit_identical)
{
    pid_t pid = start("int");
    kill(pid, SIGINT);
    int s = assert_stopped(pid, "int", SIGINT);
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
    /* No rank is left: none runs in a run directory under this run's TMPDIR. */
    char cmd[1200], tmp[1024];
    snprintf(cmd, sizeof cmd, "pgrep -f -- '[-]-run-dir %s/' > /dev/null",
             fpath(tmp, sizeof tmp, "twice.tmp"));
    cr_assert_eq(system(cmd), 1 << 8, "a rank is left (or pgrep failed)");
    cr_assert_null(read_output("twice", "final.safetensors"));
}

/* The MLP with a fourth linear layer, so that 4 ranks (or 2 x 2 chunks) hold one each. */
static const char *four_linear = "model.layers=[\"linear:32\", \"relu\", \"linear:32\", "
                                 "\"relu\", \"linear:16\", \"relu\", \"linear:10\"]";

/* The stop vote in other schedules: where every rank but the last reads its broadcast inside the
 * step (gpipe and chimera on 4 ranks), and where rank 0 sends towards its peer first and all read
 * it after the step (zb-v on 2 ranks). Each stops after the same step on every rank, with that
 * step's checkpoint. */
Test(signals, every_rank_stops_after_the_same_step_in_other_schedules)
{
    const char *pipelines[] = {
        "pipeline={\"stages\": 4, \"schedule\": \"gpipe\"}",
        "pipeline={\"stages\": 4, \"schedule\": \"chimera\", \"chunks\": 2}",
        "pipeline={\"stages\": 2, \"schedule\": \"zb-v\", \"chunks\": 2}",
    };
    for (size_t i = 0; i < sizeof pipelines / sizeof *pipelines; i++) {
        char dir[32];
        snprintf(dir, sizeof dir, "sched%zu", i);
        const char *extra[] = {four_linear, pipelines[i]};
        pid_t pid = start_with(dir, extra, 2);
        kill(pid, SIGTERM);
        assert_stopped(pid, dir, SIGTERM);
    }
}

/* A launcher (srun, mpirun) signals each rank itself, and the ranks may see it in different
 * steps: here only one rank is asked (the SIGUSR1 a local run's coordinator relays), in 1F1B on
 * 4 ranks (the broadcast read inside the step; rank 2 relays the gather and the broadcast) and
 * in zb-v on 2 (read after it; rank 0 asked). Every rank stops after the same step. */
Test(signals, a_stop_asked_of_one_rank_stops_every_rank_after_the_same_step)
{
    const struct {
        const char *pipeline;
        int rank;
    } runs[] = {{"pipeline={\"stages\": 4, \"schedule\": \"1f1b\"}", 2},
                {"pipeline={\"stages\": 2, \"schedule\": \"zb-v\", \"chunks\": 2}", 0}};
    for (size_t i = 0; i < sizeof runs / sizeof *runs; i++) {
        char dir[32], name[48], cmd[1400], tmp[1024];
        snprintf(dir, sizeof dir, "one%zu", i);
        snprintf(name, sizeof name, "%s.tmp", dir);
        const char *extra[] = {four_linear, runs[i].pipeline};
        pid_t pid = start_with(dir, extra, 2);
        snprintf(cmd, sizeof cmd, "pkill -USR1 -f -- '[-]-rank %d --run-dir %s/'", runs[i].rank,
                 fpath(tmp, sizeof tmp, name));
        cr_assert_eq(system(cmd), 0, "%s", cmd);
        assert_stopped(pid, dir, 0);
    }
}
