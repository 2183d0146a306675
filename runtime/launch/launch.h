/* Launch: how the rank processes of a run come to exist and how they report back.
 *
 * Local (default): the coordinator (the `sluice train` process) makes a private run directory,
 * starts one process per rank from the same executable, and listens on a ZeroMQ PULL socket in that
 * directory for the ranks' reports (one JSON object per message). If any rank exits with a failure,
 * every other rank is stopped and the run fails with that rank's message; no process is left
 * behind, also when the coordinator itself is interrupted.
 *
 * Under an existing launcher (mpirun, srun, torchrun) the process is one rank; sl_launch_detect
 * reads its rank and world size from the launcher's environment. */
#ifndef SL_LAUNCH_H
#define SL_LAUNCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transport/transport.h"

enum sl_launcher {
    SL_LAUNCHER_NONE,     /* started by hand: sluice launches the ranks itself */
    SL_LAUNCHER_OPENMPI,  /* OMPI_COMM_WORLD_RANK / OMPI_COMM_WORLD_SIZE */
    SL_LAUNCHER_PMI,      /* PMI_RANK / PMI_SIZE (MPICH, Intel MPI, PMIx) */
    SL_LAUNCHER_SLURM,    /* SLURM_PROCID / SLURM_NTASKS */
    SL_LAUNCHER_TORCHRUN, /* RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT */
    SL_LAUNCHER_STATIC,   /* started by hand with --rank R, endpoints in launch.endpoints */
};

typedef struct sl_launch_info {
    enum sl_launcher launcher;
    int rank;
    int world;
    /* The launcher's own id of this run, which every rank of it shares and the rendezvous checks:
     * TORCHELASTIC_RUN_ID, SLURM_JOB_ID.SLURM_STEP_ID, Open MPI's OMPI_MCA_ess_base_jobid, or
     * PMIX_NAMESPACE; "" when the launcher gives none. */
    char job[128];
} sl_launch_info;

/* Reads the launcher's environment. Inconsistent values (rank >= world, non-numbers) are
 * SL_ECONFIG naming the variables. */
int sl_launch_detect(sl_launch_info *out);
const char *sl_launcher_name(enum sl_launcher launcher);

/* A local group of rank processes and their reports. */
typedef struct sl_launch sl_launch;

/* Called by sl_launch_wait for every report a rank sends (a NUL-terminated JSON text). A
 * non-zero return stops the run with that status. */
typedef int (*sl_launch_report_fn)(void *ctx, const char *json, size_t len);

/* Makes the private run directory (under $TMPDIR or /tmp) and binds the report socket.
 * `keep` leaves the directory behind for debugging. Files the ranks send (sl_reporter_send_file)
 * land in the run directory. */
int sl_launch_create(bool keep, sl_launch **out);
const char *sl_launch_dir(const sl_launch *l);
/* The endpoint ranks connect to for reports, e.g. ipc:///tmp/sluice-ab12/report */
const char *sl_launch_report_endpoint(const sl_launch *l);
/* From now on only reports that carry this run id ("run_id": "DECIMAL") are taken; others are
 * dropped with a warning naming the sender's address. */
void sl_launch_expect_run(sl_launch *l, uint64_t run_id);

/* Starts rank r as `argv` (argv[0] a path; NULL-terminated) with SLUICE_RANK, SLUICE_RUN_DIR and
 * SLUICE_REPORT set in its environment. */
int sl_launch_spawn(sl_launch *l, int rank, char *const argv[]);

/* Waits for every spawned rank to exit, passing reports to `fn`. Returns SL_OK when all exited
 * with status 0 and every rank's "done" report (its last) arrived; otherwise stops the rest and
 * returns SL_EPEER with a message naming the first rank that failed (its last "error" report, or
 * how it exited), or saying how many final reports never came. A first SIGINT or SIGTERM is
 * relayed to every rank as SIGUSR1 (they stop after the current step, see sl_exec_request_stop,
 * and the wait goes on to their clean exit); a second one stops them at once (SL_EPEER). */
int sl_launch_wait(sl_launch *l, sl_launch_report_fn fn, void *ctx);
/* The SIGINT or SIGTERM that sl_launch_wait relayed, or 0. */
int sl_launch_signal(void);

/* Stops any rank still running and removes the run directory (unless kept). */
void sl_launch_destroy(sl_launch *l);

/* ------------------------------------------------------------------------------------------------
 * Endpoints of the ranks' links. In a local run rank r's link is an ipc socket in the run
 * directory; under a launcher each rank takes a free tcp port on its host, binds it where
 * sl_launch_bind_address says (`bind`) and the others connect to `advertise` (the host as
 * sl_rendezvous_local names it, or `at` when not NULL). `bind_host` is SLUICE_BIND (NULL: from
 * the host name, see sl_launch_bind_address). */
void sl_launch_local_endpoint(const sl_launch *l, int rank, char *buf, size_t cap);
/* The port is the one a socket bound and listening there got from the kernel: *fd is that socket,
 * for the ZeroMQ socket that binds `bind` to take over (ZMQ_USE_FD), so that no other process
 * (another rank choosing its port at the same moment) can have the port in between. *fd is -1
 * when `bind` names no IPv4 address ("*" counts as every interface): then the port was free when
 * looked at and is bound later, as sl_rendezvous_local says. */
int sl_launch_tcp_endpoint(const char *at, const char *bind_host, char *bind, char *advertise,
                           size_t cap, int *fd);

/* The address to bind for sockets others reach at `host`: `bind` (SLUICE_BIND) when set ("*":
 * every interface), else the IPv4 address `host` resolves to here; a host name (not "localhost"
 * nor an address) that resolves to a loopback address, as Debian maps a host's own name, binds
 * every interface instead, because other hosts reach it by another address. SL_ECONFIG when the
 * name does not resolve. */
