/* Dead and frozen ranks: a rank killed with SIGKILL mid-step (a middle one, and rank 0) or stopped
 * with SIGSTOP ends the run with a non-zero exit, a message naming that rank, its host and what
 * every other rank was waiting on, and no process left behind. No timing is asserted: the others
 * stop when their links' heartbeats say so. */
#define _GNU_SOURCE
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "tests/faults/faults.h"

TestSuite(ranks, .init = faults_setup, .fini = faults_teardown, .timeout = 0);

static const char *mlp =
    "{\"model\": {\"inputs\": 64, \"layers\": [\"linear:32\", \"relu\", \"linear:16\", \"relu\","
    " \"linear:10\"], \"loss\": \"cross_entropy\", \"seed\": 3},"
    " \"data\": {\"path\": \"samples/digits/digits.csv.gz\", \"scale\": 0.0625},"
    " \"train\": {\"steps\": 1000000, \"batch\": 16, \"microbatches\": 4, \"threads\": 1,"
    "  \"optimizer\": {\"name\": \"sgd\", \"lr\": 0.01}},"
    " \"pipeline\": {\"stages\": 3}, \"devices\": \"cpu\"}";

/* The pid of the process whose command line holds `what` (NUL-separated arguments joined by
 * spaces), or -1. */
static pid_t find_process(const char *what)
{
    DIR *d = opendir("/proc");
    cr_assert_not_null(d);
    pid_t found = -1;
    for (struct dirent *e; found < 0 && (e = readdir(d));) {
        char path[300], line[4096];
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t n = fread(line, 1, sizeof line - 1, f);
        fclose(f);
        for (size_t i = 0; i < n; i++)
            if (!line[i]) line[i] = ' ';
        line[n] = '\0';
        if (strstr(line, what)) found = atoi(e->d_name);
    }
    closedir(d);
    return found;
}

/* Runs `sluice train` with its run directory under faults_dir/dir.tmp, sends `sig` to rank
 * `rank` once it trains, and returns its stderr after it exited with status 1. */
static char *break_rank(const char *dir, int rank, int sig)
{
    char cfg[1024], out[1024], tmp[1100], set[1100], log[1100];
    FILE *f = fopen(fpath(cfg, sizeof cfg, "ranks.json"), "w");
    cr_assert_not_null(f);
    fputs(mlp, f);
    fclose(f);
    snprintf(set, sizeof set, "output.dir=\"%s\"", fpath(out, sizeof out, dir));
    snprintf(log, sizeof log, "%s.log", out);
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    cr_assert_eq(sl_mkdir_p(tmp), SL_OK);
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(log, "w", stderr) || !freopen("/dev/null", "w", stdout)) _exit(126);
        setenv("TMPDIR", tmp, 1);
        execl(getenv("SLUICE_EXE"), "sluice", "train", cfg, "--quiet", "--set", set, (char *)NULL);
        _exit(127);
    }
    char metrics[1100], want[1200];
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", out);
    for (;;) {
        struct stat sb;
        if (stat(metrics, &sb) == 0 && sb.st_size > 2000) break;
        cr_assert_eq(waitpid(pid, NULL, WNOHANG), 0, "the run ended early");
        usleep(20000);
    }
    snprintf(want, sizeof want, "--rank %d --run-dir %s/", rank, tmp);
    pid_t victim = find_process(want);
    cr_assert_gt(victim, 0, "no process of rank %d", rank);
    kill(victim, sig);
    int ws;
    cr_assert_eq(waitpid(pid, &ws, 0), pid);
    char *text = read_output(".", strrchr(log, '/') + 1);
    cr_assert_not_null(text);
    cr_assert(WIFEXITED(ws) && WEXITSTATUS(ws) == 1, "exit status %d: %s", ws, text);
    /* No rank is left, and no run directory. */
    snprintf(want, sizeof want, "--run-dir %s/", tmp);
    cr_assert_eq(find_process(want), -1, "a rank is left: %s", text);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s')\"", tmp);
    cr_assert_eq(system(cmd), 0, "%s is not empty", tmp);
    return text;
}

/* The final message (the last line of stderr, the command's own). */
static const char *final_line(char *text)
{
    size_t n = strlen(text);
    while (n && text[n - 1] == '\n') text[--n] = '\0';
    char *nl = strrchr(text, '\n');
    return nl ? nl + 1 : text;
}

static void assert_names(const char *line, int culprit, const char *what)
{
    char want[128];
    snprintf(want, sizeof want, "rank %d (host ", culprit);
    cr_assert(strstr(line, want) && strstr(line, what), "%s", line);
    /* Each other rank is named with the action it was in: mostly waiting for the culprit's
     * message, but the stop can also find a rank inside a send. */
    for (int r = 0; r < 3; r++) {
        if (r == culprit) continue;
        char sending[64];
        snprintf(want, sizeof want, "rank %d waiting for ", r);
        snprintf(sending, sizeof sending, "rank %d sending ", r);
        cr_assert(strstr(line, want) || strstr(line, sending), "rank %d's wait is not named: %s", r,
                  line);
    }
}

Test(ranks, a_killed_middle_rank_is_named)
{
    char *log = break_rank("kill1", 1, SIGKILL);
    assert_names(final_line(log), 1, "was killed by signal 9");
    free(log);
}

Test(ranks, a_killed_rank_0_is_named)
{
    char *log = break_rank("kill0", 0, SIGKILL);
    assert_names(final_line(log), 0, "was killed by signal 9");
    free(log);
}

Test(ranks, a_stopped_rank_is_named)
{
    char *log = break_rank("stop1", 1, SIGSTOP);
    assert_names(final_line(log), 1, "stopped answering");
    free(log);
}

/* A rank that makes no progress while its links still answer heartbeats (a hung device: the
 * SLUICE_HANG_AT test hook) is named by the watchdog with the action it is stuck in. */
Test(ranks, a_hung_rank_is_named_by_the_watchdog)
{
    char cfg[1024], out[1024], set[1100], log[1100];
    FILE *f = fopen(fpath(cfg, sizeof cfg, "hang.json"), "w");
    cr_assert_not_null(f);
    fputs(mlp, f);
    fclose(f);
    snprintf(set, sizeof set, "output.dir=\"%s\"", fpath(out, sizeof out, "hang"));
    snprintf(log, sizeof log, "%s.log", out);
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(log, "w", stderr) || !freopen("/dev/null", "w", stdout)) _exit(126);
        setenv("SLUICE_HANG_AT", "1:30", 1);
        execl(getenv("SLUICE_EXE"), "sluice", "train", cfg, "--quiet", "--set", set, (char *)NULL);
        _exit(127);
    }
    const char *want = "watchdog: rank 1 (host ";
    char *text = NULL;
    for (;;) {
        free(text);
        text = read_output(".", "hang.log");
        if (text && strstr(text, want)) break;
        cr_assert_eq(waitpid(pid, NULL, WNOHANG), 0, "the run ended: %s", text ? text : "");
        usleep(50000);
    }
    cr_assert(strstr(text, "running F(stage 1, micro-batch 0) in step 30") &&
                  strstr(text, "a hung device"),
              "%s", text);
    free(text);
    /* It cannot finish its step: a second signal ends the run. */
    kill(pid, SIGINT);
    for (text = NULL; !text || !strstr(text, "again to stop now"); usleep(50000)) {
        free(text);
        text = read_output(".", "hang.log");
    }
    free(text);
    kill(pid, SIGINT);
    int ws;
    cr_assert_eq(waitpid(pid, &ws, 0), pid);
    cr_assert(WIFEXITED(ws) && WEXITSTATUS(ws) == 1);
}
