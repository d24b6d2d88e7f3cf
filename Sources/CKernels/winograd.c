/* Winograd F(2×2, 3×3) transforms (Lavin & Gray, "Fast Algorithms for Convolutional Neural
 * Networks", 2016) and their adjoints, for 3×3 stride-1 convolutions whose output is as large as
 * the input.
 *
 *   Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A      per 2×2 output tile, d its 4×4 input patch
 *
 *   Bᵀ = | 1  0 -1  0 |    G = | 1    0    0  |    Aᵀ = | 1  1  1  0 |
 *        | 0  1  1  0 |        | 1/2  1/2  1/2 |         | 0  1 -1 -1 |
 *        | 0 -1  1  0 |        | 1/2 -1/2  1/2 |
 *        | 0  1  0 -1 |        | 0    0    1  |
 *
 * Element ξ = 4a + b of a transformed tile is row a, column b. Channels are innermost in every
 * transformed array, padded to a multiple of 16 with zeros, so each transform is written once on
 * vectors of 16 channels (GCC/Clang vector extensions: one AVX-512 register, or four SSE ones in a
 * build for any x86-64). A sample's planes go through a channels-last scratch with a zero border.
 * The backward functions are the exact adjoints of the forward ones, so the gradients are those
 * of the convolution itself. */
#include "topiary_kernels.h"

#include <string.h>

typedef float v16 __attribute__((vector_size(64), aligned(4)));

static inline v16 load(const float *p) { return *(const v16 *)p; }
static inline void store(float *p, v16 v) { *(v16 *)p = v; }

static inline long tiles_of(long n) { return (n + 1) / 2; }
static inline long padded16(long n) { return (n + 15) / 16 * 16; }

long topiary_wino_channels(long c) { return padded16(c); }

/* The 16 matrices of a transformed array lie one cache line further apart than their size: at
 * power-of-two sizes the 16 stores of a tile would otherwise all fall in one cache set. */
long topiary_wino_stride(long rows, long cols) { return rows * padded16(cols) + 16; }

long topiary_wino_scratch(long h, long w, long c, long m) {
    long th = tiles_of(h), tw = tiles_of(w);
    long in = (2 * th + 2) * (2 * tw + 2) * padded16(c), out = 4 * th * tw * padded16(m);
    return (in > out ? in : out) + 16;
}

/* Weights [m][c][3][3] → U[ξ][o][i] (rows of mp = padded m, columns of cp = padded c), output
 * channels o0 ..< o1. Sixteen input channels at a time: their 16 × 9 weights (contiguous) are
 * laid out tap by tap in a small block, transformed as vectors and stored along the row. */
void topiary_wino_weights(const float *w, long m, long c, long o0, long o1, float *u) {
    long cp = padded16(c), xs = topiary_wino_stride(padded16(m), c);
    for (long o = o0; o < o1; o++) {
        const float *src = w + o * c * 9;
        float *row = u + o * cp;
        for (long ib = 0; ib < c; ib += 16) {
            long count = c - ib < 16 ? c - ib : 16;
            float g[9][16] __attribute__((aligned(64)));
            if (count < 16) memset(g, 0, sizeof g);  /* U's padding columns stay zero */
            /* Scalar on purpose: the vectorizer's gathers here ran slower than plain moves. */
#pragma clang loop vectorize(disable)
            for (long l = 0; l < count; l++) for (int k = 0; k < 9; k++) g[k][l] = src[(ib + l) * 9 + k];
            v16 hh[4][3];
            for (int s = 0; s < 3; s++) {
                v16 g0 = load(g[s]), g1 = load(g[3 + s]), g2 = load(g[6 + s]);
                hh[0][s] = g0;
                hh[1][s] = 0.5f * (g0 + g1 + g2);
                hh[2][s] = 0.5f * (g0 - g1 + g2);
                hh[3][s] = g2;
            }
            for (int a = 0; a < 4; a++) {
                store(row + (4 * a + 0) * xs + ib, hh[a][0]);
                store(row + (4 * a + 1) * xs + ib, 0.5f * (hh[a][0] + hh[a][1] + hh[a][2]));
                store(row + (4 * a + 2) * xs + ib, 0.5f * (hh[a][0] - hh[a][1] + hh[a][2]));
                store(row + (4 * a + 3) * xs + ib, hh[a][2]);
            }
        }
    }
}