int sl_launch_bind_address(const char *bind, const char *host, char *out, size_t cap);

/* ------------------------------------------------------------------------------------------------
 * Under an existing launcher: rank 0 hosts a small directory at the master address (MASTER_ADDR
 * and MASTER_PORT, as torchrun sets them and users export them for mpirun or srun). Every rank
 * registers the endpoint it binds for its link; when all have, each learns every endpoint, the
 * coordinator's report endpoint and the run id. Only the run's ranks are admitted (see the
 * rendezvous messages in transport.h): a stranger is refused and ignored, a rank of this launch
 * that cannot join (another config or world, registered twice) is refused and ends the
 * rendezvous at once on every rank that registered, and a rank that never comes ends it after
 * the timeout with a message naming it. */

/* The directory every rank ends with (its messages' format and checks are transport's, see
 * transport.h): endpoints[world] (the endpoint each rank binds, as others connect to it), report
 * (rank 0's report socket) and run_id. */
typedef sl_rdv_directory sl_rendezvous;

typedef struct sl_rendezvous_options {
    const char *master;   /* "host:port" of rank 0's rendezvous (sl_rendezvous_master) */
    const char *bind;     /* SLUICE_BIND for rank 0's socket; NULL: where the master host is */
    int rank, world;      /* this rank and the run's ranks */
    uint64_t config_hash; /* sl_plan_hash */
    const char *job;      /* sl_launch_info.job */
    int timeout_ms;       /* launch.timeout_s */
    /* NULL: no encryption; else this rank's key pair, rank 0's public key as next_public_key,
     * and (on rank 0) every rank's public key as the keys admitted. */
    const sl_transport_curve *curve;
} sl_rendezvous_options;

/* The master address ("host:port") from MASTER_ADDR and MASTER_PORT; under Slurm (info, may be
 * NULL) they default to the first host of SLURM_STEP_NODELIST (or SLURM_JOB_NODELIST) and port
 * 20000 + SLURM_JOB_ID % 40000. SL_ECONFIG naming the variables when they are missing or the port
 * is not a number. */
int sl_rendezvous_master(const sl_launch_info *info, char *out, size_t cap);

/* A Slurm node list in its compressed form ("node[01-04,07],gpu[1-2]-a") expanded into hosts
 * (node01 node02 node03 node04 node07 gpu1-a gpu2-a, zero padding kept): up to max written, *n
 * all of them. SL_ECONFIG naming the list when it is malformed. */
#define SL_LAUNCH_HOST_BYTES 256
int sl_launch_slurm_hosts(const char *list, char (*hosts)[SL_LAUNCH_HOST_BYTES], int max, int *n);

/* This host's name as others reach it (SLUICE_HOST, else the host name) and, with `port`, a TCP
 * port free when it looked (freed again: another process may take it before it is bound). */
int sl_rendezvous_local(char *host, size_t cap, int *port);

/* Rank 0: serves the directory at o->master, registering its own `endpoint` and `report`
 * endpoint, and returns when every rank has its answer; SL_ETIMEOUT naming the ranks that never
 * came, SL_EPROTOCOL naming a rank of this launch that was refused. */
int sl_rendezvous_serve(const sl_rendezvous_options *o, const char *endpoint, const char *report,
                        uint64_t run_id, sl_rendezvous *out);

/* Ranks 1..world-1: register `endpoint` with rank 0 and wait for the directory, retrying the
 * connection with backoff until o->timeout_ms: SL_ETIMEOUT naming the address tried, SL_EPEER
 * with rank 0's reason when it refused this rank or a CURVE handshake failed. */
int sl_rendezvous_join(const sl_rendezvous_options *o, const char *endpoint, sl_rendezvous *out);

void sl_rendezvous_free(sl_rendezvous *r);

/* A coordinator without child processes (under a launcher): binds the report socket at
 * `bind_endpoint` and, with sl_launch_wait_reports, follows `world` ranks it did not start.
 * Reports of at most max_msg bytes are read (ZMQ_MAXMSGSIZE); files the ranks send land in
 * files_dir; with `curve` (this rank's key pair, every rank's public key admitted) the socket is
 * a CURVE server. */
typedef struct sl_launch_listen_options {
    const char *bind_endpoint;
    const int
        *bind_fd; /* a socket listening there to take over (sl_launch_tcp_endpoint), or NULL */
    const char *files_dir;
    int64_t max_msg;
    uint64_t run_id;
    const sl_transport_curve *curve;
} sl_launch_listen_options;
int sl_launch_listen(const sl_launch_listen_options *o, sl_launch **out);

/* Passes reports to `fn` until every one of `world` ranks sent a "done" report (SL_OK) or one
 * sent an "error" report (SL_EPEER with that rank's message). */
int sl_launch_wait_reports(sl_launch *l, int world, sl_launch_report_fn fn, void *ctx);

/* Rank side: a connection to the coordinator's report socket (NULL endpoint: reports are
 * dropped, for ranks run without a coordinator); with `curve` a CURVE client (this rank's key
 * pair, the coordinator's public key as next_public_key). */
typedef struct sl_reporter sl_reporter;
int sl_reporter_open(const char *endpoint, const sl_transport_curve *curve, sl_reporter **out);
/* Sends one JSON text; blocks only while the coordinator's queue is full. */
int sl_reporter_send(sl_reporter *r, const char *json);
/* Sends the file at `path` to the coordinator, which writes it under the same base name into its
 * files directory (rank's run id and rank in the header `json`, which must have "type":"file"),
 * then removes it here. The report channel keeps order: a report sent after the file arrives
 * after it. */
int sl_reporter_send_file(sl_reporter *r, const char *json, const char *path);
void sl_reporter_close(sl_reporter *r);

#endif
