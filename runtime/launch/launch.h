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
};

typedef struct sl_launch_info {
    enum sl_launcher launcher;
    int rank;
    int world;
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
 * `keep` leaves the directory behind for debugging. */
int sl_launch_create(bool keep, sl_launch **out);
const char *sl_launch_dir(const sl_launch *l);
/* The endpoint ranks connect to for reports, e.g. ipc:///tmp/sluice-ab12/report */
const char *sl_launch_report_endpoint(const sl_launch *l);

/* Starts rank r as `argv` (argv[0] a path; NULL-terminated) with SLUICE_RANK, SLUICE_RUN_DIR and
 * SLUICE_REPORT set in its environment. */
int sl_launch_spawn(sl_launch *l, int rank, char *const argv[]);

/* Waits for every spawned rank to exit, passing reports to `fn`. Returns SL_OK when all exited
 * with status 0 and every rank's "done" report (its last) arrived; otherwise stops the rest and
 * returns SL_EPEER with a message naming the first rank that failed (its last "error" report, or
 * how it exited), or saying how many final reports never came. */
int sl_launch_wait(sl_launch *l, sl_launch_report_fn fn, void *ctx);

/* Stops any rank still running and removes the run directory (unless kept). */
void sl_launch_destroy(sl_launch *l);

/* ------------------------------------------------------------------------------------------------
 * Endpoints of the ranks' links. In a local run rank r's link is an ipc socket in the run
 * directory; under a launcher each rank takes a free tcp port on its host, binds it on every
 * interface (`bind`) and the others connect to `advertise` (the host as sl_rendezvous_local
 * names it). */
void sl_launch_local_endpoint(const sl_launch *l, int rank, char *buf, size_t cap);
int sl_launch_tcp_endpoint(char *bind, char *advertise, size_t cap);

/* ------------------------------------------------------------------------------------------------
 * Under an existing launcher: rank 0 hosts a small directory at the master address (MASTER_ADDR
 * and MASTER_PORT, as torchrun sets them and users export them for mpirun or srun). Every rank
 * registers the endpoint it binds for its link; when all have, each learns every endpoint, the
 * coordinator's report endpoint and the run id. */

/* The directory every rank ends with (its messages' format and checks are transport's, see
 * transport.h): endpoints[world] (the endpoint each rank binds, as others connect to it), report
 * (rank 0's report socket) and run_id. */
typedef sl_rdv_directory sl_rendezvous;

/* The master address from MASTER_ADDR and MASTER_PORT ("host:port"); SL_ECONFIG naming the
 * variables when they are missing. */
int sl_rendezvous_master(char *out, size_t cap);

/* A free TCP port on this host and this host's name as others reach it (SLUICE_HOST, else the
 * host name). */
int sl_rendezvous_local(char *host, size_t cap, int *port);

/* Rank 0: serves the directory for `world` ranks at `master`, registering its own `endpoint` and
 * `report` endpoint, and returns when every rank has its answer (or after timeout_ms). */
int sl_rendezvous_serve(const char *master, int world, const char *endpoint, const char *report,
                        uint64_t run_id, int timeout_ms, sl_rendezvous *out);

/* Ranks 1..world-1: register `endpoint` with rank 0 and wait for the directory. */
int sl_rendezvous_join(const char *master, int rank, int world, const char *endpoint,
                       int timeout_ms, sl_rendezvous *out);

void sl_rendezvous_free(sl_rendezvous *r);

/* A coordinator without child processes (under a launcher): binds the report socket at
 * `bind_endpoint` and, with sl_launch_wait_reports, follows `world` ranks it did not start. */
int sl_launch_listen(const char *bind_endpoint, sl_launch **out);

/* Passes reports to `fn` until every one of `world` ranks sent a "done" report (SL_OK) or one
 * sent an "error" report (SL_EPEER with that rank's message). */
int sl_launch_wait_reports(sl_launch *l, int world, sl_launch_report_fn fn, void *ctx);

/* Rank side: a connection to the coordinator's report socket (NULL endpoint: reports are
 * dropped, for ranks run without a coordinator). */
typedef struct sl_reporter sl_reporter;
int sl_reporter_open(const char *endpoint, sl_reporter **out);
/* Sends one JSON text; blocks only while the coordinator's queue is full. */
int sl_reporter_send(sl_reporter *r, const char *json);
void sl_reporter_close(sl_reporter *r);

#endif
