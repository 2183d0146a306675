#define _GNU_SOURCE
#include "runtime/launch/launch.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "backends/cpu/cpu.h"
#include "core/core.h"
#include "runtime/launch/launch_impl.h"
#include "runtime/plan/plan.h"

/* ------------------------------------------------------------------------------------------------
 * Launcher environments */

const char *sl_launcher_name(enum sl_launcher launcher)
{
    switch (launcher) {
    case SL_LAUNCHER_OPENMPI:
        return "Open MPI";
    case SL_LAUNCHER_PMI:
        return "PMI";
    case SL_LAUNCHER_SLURM:
        return "Slurm";
    case SL_LAUNCHER_TORCHRUN:
        return "torchrun";
    case SL_LAUNCHER_STATIC:
        return "launch.endpoints with --rank";
    default:
        return "none";
    }
}

static int env_int(const char *name, int *out)
{
    const char *v = getenv(name);
    if (!v) return 0;
    char *end;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < 0 || x > 1000000) return -1;
    *out = (int)x;
    return 1;
}

/* The launcher's id of this run, the same on every rank of it. */
static void launcher_job(sl_launch_info *info)
{
    const char *a = NULL, *b = NULL;
    switch (info->launcher) {
    case SL_LAUNCHER_TORCHRUN:
        a = getenv("TORCHELASTIC_RUN_ID");
        break;
    case SL_LAUNCHER_SLURM:
        a = getenv("SLURM_JOB_ID"), b = getenv("SLURM_STEP_ID");
        break;
    case SL_LAUNCHER_OPENMPI:
        a = getenv("OMPI_MCA_ess_base_jobid");
        if (!a) a = getenv("PMIX_NAMESPACE");
        break;
    default:
        a = getenv("PMIX_NAMESPACE");
        if (!a) a = getenv("PMI_KVSNAME");
    }
    snprintf(info->job, sizeof info->job, "%s%s%s", a ? a : "", b ? "." : "", b ? b : "");
    /* Only text the rendezvous carries as it is; anything else is no id. */
    for (char *p = info->job; *p; p++)
        if (*p < 0x20 || *p == '"' || *p == '\\' || *p == 0x7f) *p = '_';
}

