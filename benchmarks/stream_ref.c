/*
 * stream_ref.c: a small C/OpenMP reference for hpcbench's cpu_membw probe.
 *
 * The four STREAM kernels (copy c=a, scale b=s*c, add c=a+b, triad a=b+s*c)
 * on float64 arrays, each loop "#pragma omp parallel for schedule(static)",
 * arrays first touched by the same static schedule. Bytes are counted as
 * STREAM counts them (copy/scale 16 B per element, add/triad 24 B); GB/s is
 * 1e9 B/s. The best rate over the timed iterations is reported per kernel.
 * After the loop the arrays are checked against the scalar recurrence
 * (average relative error below 1e-13 per array).
 *
 * Build: gcc -O3 -fopenmp -o stream_ref stream_ref.c
 * Usage: stream_ref ELEMENTS REPEATS [WARMUP [HUGEPAGES]]   threads: OMP_NUM_THREADS
 * HUGEPAGES=1 (default) aligns the arrays to 2 MiB and asks for transparent huge
 * pages with madvise(MADV_HUGEPAGE), as the probe does (THP_MEM_ALLOC_ENABLE).
 * Output: one JSON object on stdout. Exit status 0 valid, 1 invalid, 2 usage.
 */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#define NKERNELS 4
static const char *names[NKERNELS] = {"copy", "scale", "add", "triad"};
static const double moved[NKERNELS] = {2.0, 2.0, 3.0, 3.0};

/* One kernel over n elements (0 copy, 1 scale, 2 add, 3 triad), exported so that a benchmark can
 * load this file as a shared library and time it beside the probe's kernels on the same arrays. */
void stream_kernel(int kernel, double *restrict a, double *restrict b, double *restrict c, long n, double s) {
    switch (kernel) {
    case 0:
#pragma omp parallel for schedule(static)
        for (long j = 0; j < n; j++)
            c[j] = a[j];
        break;
    case 1:
#pragma omp parallel for schedule(static)
        for (long j = 0; j < n; j++)
            b[j] = s * c[j];
        break;
    case 2:
#pragma omp parallel for schedule(static)
        for (long j = 0; j < n; j++)
            c[j] = a[j] + b[j];
        break;
    default:
#pragma omp parallel for schedule(static)
        for (long j = 0; j < n; j++)
            a[j] = b[j] + s * c[j];
    }
}

static double avg_rel_err(const double *x, long n, double want) {
    double sum = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : sum)
    for (long j = 0; j < n; j++)
        sum += fabs(x[j] - want);
    return (sum / (double)n) / fabs(want);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s ELEMENTS REPEATS [WARMUP]\n", argv[0]);
        return 2;
    }
    long n = atol(argv[1]);
    int repeats = atoi(argv[2]);
    int warmup = argc > 3 ? atoi(argv[3]) : 1;
    int hugepages = argc > 4 ? atoi(argv[4]) : 1;
    if (n < 1 || repeats < 1 || warmup < 0) {
        fprintf(stderr, "ELEMENTS and REPEATS must be >= 1, WARMUP >= 0\n");
        return 2;
    }
    const size_t align = (size_t)2 << 20;
    size_t bytes = ((size_t)n * sizeof(double) + align - 1) / align * align;
    double *restrict a = aligned_alloc(align, bytes);
    double *restrict b = aligned_alloc(align, bytes);
    double *restrict c = aligned_alloc(align, bytes);
    if (!a || !b || !c) {
        fprintf(stderr, "cannot allocate 3 x %zu bytes\n", bytes);
        return 2;
    }
    if (hugepages) {
        madvise(a, bytes, MADV_HUGEPAGE);
        madvise(b, bytes, MADV_HUGEPAGE);
        madvise(c, bytes, MADV_HUGEPAGE);
    }
    const double s = 3.0;

#pragma omp parallel for schedule(static)
    for (long j = 0; j < n; j++) {
        a[j] = 1.0;
        b[j] = 2.0;
        c[j] = 0.0;
    }
#pragma omp parallel for schedule(static)
    for (long j = 0; j < n; j++)
        a[j] = 2.0 * a[j];

    double best[NKERNELS] = {0.0, 0.0, 0.0, 0.0};
    int iterations = warmup + repeats;
    for (int k = 0; k < iterations; k++) {
        double t[NKERNELS];
        t[0] = omp_get_wtime();
#pragma omp parallel for schedule(static)
        for (long j = 0; j < n; j++)
            c[j] = a[j];
        t[0] = omp_get_wtime() - t[0];

        t[1] = omp_get_wtime();
#pragma omp parallel for schedule(static)
        for (long j = 0; j < n; j++)
            b[j] = s * c[j];
        t[1] = omp_get_wtime() - t[1];

        t[2] = omp_get_wtime();
#pragma omp parallel for schedule(static)
        for (long j = 0; j < n; j++)
            c[j] = a[j] + b[j];
        t[2] = omp_get_wtime() - t[2];

        t[3] = omp_get_wtime();
#pragma omp parallel for schedule(static)
        for (long j = 0; j < n; j++)
            a[j] = b[j] + s * c[j];
        t[3] = omp_get_wtime() - t[3];

        if (k < warmup)
            continue;
        for (int i = 0; i < NKERNELS; i++) {
            double rate = moved[i] * sizeof(double) * (double)n / t[i] / 1e9;
            if (rate > best[i])
                best[i] = rate;
        }
    }

    /* the scalar recurrence the arrays must follow */
    double aj = 2.0, bj = 2.0, cj = 0.0;
    for (int k = 0; k < iterations; k++) {
        cj = aj;
        bj = s * cj;
        cj = aj + bj;
        aj = bj + s * cj;
    }
    double err[3] = {avg_rel_err(a, n, aj), avg_rel_err(b, n, bj), avg_rel_err(c, n, cj)};
    int valid = 1;
    double max_err = 0.0;
    for (int i = 0; i < 3; i++) {
        if (!(err[i] <= 1e-13))
            valid = 0;
        if (!isnan(max_err) && !(err[i] <= max_err))
            max_err = err[i]; /* a NaN sticks */
    }

    printf("{\"array_elements\": %ld, \"threads\": %d, \"repeats\": %d, \"warmup\": %d, \"hugepages\": %d, "
           "\"valid\": %s, ", n, omp_get_max_threads(), repeats, warmup, hugepages, valid ? "true" : "false");
    if (isfinite(max_err))
        printf("\"max_rel_err\": %.3e", max_err);
    else
        printf("\"max_rel_err\": null");
    for (int i = 0; i < NKERNELS; i++)
        printf(", \"%s\": %.6f", names[i], best[i]);
    printf("}\n");
    free(a);
    free(b);
    free(c);
    return valid ? 0 : 1;
}
