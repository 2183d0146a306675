#define _GNU_SOURCE
#include "runtime/launch/launch.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <signal.h>
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
        return SL_OK;
    }
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * The coordinator's side */

#define MAX_RANKS 256

struct sl_launch {
    char dir[256];
    char endpoint[300];
    bool keep;
    void *zctx, *pull;
    pid_t pids[MAX_RANKS];
    int status[MAX_RANKS]; /* -1 running, else the wait status */
    int nranks;
    /* OpenBLAS fell back to a generic core here and OPENBLAS_CORETYPE is unset: what the ranks
     * get (backends/cpu/cpu.h); "" for nothing. */
    char blas_coretype[32], blas_fallback[32];
};

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    interrupted = sig;
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
        signal(SIGINT, SIG_IGN); /* the coordinator decides; it stops ranks with SIGTERM */
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
        if (l->status[i] == -1) kill(l->pids[i], SIGTERM);
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

/* The first failure is what the user needs to see; a peer's "my neighbour died" is a
 * consequence, so an error of another kind replaces it. */
struct failure {
    int rank;
    int status;
    char message[1024];
};

static void note_error(struct failure *f, int rank, int status, const char *message)
{
    bool have = f->rank >= 0;
    bool consequence = f->status == SL_EPEER || f->status == SL_ETIMEOUT;
    if (have && !(consequence && status != SL_EPEER && status != SL_ETIMEOUT)) return;
    f->rank = rank;
    f->status = status;
    snprintf(f->message, sizeof f->message, "%s", message);
}

static int drain(sl_launch *l, int timeout_ms, sl_launch_report_fn fn, void *ctx, struct failure *f,
                 int *done)
{
    zmq_pollitem_t item = {.socket = l->pull, .events = ZMQ_POLLIN};
    while (zmq_poll(&item, 1, timeout_ms) > 0) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, l->pull, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            break;
        }
        size_t len = zmq_msg_size(&msg);
        char *text = malloc(len + 1);
        if (text) {
            memcpy(text, zmq_msg_data(&msg), len);
            text[len] = '\0';
            cJSON *j = cJSON_ParseWithLength(text, len);
            const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(j, "type"));
            if (type && !strcmp(type, "done") && done) (*done)++;
            if (type && !strcmp(type, "error")) {
                const char *m = cJSON_GetStringValue(cJSON_GetObjectItem(j, "message"));
                note_error(
                    f, sl_to_int(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "rank")), 0),
                    sl_to_int(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "status")), SL_EPEER),
                    m ? m : "failed");
            }
            cJSON_Delete(j);
            int st = fn ? fn(ctx, text, len) : SL_OK;
            free(text);
            if (st != SL_OK) {
                zmq_msg_close(&msg);
                return st;
            }
        }
        zmq_msg_close(&msg);
        timeout_ms = 0;
    }
    return SL_OK;
}

static void describe_exit(char *buf, size_t cap, int ws)
{
    if (WIFSIGNALED(ws))
        snprintf(buf, cap, "was killed by signal %d (%s)", WTERMSIG(ws), strsignal(WTERMSIG(ws)));
    else
        snprintf(buf, cap, "exited with status %d", WEXITSTATUS(ws));
}

int sl_launch_wait(sl_launch *l, sl_launch_report_fn fn, void *ctx)
{
    struct failure f = {.rank = -1};
    int failed_rank = -1, failed_ws = 0, st = SL_OK, done = 0;
    for (;;) {
        st = drain(l, 100, fn, ctx, &f, &done);
        if (st != SL_OK) break;
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
        if (failed_rank >= 0 || interrupted || !running) break;
    }
    if (failed_rank >= 0 || interrupted || st != SL_OK) {
        /* Give the failing rank's report a moment to arrive, then stop everyone. */
        drain(l, 300, fn, ctx, &f, NULL);
        stop_all(l);
        drain(l, 0, fn, ctx, &f, NULL);
    }
    /* Every rank has exited, but its last reports may still be on their way through the socket
     * (a rank's context hands them to the kernel before it exits; this side's I/O thread may not
     * have read them yet): wait for every rank's "done", the last thing a rank sends. */
    double until = sl_now() + 10.0;
    while (st == SL_OK && failed_rank < 0 && !interrupted && done < l->nranks && sl_now() < until)
        st = drain(l, 100, fn, ctx, &f, &done);
    if (st == SL_OK) st = drain(l, 0, fn, ctx, &f, &done);
    if (st != SL_OK) return st;
    if (interrupted)
        return sl_fail(SL_EPEER, "interrupted by signal %d; every rank was stopped",
                       (int)interrupted);
    if (failed_rank < 0 && done < l->nranks)
        return sl_fail(SL_EPEER,
                       "every rank exited cleanly, but %d of their %d final reports did not "
                       "arrive within 10 s",
                       l->nranks - done, l->nranks);
    if (failed_rank < 0) return SL_OK;
    if (f.rank >= 0) return sl_fail(SL_EPEER, "rank %d failed: %s", f.rank, f.message);
    char how[128];
    describe_exit(how, sizeof how, failed_ws);
    return sl_fail(SL_EPEER, "rank %d %s; every other rank was stopped", failed_rank, how);
}