int sl_launch_detect(sl_launch_info *out)
{
    static const struct {
        enum sl_launcher launcher;
        const char *rank, *world;
    } envs[] = {
        {SL_LAUNCHER_OPENMPI, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
        {SL_LAUNCHER_PMI, "PMI_RANK", "PMI_SIZE"},
        {SL_LAUNCHER_SLURM, "SLURM_PROCID", "SLURM_NTASKS"},
        {SL_LAUNCHER_TORCHRUN, "RANK", "WORLD_SIZE"},
    };
    *out = (sl_launch_info){.launcher = SL_LAUNCHER_NONE, .rank = 0, .world = 1};
    for (size_t i = 0; i < SL_ARRAY_LEN(envs); i++) {
        int rank = 0, world = 0;
        int hr = env_int(envs[i].rank, &rank), hw = env_int(envs[i].world, &world);
        if (hr == 0 && hw == 0) continue;
        if (hr != 1 || hw != 1 || world < 1 || rank >= world)
            return sl_fail(SL_ECONFIG, "%s environment is inconsistent: %s=%s, %s=%s",
                           sl_launcher_name(envs[i].launcher), envs[i].rank,
                           getenv(envs[i].rank) ? getenv(envs[i].rank) : "(unset)", envs[i].world,
                           getenv(envs[i].world) ? getenv(envs[i].world) : "(unset)");
        /* srun without --ntasks sets SLURM_PROCID=0 SLURM_NTASKS=1 in any job step: not a
         * launcher that asked for ranks. */
        if (envs[i].launcher == SL_LAUNCHER_SLURM && world == 1) continue;
        *out = (sl_launch_info){.launcher = envs[i].launcher, .rank = rank, .world = world};
        launcher_job(out);
        return SL_OK;
    }
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * The coordinator's side */

struct sl_launch {
    char dir[256];
    char endpoint[300];
    bool keep;
    void *zctx, *pull;
    sl_zap *zap;
    const char *files_dir; /* where files the ranks send are written: dir, or the listener's */
    uint64_t run_id;       /* 0: any report is taken (a local run before its id is known) */
    int dropped;           /* reports refused so far */
    pid_t janitor;         /* removes the run directory if this process dies without doing it */
    int janitor_fd;
    pid_t pids[MAX_RANKS];
    int status[MAX_RANKS]; /* -1 running, else the wait status */
    int nranks;
    /* OpenBLAS fell back to a generic core here and OPENBLAS_CORETYPE is unset: what the ranks
     * get (backends/cpu/cpu.h); "" for nothing. */
    char blas_coretype[32], blas_fallback[32];
};

/* Set from on_signal, which may run on any of this process's threads (OpenBLAS's too), two at
 * once when two signals arrive together: the count is an atomic so neither is lost. */
static volatile sig_atomic_t interrupted;
static atomic_int signals;
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "a signal handler needs a lock-free atomic counter");

/* A coordinator killed with SIGKILL cannot remove its run directory (sockets, the plan, keys);
 * its ranks die with it (PR_SET_PDEATHSIG). A small child process waits on a pipe whose other
 * end only the coordinator holds: when the pipe reads end-of-file the coordinator is gone (or
 * done), and the child removes the directory if it is still there. */
static int start_janitor(sl_launch *l)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return sl_fail(SL_EIO, "cannot make a pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        return sl_fail(SL_EIO, "cannot start a process: %s", strerror(e));
    }
    if (pid == 0) {
        /* Nothing of the coordinator's (an output directory's lock, sockets) stays open here. */
        for (int fd = 3; fd < 1024; fd++)
            if (fd != fds[0]) close(fd);
        signal(SIGINT, SIG_IGN);
        signal(SIGTERM, SIG_IGN);
        char c;
        while (read(fds[0], &c, 1) != 0 && errno == EINTR) {
        }
        if (access(l->dir, F_OK) != 0) _exit(0); /* the coordinator removed it */
        usleep(100000); /* the ranks' SIGKILL at their parent's death, then their files */
        sl_remove_tree(l->dir);
        _exit(0);
    }
    close(fds[0]);
    l->janitor = pid;
    l->janitor_fd = fds[1];
    return SL_OK;
}

/* The first SIGINT or SIGTERM asks the ranks to stop after the current step (sl_launch_wait
 * relays it as SIGUSR1); a second one stops them at once. */
static void on_signal(int sig)
{
    interrupted = sig;
    atomic_fetch_add(&signals, 1);
}

