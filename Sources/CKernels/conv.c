#include "topiary_kernels.h"

#if defined(__AVX512F__)
#include <immintrin.h>

int topiary_conv_direct_available(void) { return 1; }

/* A block of MB output channels by V vectors of positions, summed in registers over every input
 * channel and tap, then stored once. */
static inline __attribute__((always_inline)) void block(const float *x, long c, long p, const long *shifts, const uint16_t *masks,
                                                        long taps, long vectors, const float *w, const float *bias, float *out,
                                                        long o0, long v0, const int MB, const int V) {
    __m512 acc[MB][V];
    for (int mi = 0; mi < MB; mi++) {
        __m512 b = _mm512_set1_ps(bias ? bias[o0 + mi] : 0.0f);
        for (int v = 0; v < V; v++) acc[mi][v] = b;
    }
    for (long i = 0; i < c; i++) {
        const float *plane = x + i * p;
        const float *wi = w + (o0 * c + i) * taps;
        for (long t = 0; t < taps; t++) {
            __m512 in[V];
            for (int v = 0; v < V; v++) {
                in[v] = _mm512_maskz_loadu_ps(masks[t * vectors + v0 + v], plane + shifts[t] + (v0 + v) * 16);
            }
            for (int mi = 0; mi < MB; mi++) {
                __m512 wv = _mm512_set1_ps(wi[mi * c * taps + t]);
                for (int v = 0; v < V; v++) acc[mi][v] = _mm512_fmadd_ps(wv, in[v], acc[mi][v]);
            }
        }
    }
    for (int mi = 0; mi < MB; mi++) {
        for (int v = 0; v < V; v++) {
            long q = (v0 + v) * 16;
            __mmask16 keep = p - q >= 16 ? 0xFFFF : (__mmask16)((1u << (p - q)) - 1);
            _mm512_mask_storeu_ps(out + (o0 + mi) * p + q, keep, acc[mi][v]);
        }
    }
}

void topiary_conv_direct(const float *x, long c, long p, const long *shifts, const uint16_t *masks, long taps,
                         const float *w, const float *bias, float *out, long m) {
    long vectors = (p + 15) / 16;
    long v0 = 0;
    /* Four vectors (64 positions) at a time with six output channels: 24 accumulators. */
    for (; v0 + 4 <= vectors; v0 += 4) {
        long o = 0;
        for (; o + 6 <= m; o += 6) block(x, c, p, shifts, masks, taps, vectors, w, bias, out, o, v0, 6, 4);
        for (; o < m; o++) block(x, c, p, shifts, masks, taps, vectors, w, bias, out, o, v0, 1, 4);
    }
    for (; v0 + 2 <= vectors; v0 += 2) {
        long o = 0;
        for (; o + 12 <= m; o += 12) block(x, c, p, shifts, masks, taps, vectors, w, bias, out, o, v0, 12, 2);
        for (; o < m; o++) block(x, c, p, shifts, masks, taps, vectors, w, bias, out, o, v0, 1, 2);
    }
    for (; v0 < vectors; v0++) {
        long o = 0;
        for (; o + 24 <= m; o += 24) block(x, c, p, shifts, masks, taps, vectors, w, bias, out, o, v0, 24, 1);
        for (; o < m; o++) block(x, c, p, shifts, masks, taps, vectors, w, bias, out, o, v0, 1, 1);
    }
}

#else

int topiary_conv_direct_available(void) { return 0; }

void topiary_conv_direct(const float *x, long c, long p, const long *shifts, const uint16_t *masks, long taps,
                         const float *w, const float *bias, float *out, long m) {
    (void)x; (void)c; (void)p; (void)shifts; (void)masks; (void)taps; (void)w; (void)bias; (void)out; (void)m;
}

#endif
