/* `sluice bench kernels`' OpenBLAS baseline (bench/kernels.c is the command): the host GEMM, and
 * the child process `sluice bench kernels --blas-only` that runs it under the best OpenBLAS core
 * for this CPU. */
#define _GNU_SOURCE
#include <cblas.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backends/backend.h"
#include "backends/cpu/cpu.h"
#include "bench/kernels_impl.h"
#include "runtime/cli/cli.h"

int sl__bench_host_gemm_init(struct sl__bench_host_gemm *h, size_t n)
{
    h->n = (int)n;
    h->a = calloc(n * n, sizeof(float));
    h->b = calloc(n * n, sizeof(float));
    h->c = calloc(n * n, sizeof(float));
    if (!h->a || !h->b || !h->c) return sl_fail(SL_ENOMEM, "no host memory for a %zu GEMM", n);
    for (size_t i = 0; i < n * n; i++) h->a[i] = h->b[i] = (float)(i % 7) * 0.1f;
    return SL_OK;
}

void sl__bench_host_gemm_free(struct sl__bench_host_gemm *h)
{
    free(h->a);
    free(h->b);
    free(h->c);
}

void sl__bench_host_gemm_run(const struct sl__bench_host_gemm *h)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, h->n, h->n, h->n, 1.0f, h->a, h->n, h->b,
                h->n, 0.0f, h->c, h->n);
}

/* reps OpenBLAS calls, timed by the host clock. */
int sl__bench_host_batch_run(void *p, int reps, double *seconds)
{
    double t0 = sl_now();
    for (int r = 0; r < reps; r++) sl__bench_host_gemm_run(p);
    *seconds = sl_now() - t0;
    return SL_OK;
}

/* The baseline runs in a child process, `sluice bench kernels --blas-only`, because OpenBLAS
 * picks its core once, when it loads: the child starts with OPENBLAS_CORETYPE=<the best core for
 * this CPU> (backends/cpu/cpu.h) unless OPENBLAS_CORETYPE is set, which it inherits. It prints
 * "core NAME", then answers each line "N MIN_TIME" on its stdin with the seconds per n x n GEMM
 * (sl__bench_best_batch's rule) until its stdin closes. Where the child cannot start, the baseline
 * is this process's OpenBLAS, and the output says so. */
struct sl__bench_blas_ref sl__bench_blas_ref;

/* OpenBLAS's threads spin for a while after a call (THREAD_TIMEOUT, about 0.1 s) before they
 * sleep; with the baseline in another process they would take cores from the next measurement.
 * So each side pauses before the other measures: 0.15 s, or twice the round's time if less (the
 * smoke test's tiny --min-time). */
static void blas_settle(double min_time)
{
    usleep((useconds_t)(1e6 * SL_MIN(0.15, 2.0 * min_time)));
}

int sl__bench_blas_only(void)
{
    printf("core %s\n", openblas_get_corename());
    fflush(stdout);
    struct sl__bench_host_gemm h = {0};
    size_t n;
    double min_time;
    int st = SL_OK;
    while (st == SL_OK && scanf("%zu %lf", &n, &min_time) == 2) {
        if (n != (size_t)h.n) {
            sl__bench_host_gemm_free(&h);
            st = sl__bench_host_gemm_init(&h, n);
            if (st != SL_OK) break;
            sl__bench_host_gemm_run(&h); /* warm-up: threads, page faults */
        }
        double sec = 0.0;
        st = sl__bench_best_batch(sl__bench_host_batch_run, &h, min_time, &sec);
        blas_settle(min_time);
        printf("%.9g\n", sec);
        fflush(stdout);
    }
    sl__bench_host_gemm_free(&h);
    return st == SL_OK ? 0 : sl_cli_error("bench kernels --blas-only", st);
}