int sl_launch_create(bool keep, sl_launch **out)
{
    sl_launch *l = sl_alloc(sizeof *l);
    if (!l) return SL_ENOMEM;
    const char *tmp = getenv("TMPDIR");
    snprintf(l->dir, sizeof l->dir, "%s/sluice-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(l->dir)) {
        int e = errno;
        free(l);
        return sl_fail(SL_EIO, "cannot create a run directory under %s: %s (set TMPDIR)",
                       tmp ? tmp : "/tmp", strerror(e));
    }
    l->keep = keep;
    l->files_dir = l->dir;
    l->janitor_fd = -1;
    if (!keep && start_janitor(l) != SL_OK) {
        sl_log(SL_LOG_WARN, "%s: %s stays behind if this process is killed", sl_last_error(),
               l->dir);
        sl_clear_error();
    }
    sl_cpu_blas blas;
    sl_cpu_blas_detect(&blas);
    if (blas.rank_coretype[0]) {
        snprintf(l->blas_coretype, sizeof l->blas_coretype, "%s", blas.rank_coretype);
        snprintf(l->blas_fallback, sizeof l->blas_fallback, "%s", blas.core);
        sl_log(SL_LOG_INFO,
               "OpenBLAS fell back to its %s core on this CPU; the ranks run with "
               "OPENBLAS_CORETYPE=%s",
               blas.core, blas.rank_coretype);
    }
    char path[4096];
    snprintf(l->endpoint, sizeof l->endpoint, "ipc://%s",
             sl_run_path(path, sizeof path, l->dir, SL_RUN_REPORT_SOCKET, 0, 0));
    l->zctx = zmq_ctx_new();
    l->pull = l->zctx ? zmq_socket(l->zctx, ZMQ_PULL) : NULL;
    int linger = 0;
    if (!l->pull || zmq_setsockopt(l->pull, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_bind(l->pull, l->endpoint) != 0) {
        int st = sl_fail(SL_EIO, "cannot bind the report socket %s: %s", l->endpoint,
                         zmq_strerror(zmq_errno()));
        sl_launch_destroy(l);
        return st;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    interrupted = 0;
    atomic_store(&signals, 0);
    *out = l;
    return SL_OK;
}

const char *sl_launch_dir(const sl_launch *l)
{
    return l->dir;
}

const char *sl_launch_report_endpoint(const sl_launch *l)
{
    return l->endpoint;
}

void sl_launch_expect_run(sl_launch *l, uint64_t run_id)
{
    l->run_id = run_id;
}

int sl_launch_spawn(sl_launch *l, int rank, char *const argv[])
{
    if (l->nranks >= MAX_RANKS) return sl_fail(SL_ELIMIT, "at most %d local ranks", MAX_RANKS);
    char env_rank[32];
    snprintf(env_rank, sizeof env_rank, "%d", rank);
    pid_t pid = fork();
    if (pid < 0) return sl_fail(SL_EIO, "cannot start rank %d: %s", rank, strerror(errno));
    if (pid == 0) {
        /* A rank dies with its coordinator, whatever happens to the coordinator. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        setenv("SLUICE_RANK", env_rank, 1);
        setenv("SLUICE_RUN_DIR", l->dir, 1);
        setenv("SLUICE_REPORT", l->endpoint, 1);
        if (l->blas_coretype[0]) { /* never over a value that is set */
            setenv("OPENBLAS_CORETYPE", l->blas_coretype, 0);
            setenv("SLUICE_OPENBLAS_FALLBACK", l->blas_fallback, 0);
        }
        signal(SIGINT, SIG_IGN);  /* the coordinator decides; it stops ranks with SIGTERM */
        signal(SIGUSR1, SIG_IGN); /* until the rank's handler is in place (sl_exec_rank) */
        execv(argv[0], argv);
        fprintf(stderr, "sluice: cannot run %s for rank %d: %s\n", argv[0], rank, strerror(errno));
        _exit(127);
    }
    l->pids[l->nranks] = pid;
    l->status[l->nranks] = -1;
    l->nranks++;
    return SL_OK;
}

static void stop_all(sl_launch *l)
{
    for (int i = 0; i < l->nranks; i++)
        if (l->status[i] == -1) {
            kill(l->pids[i], SIGTERM);
            kill(l->pids[i], SIGCONT); /* a stopped rank takes its SIGTERM now */
        }
    double deadline = sl_now() + 3.0;
    for (;;) {
        int running = 0;
        for (int i = 0; i < l->nranks; i++) {
            if (l->status[i] != -1) continue;
            int ws;
            if (waitpid(l->pids[i], &ws, WNOHANG) == l->pids[i])
                l->status[i] = ws;
            else
                running++;
        }
        if (!running) return;
        if (sl_now() > deadline) {
            for (int i = 0; i < l->nranks; i++)
                if (l->status[i] == -1) kill(l->pids[i], SIGKILL);
            deadline = sl_now() + 60.0;
        }
        usleep(10000);
    }
}

/* A report's sender may be anyone who reached the socket: one that does not carry this run's id is
 * dropped (the first few with a warning naming its address). */
static bool report_of_run(sl_launch *l, const cJSON *j, zmq_msg_t *msg)
{
    if (!l->run_id) return true;
    char want[32];
    snprintf(want, sizeof want, "%llu", (unsigned long long)l->run_id);
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(j, "run_id"));
    if (id && !strcmp(id, want)) return true;
    if (l->dropped++ < 5) {
        const char *peer = zmq_msg_gets(msg, "Peer-Address");
        sl_log(SL_LOG_WARN,
               "the coordinator dropped a report from %s: it does not carry this run's id (a "
               "stray process, or a rank of another run, on the report port)",
               peer ? peer : "an unknown address");
    }
    return false;
}