/* gw[o][i][3][3] += Gᵀ dU[ξ][o][i] G, output channels o0 ..< o1. */
void topiary_wino_weights_grad(const float *du, long m, long c, long o0, long o1, float *gw) {
    long cp = padded16(c), xs = topiary_wino_stride(padded16(m), c);
    for (long o = o0; o < o1; o++) {
        const float *row = du + o * cp;
        float *dst = gw + o * c * 9;
        for (long ib = 0; ib < c; ib += 16) {
            long count = c - ib < 16 ? c - ib : 16;
            v16 e[4][3];
            for (int a = 0; a < 4; a++) {
                v16 d0 = load(row + (4 * a) * xs + ib), d1 = load(row + (4 * a + 1) * xs + ib);
                v16 d2 = load(row + (4 * a + 2) * xs + ib), d3 = load(row + (4 * a + 3) * xs + ib);
                e[a][0] = d0 + 0.5f * (d1 + d2);
                e[a][1] = 0.5f * (d1 - d2);
                e[a][2] = 0.5f * (d1 + d2) + d3;
            }
            float g[9][16] __attribute__((aligned(64)));
            for (int s = 0; s < 3; s++) {
                store(g[s], e[0][s] + 0.5f * (e[1][s] + e[2][s]));
                store(g[3 + s], 0.5f * (e[1][s] - e[2][s]));
                store(g[6 + s], 0.5f * (e[1][s] + e[2][s]) + e[3][s]);
            }
#pragma clang loop vectorize(disable)
            for (long l = 0; l < count; l++) for (int k = 0; k < 9; k++) dst[(ib + l) * 9 + k] += g[k][l];
        }
    }
}

/* Bᵀ applied along one axis of four vectors. */
#define BT(d0, d1, d2, d3, o0, o1, o2, o3) do { o0 = (d0) - (d2); o1 = (d1) + (d2); o2 = (d2) - (d1); o3 = (d1) - (d3); } while (0)

void topiary_wino_input(const float *x, long c, long h, long w, long ph, long pw, float *v, long ldt, long t0, float *scratch) {
    long th = tiles_of(h), tw = tiles_of(w), stride = 2 * tw + 2, cp = padded16(c), xs = topiary_wino_stride(ldt, c);
    float *pp = scratch;
    memset(pp, 0, (size_t)((2 * th + 2) * stride * cp) * sizeof(float));
    for (long ch = 0; ch < c; ch++) {
        const float *plane = x + ch * h * w;
        for (long r = 0; r < h; r++) {
            float *line = pp + ((r + ph) * stride + pw) * cp + ch;
            for (long q = 0; q < w; q++) line[q * cp] = plane[r * w + q];
        }
    }
    for (long ty = 0; ty < th; ty++) {
        for (long tx = 0; tx < tw; tx++) {
            const float *base = pp + (2 * ty * stride + 2 * tx) * cp;
            float *out = v + (t0 + ty * tw + tx) * cp;
            for (long ch = 0; ch < cp; ch += 16) {
                v16 t[4][4];
                for (int j = 0; j < 4; j++) {
                    const float *col = base + j * cp + ch;
                    BT(load(col), load(col + stride * cp), load(col + 2 * stride * cp), load(col + 3 * stride * cp), t[0][j], t[1][j], t[2][j], t[3][j]);
                }
                for (int a = 0; a < 4; a++) {
                    v16 v0, v1, v2, v3;
                    BT(t[a][0], t[a][1], t[a][2], t[a][3], v0, v1, v2, v3);
                    store(out + (4 * a + 0) * xs + ch, v0);
                    store(out + (4 * a + 1) * xs + ch, v1);
                    store(out + (4 * a + 2) * xs + ch, v2);
                    store(out + (4 * a + 3) * xs + ch, v3);
                }
            }
        }
    }
}

void topiary_wino_input_grad(const float *dv, long c, long h, long w, long ph, long pw, long ldt, long t0, float *gx, float *scratch) {
    long th = tiles_of(h), tw = tiles_of(w), stride = 2 * tw + 2, cp = padded16(c), xs = topiary_wino_stride(ldt, c);
    float *pp = scratch;
    memset(pp, 0, (size_t)((2 * th + 2) * stride * cp) * sizeof(float));
    for (long ty = 0; ty < th; ty++) {
        for (long tx = 0; tx < tw; tx++) {
            float *base = pp + (2 * ty * stride + 2 * tx) * cp;
            const float *in = dv + (t0 + ty * tw + tx) * cp;
            for (long ch = 0; ch < cp; ch += 16) {
                /* B dV Bᵀ: along columns, then rows, added onto the patch (tiles overlap). */
                v16 e[4][4];
                for (int a = 0; a < 4; a++) {
                    v16 d0 = load(in + (4 * a) * xs + ch), d1 = load(in + (4 * a + 1) * xs + ch);
                    v16 d2 = load(in + (4 * a + 2) * xs + ch), d3 = load(in + (4 * a + 3) * xs + ch);
                    e[a][0] = d0;
                    e[a][1] = d1 - d2 + d3;
                    e[a][2] = d2 + d1 - d0;
                    e[a][3] = -d3;
                }
                for (int s = 0; s < 4; s++) {
                    float *col = base + s * cp + ch;
                    store(col, load(col) + e[0][s]);
                    store(col + stride * cp, load(col + stride * cp) + e[1][s] - e[2][s] + e[3][s]);
                    store(col + 2 * stride * cp, load(col + 2 * stride * cp) + e[2][s] + e[1][s] - e[0][s]);
                    store(col + 3 * stride * cp, load(col + 3 * stride * cp) - e[3][s]);
                }
            }
        }
    }
    for (long ch = 0; ch < c; ch++) {
        float *plane = gx + ch * h * w;
        for (long r = 0; r < h; r++) {
            const float *line = pp + ((r + ph) * stride + pw) * cp + ch;
            for (long q = 0; q < w; q++) plane[r * w + q] += line[q * cp];
        }
    }
}

