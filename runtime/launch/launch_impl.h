/* Internals of runtime/launch shared by launch.c (the coordinator) and failure.c (what a failed
 * run's message says). */
#ifndef SL_LAUNCH_IMPL_H
#define SL_LAUNCH_IMPL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#define MAX_RANKS 256

/* The first failure is what the user needs to see; a peer's "my neighbour died" is a
 * consequence, so an error of another kind replaces it. */
struct failure {
    int rank;
    int status;
    char message[1024];
    /* Every rank's error report: what it was doing (its "action"), its host, and which rank its
     * message says disconnected (-1: none). */
    unsigned char reported[MAX_RANKS];
    char action[MAX_RANKS][160], host[MAX_RANKS][64];
    int blamed[MAX_RANKS];
    char peer_host[MAX_RANKS][64]; /* a rank's host as a neighbour's link names it */
};

/* An "error" report of `rank`: the first failure that is not a consequence is kept whole
 * (note_error), and every rank's host, action and the rank it blames (note_report). */
void sl__failure_note_error(struct failure *f, int rank, int status, const char *message);
void sl__failure_note_report(struct failure *f, const cJSON *j, int rank, const char *message);

/* "was killed by signal 9 (Killed)", "exited with status 1" for a wait status. */
void sl__describe_exit(char *buf, size_t cap, int ws);

/* The failure of a run of `nranks` in one SL_EPEER message: the rank that caused it (killed
 * without a word, a failure of its own, or silent: the one the others say disconnected), its
 * host, and what every other rank was doing when it noticed. `local`: the ranks are this host's
 * processes, whose wait statuses (-1: still running) are `status`. */
int sl__failure_explain(int nranks, bool local, const int *status, struct failure *f,
                        int failed_rank, int failed_ws);

#endif