/* A file a rank sent (sl_reporter_send_file): its header `j`, its bytes the message's next
 * frame. Written into files_dir under its base name, which must be one a rank writes. */
static int take_file(sl_launch *l, const cJSON *j, const void *data, size_t len)
{
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(j, "name"));
    if (!name || strncmp(name, ".weights-r", 10))
        return sl_fail(SL_EPROTOCOL, "a rank sent a file named '%.60s', not one ranks write",
                       name ? name : "(none)");
    for (const char *p = name; *p; p++)
        if (*p == '/' || *p == '\\' || (unsigned char)*p < 0x20)
            return sl_fail(SL_EPROTOCOL, "a rank sent a file named '%.60s', not one ranks write",
                           name);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", l->files_dir, name);
    return sl_write_file(path, data, len, 0644);
}

/* Reads the ranks' reports for up to timeout_ms, passing each to fn: files are written, "done"
 * counted in *done (when not NULL), errors noted in *f (when not NULL). */
static int drain(sl_launch *l, int timeout_ms, sl_launch_report_fn fn, void *ctx, struct failure *f,
                 int *done)
{
    zmq_pollitem_t item = {.socket = l->pull, .events = ZMQ_POLLIN};
    while (zmq_poll(&item, 1, timeout_ms) > 0) {
        timeout_ms = 0;
        zmq_msg_t msg, data;
        zmq_msg_init(&msg);
        zmq_msg_init(&data);
        if (zmq_msg_recv(&msg, l->pull, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            break;
        }
        /* A report is one frame, a file two: anything longer is read whole and dropped. */
        int frames = 1;
        for (bool more = zmq_msg_more(&msg); more; frames++) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, l->pull, 0) < 0) {
                zmq_msg_close(&m);
                break;
            }
            more = zmq_msg_more(&m);
            if (frames == 1) zmq_msg_move(&data, &m);
            zmq_msg_close(&m);
        }
        size_t len = zmq_msg_size(&msg);
        char *text = malloc(len + 1);
        cJSON *j = NULL;
        int st = SL_OK;
        if (text) {
            memcpy(text, zmq_msg_data(&msg), len);
            text[len] = '\0';
            j = cJSON_ParseWithLength(text, len);
        }
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(j, "type"));
        if (!j || frames > 2 || !report_of_run(l, j, &msg)) {
            if (!j && l->dropped++ < 5)
                sl_log(SL_LOG_WARN, "the coordinator dropped a report that is not JSON");
        } else if (type && !strcmp(type, "file")) {
            st = frames == 2 ? take_file(l, j, zmq_msg_data(&data), zmq_msg_size(&data))
                             : sl_fail(SL_EPROTOCOL, "a rank sent a file without its bytes");
        } else if (frames == 1) {
            if (type && !strcmp(type, "done") && done) (*done)++;
            if (type && !strcmp(type, "error") && f) {
                const char *m = cJSON_GetStringValue(cJSON_GetObjectItem(j, "message"));
                int rank = sl_to_int(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "rank")), 0);
                sl__failure_note_error(
                    f, rank,
                    sl_to_int(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "status")), SL_EPEER),
                    m ? m : "failed");
                sl__failure_note_report(f, j, rank, m ? m : "");
            }
            st = fn ? fn(ctx, text, len) : SL_OK;
        }
        cJSON_Delete(j);
        free(text);
        zmq_msg_close(&data);
        zmq_msg_close(&msg);
        if (st != SL_OK) return st;
    }
    return SL_OK;
}

