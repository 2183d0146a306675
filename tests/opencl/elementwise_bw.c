/* A measuring tool, not a test: GB/s of the elementwise kernels on an OpenCL device against
 * sl_buffer_copy on the same device, timed with device events (best of 5, 16M floats).
 *   opencl_elementwise_bw [device]        (default opencl:0)
 * Bytes moved: copy 8, axpy 12, scale 8, fill 4, gelu/relu 8 per element. Also prints the
 * device's FMA peak (sl_device_peak_gflops). */
#include <stdio.h>

#include "backends/backend.h"
static double timeit(sl_device *d, int which, sl_buffer *x, sl_buffer *y, size_t n)
{
    double best = 1e9;
    for (int r = 0; r < 5; r++) {
        sl_event *e0, *e1;
        sl_event_record(d, &e0);
        switch (which) {
        case 0:
            sl_buffer_copy(y, 0, x, 0, n * 4);
            break;
        case 1:
            sl_axpy(d, n, 0.5f, x, y);
            break;
        case 2:
            sl_scale(d, n, 0.5f, x);
            break;
        case 3:
            sl_fill(d, n, 0.5f, x);
            break;
        case 4:
            sl_act_forward(d, SL_ACT_GELU, n, x, y);
            break;
        case 5:
            sl_act_forward(d, SL_ACT_RELU, n, x, y);
            break;
        }
        sl_event_record(d, &e1);
        double ms;
        sl_event_elapsed_ms(e0, e1, &ms);
        sl_event_free(e0);
        sl_event_free(e1);
        if (ms < best) best = ms;
    }
    return best;
}
int main(int argc, char **argv)
{
    sl_device *d;
    if (sl_device_open(argc > 1 ? argv[1] : "opencl:0", &d)) {
        puts(sl_last_error());
        return 1;
    }
    size_t n = 16 << 20;
    sl_buffer *x, *y;
    sl_buffer_alloc(d, n * 4, &x);
    sl_buffer_alloc(d, n * 4, &y);
    const char *names[] = {"copy", "axpy", "scale", "fill", "gelu", "relu"};
    double bytes[] = {8, 12, 8, 4, 8, 8};
    double copy = 0;
    for (int w = 0; w < 6; w++) {
        double ms = timeit(d, w, x, y, n);
        double gbs = bytes[w] * n / ms * 1e-6;
        if (w == 0) copy = gbs;
        printf("%-6s %7.2f ms %7.1f GB/s  %.2fx copy\n", names[w], ms, gbs, gbs / copy);
    }
    double g;
    sl_device_peak_gflops(d, &g);
    printf("peak %.1f GFLOP/s\n", g);
    sl_buffer_free(x);
    sl_buffer_free(y);
    sl_device_close(d);
}
