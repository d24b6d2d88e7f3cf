/* A product with few columns (a convolution of one sample on a map of a few positions): every
 * weight is read once, straight from the row, and meets all the columns while in a register.
 * A general GEMM would first copy (pack) the weights, doubling the memory traffic of a product
 * that is nothing but memory traffic. */
#include "topiary_kernels.h"
#include "vec16.h"

/* N columns known at compile time, so that the accumulators live in registers. */
static inline __attribute__((always_inline)) void rows(const int N, const float *w, long m, long k, const float *bt, const float *bias,
                                                       float *out, long ldo) {
    long whole = k / 16 * 16;
    for (long o = 0; o < m; o++) {
        const float *row = w + o * k;
        v16 acc[N];
        for (int q = 0; q < N; q++) acc[q] = (v16){0};
        for (long kk = 0; kk < whole; kk += 16) {
            v16 wv = load(row + kk);
            for (int q = 0; q < N; q++) acc[q] += wv * load(bt + q * k + kk);
        }
        for (int q = 0; q < N; q++) {
            float s = 0;
            for (int l = 0; l < 16; l++) s += acc[q][l];
            for (long kk = whole; kk < k; kk++) s += row[kk] * bt[q * k + kk];
            out[o * ldo + q] = s + (bias ? bias[o] : 0.0f);
        }
    }
}

void topiary_skinny(const float *w, long m, long k, const float *bt, long n, const float *bias, float *out, long ldo) {
    switch (n) {
    case 1: rows(1, w, m, k, bt, bias, out, ldo); break;
    case 2: rows(2, w, m, k, bt, bias, out, ldo); break;
    case 3: rows(3, w, m, k, bt, bias, out, ldo); break;
    case 4: rows(4, w, m, k, bt, bias, out, ldo); break;
    case 5: rows(5, w, m, k, bt, bias, out, ldo); break;
    case 6: rows(6, w, m, k, bt, bias, out, ldo); break;
    case 7: rows(7, w, m, k, bt, bias, out, ldo); break;
    case 8: rows(8, w, m, k, bt, bias, out, ldo); break;
    default: break;
    }
}