void topiary_wino_output(const float *mo, long m, long h, long w, long ldt, long t0, const float *bias, float *y, float *scratch) {
    long th = tiles_of(h), tw = tiles_of(w), wide = 2 * tw, mp = padded16(m), xs = topiary_wino_stride(ldt, m);
    float *qq = scratch;  /* [2th][2tw][mp] */
    for (long ty = 0; ty < th; ty++) {
        for (long tx = 0; tx < tw; tx++) {
            const float *in = mo + (t0 + ty * tw + tx) * mp;
            float *top = qq + (2 * ty * wide + 2 * tx) * mp, *bottom = top + wide * mp;
            for (long o = 0; o < mp; o += 16) {
                v16 s[2][4];
                for (int b = 0; b < 4; b++) {
                    v16 m0 = load(in + b * xs + o), m1 = load(in + (4 + b) * xs + o), m2 = load(in + (8 + b) * xs + o), m3 = load(in + (12 + b) * xs + o);
                    s[0][b] = m0 + m1 + m2;
                    s[1][b] = m1 - m2 - m3;
                }
                store(top + o, s[0][0] + s[0][1] + s[0][2]);
                store(top + mp + o, s[0][1] - s[0][2] - s[0][3]);
                store(bottom + o, s[1][0] + s[1][1] + s[1][2]);
                store(bottom + mp + o, s[1][1] - s[1][2] - s[1][3]);
            }
        }
    }
    for (long o = 0; o < m; o++) {
        float b = bias ? bias[o] : 0.0f, *plane = y + o * h * w;
        for (long r = 0; r < h; r++) {
            const float *line = qq + r * wide * mp + o;
            for (long q = 0; q < w; q++) plane[r * w + q] = line[q * mp] + b;
        }
    }
}

void topiary_wino_output_grad(const float *gy, long m, long h, long w, long ldt, long t0, float *dmo, float *scratch) {
    long th = tiles_of(h), tw = tiles_of(w), wide = 2 * tw, mp = padded16(m), xs = topiary_wino_stride(ldt, m);
    float *qq = scratch;  /* [2th][2tw][mp], zero past the image and in the padding channels */
    memset(qq, 0, (size_t)(4 * th * tw * mp) * sizeof(float));
    for (long o = 0; o < m; o++) {
        const float *plane = gy + o * h * w;
        for (long r = 0; r < h; r++) {
            float *line = qq + r * wide * mp + o;
            for (long q = 0; q < w; q++) line[q * mp] = plane[r * w + q];
        }
    }
    for (long ty = 0; ty < th; ty++) {
        for (long tx = 0; tx < tw; tx++) {
            const float *top = qq + (2 * ty * wide + 2 * tx) * mp, *bottom = top + wide * mp;
            float *out = dmo + (t0 + ty * tw + tx) * mp;
            for (long o = 0; o < mp; o += 16) {
                v16 g00 = load(top + o), g01 = load(top + mp + o), g10 = load(bottom + o), g11 = load(bottom + mp + o);
                /* The adjoint of Aᵀ · A: along columns, then rows. */
                v16 s[2][4] = {{g00, g00 + g01, g00 - g01, -g01}, {g10, g10 + g11, g10 - g11, -g11}};
                for (int b = 0; b < 4; b++) {
                    store(out + b * xs + o, s[0][b]);
                    store(out + (4 + b) * xs + o, s[0][b] + s[1][b]);
                    store(out + (8 + b) * xs + o, s[0][b] - s[1][b]);
                    store(out + (12 + b) * xs + o, -s[1][b]);
                }
            }
        }
    }
}