/* Ranks still running that have sent no error report (reaping those that exited). */
static int reap(sl_launch *l, const struct failure *f)
{
    int pending = 0;
    for (int i = 0; i < l->nranks; i++) {
        int ws;
        if (l->status[i] == -1 && waitpid(l->pids[i], &ws, WNOHANG) == l->pids[i])
            l->status[i] = ws;
        if (l->status[i] == -1 && !f->reported[i]) pending++;
    }
    return pending;
}

int sl_launch_signal(void)
{
    return interrupted;
}

int sl_launch_wait(sl_launch *l, sl_launch_report_fn fn, void *ctx)
{
    struct failure f = {.rank = -1};
    int failed_rank = -1, failed_ws = 0, st = SL_OK, done = 0;
    bool relayed = false, stopped = false;
    for (;;) {
        st = drain(l, 100, fn, ctx, &f, &done);
        if (st != SL_OK) break;
        if (interrupted && !relayed) {
            relayed = true;
            sl_log(SL_LOG_INFO, "%s: every rank stops after the current step (again to stop now)",
                   strsignal(interrupted));
            for (int i = 0; i < l->nranks; i++)
                if (l->status[i] == -1) kill(l->pids[i], SIGUSR1);
        }
        int running = 0;
        for (int i = 0; i < l->nranks; i++) {
            if (l->status[i] != -1) continue;
            int ws;
            pid_t p = waitpid(l->pids[i], &ws, WNOHANG);
            if (p == l->pids[i]) {
                l->status[i] = ws;
                if ((!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) && failed_rank < 0) {
                    failed_rank = i;
                    failed_ws = ws;
                }
            } else {
                running++;
            }
        }
        if (failed_rank >= 0 || signals > 1 || !running) break;
    }
    bool forced = signals > 1; /* else the ranks stopped by themselves (or were not asked) */
    if (failed_rank >= 0 && st == SL_OK && !forced) {
        /* The others fail in turn (a neighbour's departure, then the abort it passes on, or the
         * heartbeat's silence): their reports say what each was waiting on. */
        double until = sl_now() + 6.0;
        while (sl_now() < until && reap(l, &f) > 0) drain(l, 100, fn, ctx, &f, NULL);
    }
    int before[MAX_RANKS]; /* how the ranks stood before they were stopped */
    if (failed_rank >= 0 || forced || st != SL_OK) {
        /* Give the failing rank's report a moment to arrive, then stop everyone. */
        drain(l, 300, fn, ctx, &f, NULL);
        reap(l, &f);
        memcpy(before, l->status, sizeof(int) * (size_t)l->nranks);
        stop_all(l);
        /* What the ranks say once stopped is passed on but not weighed: a rank stopped by
         * SIGSTOP, woken by stop_all, may report its own links broken before it exits, and would
         * then no longer be the silent one the others blame. */
        stopped = true;
        drain(l, 0, fn, ctx, NULL, NULL);
    }
    /* Every rank has exited, but its last reports may still be on their way through the socket
     * (a rank's context hands them to the kernel before it exits; this side's I/O thread may not
     * have read them yet): wait for every rank's "done", the last thing a rank sends. */
    double until = sl_now() + 10.0;
    while (st == SL_OK && failed_rank < 0 && !forced && done < l->nranks && sl_now() < until)
        st = drain(l, 100, fn, ctx, &f, &done);
    if (st == SL_OK) st = drain(l, 0, fn, ctx, stopped ? NULL : &f, &done);
    if (st != SL_OK) return st;
    if (forced)
        return sl_fail(SL_EPEER, "interrupted by signal %d; every rank was stopped",
                       (int)interrupted);
    if (failed_rank < 0 && done < l->nranks)
        return sl_fail(SL_EPEER,
                       "every rank exited cleanly, but %d of their %d final reports did not "
                       "arrive within 10 s",
                       l->nranks - done, l->nranks);
    if (failed_rank < 0) return SL_OK;
    return sl__failure_explain(l->nranks, true, before, &f, failed_rank, failed_ws);
}