int sl_launch_listen(const char *bind_endpoint, sl_launch **out)
{
    sl_launch *l = sl_alloc(sizeof *l);
    if (!l) return SL_ENOMEM;
    l->keep = true; /* no run directory */
    snprintf(l->endpoint, sizeof l->endpoint, "%s", bind_endpoint);
    l->zctx = zmq_ctx_new();
    l->pull = l->zctx ? zmq_socket(l->zctx, ZMQ_PULL) : NULL;
    int linger = 0;
    if (!l->pull || zmq_setsockopt(l->pull, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_bind(l->pull, bind_endpoint) != 0) {
        int st = sl_fail(SL_EIO, "cannot bind the report socket %s: %s", bind_endpoint,
                         zmq_strerror(zmq_errno()));
        sl_launch_destroy(l);
        return st;
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
        drain(l, 300, fn, ctx, &f, &done); /* the first failure may still be on its way */
        return sl_fail(SL_EPEER, "rank %d failed: %s", f.rank, f.message);
    }
    if (interrupted) return sl_fail(SL_EPEER, "interrupted by signal %d", (int)interrupted);
    return SL_OK;
}

void sl_launch_destroy(sl_launch *l)
{
    if (!l) return;
    stop_all(l);
    if (l->pull) zmq_close(l->pull);
    if (l->zctx) zmq_ctx_term(l->zctx);
    if (!l->keep && l->dir[0] && sl_remove_tree(l->dir) != SL_OK) {
        sl_log(SL_LOG_WARN, "%s", sl_last_error());
        sl_clear_error();
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

int sl_reporter_open(const char *endpoint, sl_reporter **out)
{
    sl_reporter *r = sl_alloc(sizeof *r);
    if (!r) return SL_ENOMEM;
    if (endpoint && *endpoint) {
        int linger = 5000;
        r->zctx = zmq_ctx_new();
        r->push = r->zctx ? zmq_socket(r->zctx, ZMQ_PUSH) : NULL;
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

void sl_reporter_close(sl_reporter *r)
{
    if (!r) return;
    if (r->push) zmq_close(r->push);
    if (r->zctx) zmq_ctx_term(r->zctx);
    free(r);
}

/* ------------------------------------------------------------------------------------------------
 * Rendezvous under an existing launcher */

int sl_rendezvous_master(char *out, size_t cap)
{
    const char *addr = getenv("MASTER_ADDR"), *port = getenv("MASTER_PORT");
    if (!addr || !*addr || !port || !*port)
        return sl_fail(SL_ECONFIG,
                       "under a launcher, rank 0 hosts the rendezvous at MASTER_ADDR:MASTER_PORT; "
                       "export both (torchrun sets them; for mpirun or srun e.g. "
                       "MASTER_ADDR=<first host> MASTER_PORT=29500), or list one endpoint per rank "
                       "in launch.endpoints");
    snprintf(out, cap, "%s:%s", addr, port);
    return SL_OK;
}

int sl_rendezvous_local(char *host, size_t cap, int *port)
{
    const char *h = getenv("SLUICE_HOST");
    if (h && *h)
        snprintf(host, cap, "%s", h);
    else if (gethostname(host, cap) != 0)
        return sl_fail(SL_EIO, "cannot read the host name: %s (set SLUICE_HOST)", strerror(errno));
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
    socklen_t len = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        return sl_fail(SL_EIO, "cannot find a free TCP port: %s", strerror(e));
    }
    *port = ntohs(sa.sin_port);
    close(fd);
    return SL_OK;
}

void sl_rendezvous_free(sl_rendezvous *r)
{
    sl_rdv_directory_free(r);
}

static int send_frame(void *sock, const void *data, size_t len, int more)
{
    return zmq_send(sock, data, len, more ? ZMQ_SNDMORE : 0) < 0 ? -1 : 0;
}

int sl_rendezvous_serve(const char *master, int world, const char *endpoint, const char *report,
                        uint64_t run_id, int timeout_ms, sl_rendezvous *out)
{
    SL_TRY(sl_rdv_directory_init(out, world));
    out->run_id = run_id;
    snprintf(out->report, sizeof out->report, "%s", report);
    snprintf(out->endpoints[0], sizeof out->endpoints[0], "%s", endpoint);
    const char *colon = strrchr(master, ':');
    char bind[300];
    snprintf(bind, sizeof bind, "tcp://*:%s", colon ? colon + 1 : master);
    void *ctx = zmq_ctx_new(), *sock = ctx ? zmq_socket(ctx, ZMQ_ROUTER) : NULL;
    int st = SL_OK;
    if (!sock || zmq_setsockopt(sock, ZMQ_LINGER, &timeout_ms, sizeof timeout_ms) != 0 ||
        zmq_bind(sock, bind) != 0)
        st = sl_fail(SL_EIO, "rank 0 cannot host the rendezvous at %s: %s", bind,
                     zmq_strerror(zmq_errno()));
    /* identities of the ranks waiting for the answer */
    char(*ids)[256] = sl_alloc((size_t)world * 256);
    size_t *idlen = sl_alloc((size_t)world * sizeof *idlen);
    if (st == SL_OK && (!ids || !idlen)) st = SL_ENOMEM;
    int joined = 1;
    double deadline = sl_now() + timeout_ms / 1e3;
    while (st == SL_OK && joined < world) {
        zmq_pollitem_t it = {.socket = sock, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, 100) <= 0) {
            if (sl_now() > deadline || interrupted)
                st = sl_fail(SL_ETIMEOUT, "rendezvous at %s: %d of %d ranks joined in %d ms",
                             master, joined, world, timeout_ms);
            continue;
        }
        char id[256], empty[8], body[SL_RDV_REGISTER_MAX + 2], ep[SL_RDV_ENDPOINT_BYTES];
        int n_id = zmq_recv(sock, id, sizeof id, 0);
        int n_e = zmq_recv(sock, empty, sizeof empty, 0);
        int n_b = zmq_recv(sock, body, sizeof body - 1, 0);
        /* zmq_recv returns a message's full length, which may exceed what it copied */
        if (n_id < 0 || n_id > (int)sizeof id || n_e != 0 || n_b < 0 || n_b >= (int)sizeof body - 1)
            continue;
        int rank;
        if (sl_rdv_register_decode(body, (size_t)n_b, out, &rank, ep) != SL_OK) {
            st = sl_fail_context(SL_EPROTOCOL, "rendezvous at %s", master);
        } else {
            memcpy(out->endpoints[rank], ep, sizeof ep);
            memcpy(ids[rank], id, (size_t)n_id);
            idlen[rank] = (size_t)n_id;
            joined++;
        }
    }
    char *answer = NULL;
    if (st == SL_OK) st = sl_rdv_directory_encode(out, &answer);
    for (int r = 1; st == SL_OK && r < world; r++)
        if (send_frame(sock, ids[r], idlen[r], 1) || send_frame(sock, "", 0, 1) ||
            send_frame(sock, answer, strlen(answer), 0))
            st = sl_fail(SL_EIO, "rendezvous: cannot answer rank %d: %s", r,
                         zmq_strerror(zmq_errno()));
    free(answer);
    free(ids);
    free(idlen);
    if (sock) zmq_close(sock); /* lingers until the answers are out */
    if (ctx) zmq_ctx_term(ctx);
    if (st != SL_OK) sl_rendezvous_free(out);
    return st;
}

int sl_rendezvous_join(const char *master, int rank, int world, const char *endpoint,
                       int timeout_ms, sl_rendezvous *out)
{
    SL_TRY(sl_rdv_directory_init(out, world));
    char connect[300];
    snprintf(connect, sizeof connect, "tcp://%s", master);
    void *ctx = zmq_ctx_new(), *sock = ctx ? zmq_socket(ctx, ZMQ_REQ) : NULL;
    int zero = 0, st = SL_OK;
    if (!sock || zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_setsockopt(sock, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms) != 0 ||
        zmq_connect(sock, connect) != 0)
        st = sl_fail(SL_EIO, "cannot reach the rendezvous at %s: %s", connect,
                     zmq_strerror(zmq_errno()));
    char body[SL_RDV_REGISTER_MAX + 1];
    size_t n_body = 0;
    if (st == SL_OK) st = sl_rdv_register_encode(rank, world, endpoint, body, sizeof body, &n_body);
    if (st == SL_OK && zmq_send(sock, body, n_body, 0) < 0)
        st = sl_fail(SL_EIO, "rendezvous at %s: %s", connect, zmq_strerror(zmq_errno()));
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    if (st == SL_OK && zmq_msg_recv(&msg, sock, 0) < 0)
        st = sl_fail(SL_ETIMEOUT,
                     "rank %d: no answer from the rendezvous at %s within %d ms (is "
                     "rank 0 running, and MASTER_ADDR its host?)",
                     rank, connect, timeout_ms);
    if (st == SL_OK &&
        sl_rdv_directory_decode(zmq_msg_data(&msg), zmq_msg_size(&msg), out) != SL_OK)
        st = sl_fail_context(SL_EPROTOCOL, "rendezvous at %s sent a malformed answer", connect);
    zmq_msg_close(&msg);
    if (sock) zmq_close(sock);
    if (ctx) zmq_ctx_term(ctx);
    if (st != SL_OK) sl_rendezvous_free(out);
    return st;
}

/* ------------------------------------------------------------------------------------------------
 * Endpoints */

void sl_launch_local_endpoint(const sl_launch *l, int rank, char *buf, size_t cap)
{
    char path[4096];
    snprintf(buf, cap, "ipc://%s",
             sl_run_path(path, sizeof path, l->dir, SL_RUN_LINK_SOCKET, rank, 0));
}

int sl_launch_tcp_endpoint(char *bind, char *advertise, size_t cap)
{
    char host[256];
    int port;
    SL_TRY(sl_rendezvous_local(host, sizeof host, &port));
    snprintf(bind, cap, "tcp://*:%d", port);
    snprintf(advertise, cap, "tcp://%s:%d", host, port);
    return SL_OK;
}