void sl__bench_blas_ref_start(void)
{
    sl_cpu_blas b;
    sl_cpu_blas_detect(&b);
    const char *set = getenv("OPENBLAS_CORETYPE");
    if (set && b.set_by_sluice)
        snprintf(sl__bench_blas_ref.how, sizeof sl__bench_blas_ref.how,
                 "OPENBLAS_CORETYPE=%s, set by sluice: the library chose %s", set, b.fallback_of);
    else if (set)
        snprintf(sl__bench_blas_ref.how, sizeof sl__bench_blas_ref.how,
                 "OPENBLAS_CORETYPE=%s as set", set);
    else if (b.best[0])
        snprintf(sl__bench_blas_ref.how, sizeof sl__bench_blas_ref.how,
                 "OPENBLAS_CORETYPE=%s, the best core for this CPU", b.best);
    else
        snprintf(sl__bench_blas_ref.how, sizeof sl__bench_blas_ref.how, "OpenBLAS's own choice");
    int to[2], from[2];
    if (pipe(to) != 0) goto in_process;
    if (pipe(from) != 0) {
        close(to[0]), close(to[1]);
        goto in_process;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(to[0], 0);
        dup2(from[1], 1);
        close(to[0]), close(to[1]), close(from[0]), close(from[1]);
        if (!set && b.best[0]) setenv("OPENBLAS_CORETYPE", b.best, 0);
        execl("/proc/self/exe", "sluice", "bench", "kernels", "--blas-only", (char *)NULL);
        _exit(127);
    }
    close(to[0]), close(from[1]);
    if (pid < 0) {
        close(to[1]), close(from[0]);
        goto in_process;
    }
    sl__bench_blas_ref.pid = pid;
    sl__bench_blas_ref.to = fdopen(to[1], "w");
    sl__bench_blas_ref.from = fdopen(from[0], "r");
    if (sl__bench_blas_ref.to && sl__bench_blas_ref.from &&
        fscanf(sl__bench_blas_ref.from, "core %31s", sl__bench_blas_ref.core) == 1) {
        snprintf(sl__bench_blas_ref.how + strlen(sl__bench_blas_ref.how),
                 sizeof sl__bench_blas_ref.how - strlen(sl__bench_blas_ref.how),
                 ", in a child process");
        return;
    }
    sl_log(SL_LOG_WARN, "the OpenBLAS baseline's child process did not start: measuring "
                        "OpenBLAS in this process");
    if (sl__bench_blas_ref.to) fclose(sl__bench_blas_ref.to);
    if (sl__bench_blas_ref.from) fclose(sl__bench_blas_ref.from);
    waitpid(pid, NULL, 0);
    sl__bench_blas_ref.pid = 0;
in_process:
    snprintf(sl__bench_blas_ref.core, sizeof sl__bench_blas_ref.core, "%s", b.core);
    snprintf(sl__bench_blas_ref.how, sizeof sl__bench_blas_ref.how, "this process's own OpenBLAS");
}

void sl__bench_blas_ref_stop(void)
{
    if (!sl__bench_blas_ref.pid) return;
    fclose(sl__bench_blas_ref.to);
    fclose(sl__bench_blas_ref.from);
    waitpid(sl__bench_blas_ref.pid, NULL, 0);
    sl__bench_blas_ref.pid = 0;
}

/* Seconds per n x n OpenBLAS GEMM in the child, by sl__bench_best_batch over min_time. */
int sl__bench_blas_ref_time(size_t n, double min_time, double *seconds)
{
    blas_settle(min_time); /* this process's own OpenBLAS threads, after a cpu device GEMM */
    if (fprintf(sl__bench_blas_ref.to, "%zu %.9g\n", n, min_time) < 0 ||
        fflush(sl__bench_blas_ref.to) != 0 ||
        fscanf(sl__bench_blas_ref.from, "%lf", seconds) != 1 || !(*seconds > 0))
        return sl_fail(SL_EIO, "the OpenBLAS baseline's child process stopped answering");
    return SL_OK;
}