int sl_launch_listen(const sl_launch_listen_options *o, sl_launch **out)
{
    sl_launch *l = sl_alloc(sizeof *l);
    if (!l) return SL_ENOMEM;
    l->keep = true; /* no run directory */
    l->files_dir = o->files_dir;
    l->run_id = o->run_id;
    snprintf(l->endpoint, sizeof l->endpoint, "%s", o->bind_endpoint);
    l->zctx = zmq_ctx_new();
    int rc = l->zctx ? SL_OK : sl_fail(SL_EIO, "cannot create a ZeroMQ context");
    char where[400];
    snprintf(where, sizeof where, "the coordinator's report socket %s", o->bind_endpoint);
    if (rc == SL_OK && o->curve)
        rc = sl_zap_start(l->zctx, o->curve->allowed_keys, o->curve->allowed_count, where, &l->zap);
    l->pull = rc == SL_OK ? zmq_socket(l->zctx, ZMQ_PULL) : NULL;
    int linger = 0;
    int64_t max = o->max_msg;
    if (rc == SL_OK && l->pull && o->curve) sl_curve_server(l->pull, o->curve->secret_key);
    if (rc == SL_OK &&
        (!l->pull || zmq_setsockopt(l->pull, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
         zmq_setsockopt(l->pull, ZMQ_MAXMSGSIZE, &max, sizeof max) != 0 ||
         (o->bind_fd && zmq_setsockopt(l->pull, ZMQ_USE_FD, o->bind_fd, sizeof *o->bind_fd)) ||
         zmq_bind(l->pull, o->bind_endpoint) != 0))
        rc = sl_fail(SL_EIO, "cannot bind the report socket %s: %s", o->bind_endpoint,
                     zmq_strerror(zmq_errno()));
    if (rc != SL_OK) {
        sl_launch_destroy(l);
        return rc;
    }
    *out = l;
    return SL_OK;
}

int sl_launch_wait_reports(sl_launch *l, int world, sl_launch_report_fn fn, void *ctx)
{
    struct failure f = {.rank = -1};
    int done = 0;
    while (done < world && f.rank < 0 && !interrupted) SL_TRY(drain(l, 100, fn, ctx, &f, &done));
    if (f.rank >= 0) {
        /* The others fail in turn; their reports say what each was waiting on. */
        double until = sl_now() + 6.0;
        for (;;) {
            int silent = 0;
            for (int i = 0; i < world && i < MAX_RANKS; i++) silent += !f.reported[i];
            if (silent <= 1 || sl_now() > until) break;
            drain(l, 100, fn, ctx, &f, &done);
        }
        int status[MAX_RANKS];
        for (int i = 0; i < MAX_RANKS; i++) status[i] = -1; /* not ours to see */
        return sl__failure_explain(world, false, status, &f, f.rank, 0);
    }
    if (interrupted) return sl_fail(SL_EPEER, "interrupted by signal %d", (int)interrupted);
    return SL_OK;
}

void sl_launch_destroy(sl_launch *l)
{
    if (!l) return;
    stop_all(l);
    for (int i = 0; i < l->nranks; i++) sl_transport_remove_rings(l->pids[i]);
    if (l->pull) zmq_close(l->pull);
    sl_zap_stop(l->zap);
    if (l->zctx) zmq_ctx_term(l->zctx);
    if (!l->keep && l->dir[0] && sl_remove_tree(l->dir) != SL_OK) {
        sl_log(SL_LOG_WARN, "%s", sl_last_error());
        sl_clear_error();
    }
    if (l->janitor > 0) {
        close(l->janitor_fd);
        waitpid(l->janitor, NULL, 0);
    }
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    free(l);
}

/* ------------------------------------------------------------------------------------------------
 * The rank's side */

struct sl_reporter {
    void *zctx, *push;
};

int sl_reporter_open(const char *endpoint, const sl_transport_curve *curve, sl_reporter **out)
{
    sl_reporter *r = sl_alloc(sizeof *r);
    if (!r) return SL_ENOMEM;
    if (endpoint && *endpoint) {
        int linger = 5000;
        r->zctx = zmq_ctx_new();
        r->push = r->zctx ? zmq_socket(r->zctx, ZMQ_PUSH) : NULL;
        if (r->push && curve)
            sl_curve_client(r->push, curve->public_key, curve->secret_key, curve->next_public_key);
        if (!r->push || zmq_setsockopt(r->push, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
            zmq_connect(r->push, endpoint) != 0) {
            int st = sl_fail(SL_EIO, "cannot connect to the coordinator at %s: %s", endpoint,
                             zmq_strerror(zmq_errno()));
            sl_reporter_close(r);
            return st;
        }
    }
    *out = r;
    return SL_OK;
}

int sl_reporter_send(sl_reporter *r, const char *json)
{
    if (!r || !r->push) return SL_OK;
    if (zmq_send(r->push, json, strlen(json), 0) < 0)
        return sl_fail(SL_EIO, "cannot report to the coordinator: %s", zmq_strerror(zmq_errno()));
    return SL_OK;
}

int sl_reporter_send_file(sl_reporter *r, const char *json, const char *path)
{
    if (!r || !r->push) return SL_OK;
    char *data;
    size_t len;
    SL_TRY(sl_read_file(path, &data, &len));
    int rc = SL_OK;
    if (zmq_send(r->push, json, strlen(json), ZMQ_SNDMORE) < 0 ||
        zmq_send(r->push, data, len, 0) < 0)
        rc = sl_fail(SL_EIO, "cannot send %s to the coordinator: %s", path,
                     zmq_strerror(zmq_errno()));
    free(data);
    if (rc == SL_OK) unlink(path);
    return rc;
}

void sl_reporter_close(sl_reporter *r)
{
    if (!r) return;
    if (r->push) zmq_close(r->push);
    if (r->zctx) zmq_ctx_term(r->zctx);
    free(r);
}

/* ------------------------------------------------------------------------------------------------
 * Endpoints */

void sl_launch_local_endpoint(const sl_launch *l, int rank, char *buf, size_t cap)
{
    char path[4096];
    snprintf(buf, cap, "ipc://%s",
             sl_run_path(path, sizeof path, l->dir, SL_RUN_LINK_SOCKET, rank, 0));
}

/* A TCP socket bound to `sa` on a port the kernel picks, listening, non-blocking: *port and *fd. */
static int listen_tcp(struct sockaddr_in *sa, int *port, int *fd)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    socklen_t len = sizeof *sa;
    if (s < 0 || bind(s, (struct sockaddr *)sa, sizeof *sa) != 0 || listen(s, 128) != 0 ||
        getsockname(s, (struct sockaddr *)sa, &len) != 0) {
        int e = errno;
        if (s >= 0) close(s);
        return sl_fail(SL_EIO, "cannot listen on a free TCP port: %s", strerror(e));
    }
    *port = ntohs(sa->sin_port);
    *fd = s;
    return SL_OK;
}

int sl_launch_tcp_endpoint(const char *at, const char *bind_host, char *bind, char *advertise,
                           size_t cap, int *fd)
{
    char host[256], addr[256], local[256];
    int port;
    *fd = -1;
    SL_TRY(sl_rendezvous_local(host, sizeof host, NULL));
    if (at) snprintf(host, sizeof host, "%s", at);
    SL_TRY(sl_launch_bind_address(bind_host, host, addr, sizeof addr));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
    if (!strcmp(addr, "*") || inet_pton(AF_INET, addr, &sa.sin_addr) == 1)
        SL_TRY(listen_tcp(&sa, &port, fd));
    else /* an interface name, say, that only ZeroMQ resolves: a port free now, host kept */
        SL_TRY(sl_rendezvous_local(local, sizeof local, &port));
    snprintf(bind, cap, "tcp://%s:%d", addr, port);
    snprintf(advertise, cap, "tcp://%s:%d", host, port);
    return SL_OK;
}
