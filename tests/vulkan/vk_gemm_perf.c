/* GEMM GFLOP/s at one size on every Vulkan device, against the device's FMA peak and against
 * OpenBLAS (the CPU backend) in the same run:  vk_gemm_perf [size] [reps] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/backend.h"

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* GFLOP per second of process CPU time, a figure that other load on the machine disturbs less
 * than wall time (multiply by the cores the driver uses for a wall figure). */
static double g_cpu_rate;

static double time_gemm(sl_device *dev, size_t s, int reps, bool ta, bool tb)
{
    sl_buffer *a, *b, *c;
    if (sl_buffer_alloc(dev, s * s * 4, &a) || sl_buffer_alloc(dev, s * s * 4, &b) ||
        sl_buffer_alloc(dev, s * s * 4, &c))
        return -1.0;
    float *h = malloc(s * s * 4);
    for (size_t i = 0; i < s * s; i++) h[i] = (float)(i % 17) * 0.1f;
    sl_buffer_upload(a, 0, h, s * s * 4);
    sl_buffer_upload(b, 0, h, s * s * 4);
    free(h);
    sl_gemm(dev, ta, tb, s, s, s, 1.0f, a, b, 0.0f, c); /* warm-up */
    sl_device_finish(dev);
    /* Best of `reps` single runs: this machine is shared, so the fastest run is the one least
     * disturbed by other work. */
    double best_ms = 1e30;
    double c0 = cpu_seconds();
    for (int r = 0; r < reps; r++) {
        sl_event *e0, *e1;
        sl_event_record(dev, &e0);
        sl_gemm(dev, ta, tb, s, s, s, 1.0f, a, b, 0.0f, c);
        sl_event_record(dev, &e1);
        double ms = 0.0;
        if (sl_event_elapsed_ms(e0, e1, &ms) == SL_OK && ms > 0.0 && ms < best_ms) best_ms = ms;
        sl_event_free(e0), sl_event_free(e1);
    }
    double ms = best_ms;
    g_cpu_rate = 2.0 * (double)s * s * s * reps / (cpu_seconds() - c0) * 1e-9;
    sl_buffer_free(a), sl_buffer_free(b), sl_buffer_free(c);
    return 2.0 * (double)s * s * s / (ms * 1e-3) * 1e-9;
}

int main(int argc, char **argv)
{
    size_t s = argc > 1 ? (size_t)atoi(argv[1]) : 1024;
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    const sl_device_info *infos;
    size_t count;
    sl_device_list(&infos, &count);
    /* PEAK_ONLY=1: only the FMA peak, three times per device (for tuning the peak kernel). */
    bool peak_only = getenv("PEAK_ONLY") != NULL;
    double blas = 1.0;
    if (!peak_only) {
        sl_device *cpu;
        if (sl_device_open("cpu", &cpu) != SL_OK) return 1;
        blas = time_gemm(cpu, s, reps, false, false);
        printf("cpu (OpenBLAS) gemm %zu: %.1f GFLOP/s\n", s, blas);
        sl_device_close(cpu);
    }
    for (size_t i = 0; i < count; i++) {
        if (strcmp(infos[i].backend, "vulkan")) continue;
        sl_device *dev;
        if (sl_device_open(infos[i].id, &dev) != SL_OK) {
            fprintf(stderr, "%s\n", sl_last_error());
            continue;
        }
        double peak = 0.0;
        sl_device_peak_gflops(dev, &peak);
        printf("%s %s: FMA peak %.1f GFLOP/s\n", infos[i].id, infos[i].name, peak);
        for (int r = 0; peak_only && r < 2; r++) {
            sl_device_peak_gflops(dev, &peak);
            printf("  again: %.1f GFLOP/s\n", peak);
        }
        if (peak_only) {
            sl_device_close(dev);
            continue;
        }
        int nt = getenv("NN_ONLY") ? 1 : 4;
        for (int t = 0; t < nt; t++) {
            double g = time_gemm(dev, s, reps, t & 1, t & 2);
            printf("  gemm %c%c %zu: %.1f GFLOP/s = %.1f%% of peak, %.2fx OpenBLAS (%.1f GFLOP "
                   "per CPU second)\n",
                   t & 1 ? 'T' : 'N', t & 2 ? 'T' : 'N', s, g, 100.0 * g / peak, g / blas,
                   g_cpu_rate);
        }
        sl_device_close(dev);
    }
    return 0;
}
