/* Winograd minimal filtering F(2×2, 3×3) and F(4×4, 3×3) (Lavin & Gray, "Fast Algorithms for
 * Convolutional Neural Networks", 2016) and the adjoints of its transforms, for 3×3 stride-1
 * convolutions whose output is as large as the input. Per R×R output tile (R = 2 or 4) and its
 * N×N input patch d (N = R + 2):
 *
 *   Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A
 *
 * with the matrices below (interpolation points 0, ±1 for F(2, 3); 0, ±1, ±2 for F(4, 3)).
 * Element ξ = N·a + b of a transformed tile is row a, column b. Each transform is written once,
 * generically over the tile size, on vectors of 16 channels: channels are innermost in every
 * transformed array, padded to a multiple of 16 with zeros (GCC/Clang vector extensions: one
 * AVX-512 register, or four SSE ones in a build for any x86-64). The matrices are constants in
 * fully unrolled loops, so the compiler keeps only their non-zero terms. A sample's planes go
 * through a channels-last scratch with a zero border, copied in and out by scalar moves (the
 * vectorizer's gathers and scatters there ran slower). The backward functions are the exact
 * adjoints of the forward ones, so the gradients are those of the convolution itself. */
#include "topiary_kernels.h"

#include <string.h>

#include "vec16.h"

static const float BT2[6][6] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
/* G is N × 3, stored in rows of six like the others so that one product routine serves all. */
static const float G2[6][6] = {{1, 0, 0}, {0.5f, 0.5f, 0.5f}, {0.5f, -0.5f, 0.5f}, {0, 0, 1}};
static const float AT2[4][6] = {{1, 1, 1, 0}, {0, 1, -1, -1}};

static const float BT4[6][6] = {
    {4, 0, -5, 0, 1, 0}, {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0}, {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
static const float G4[6][6] = {
    {1.0f / 4, 0, 0}, {-1.0f / 6, -1.0f / 6, -1.0f / 6}, {-1.0f / 6, 1.0f / 6, -1.0f / 6},
    {1.0f / 24, 1.0f / 12, 1.0f / 6}, {1.0f / 24, -1.0f / 12, 1.0f / 6}, {0, 0, 1}};
static const float AT4[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};

#define INLINE static inline __attribute__((always_inline))

/* out[i] = Σ_j m[i][j] · in[j] (transpose: Σ_j m[j][i] · in[j]) for constant m. Sums start at
 * −0, which the compiler may drop (−0 + x = x), and skip zero coefficients. */
INLINE void mul(const int rows, const int cols, const float (*m)[6], int transpose, const v16 *in, v16 *out) {
    for (int i = 0; i < rows; i++) {
        v16 acc = -(v16){0};
        for (int j = 0; j < cols; j++) {
            float k = transpose ? m[j][i] : m[i][j];
            if (k == 1.0f) acc += in[j];
            else if (k == -1.0f) acc -= in[j];
            else if (k != 0.0f) acc += k * in[j];
        }
        out[i] = acc;
    }
}

/* out = M · in · Mᵀ for M (rows × cols) and in (cols × cols), or with `transpose` Mᵀ · in · M
 * for M (cols × rows): along columns, then along rows. */
INLINE void sandwich(const int rows, const int cols, const float (*m)[6], int transpose, v16 in[6][6], v16 out[6][6]) {
    v16 t[6][6];
    for (int j = 0; j < cols; j++) {
        v16 col[6], o[6];
        for (int i = 0; i < cols; i++) col[i] = in[i][j];
        mul(rows, cols, m, transpose, col, o);
        for (int a = 0; a < rows; a++) t[a][j] = o[a];
    }
    for (int a = 0; a < rows; a++) mul(rows, cols, m, transpose, t[a], out[a]);
}

static inline long tiles_of(long n, long r) { return (n + r - 1) / r; }
static inline long padded16(long n) { return (n + 15) / 16 * 16; }

long topiary_wino_channels(long c) { return padded16(c); }

/* The matrices of a transformed array lie one cache line further apart than their size: at
 * power-of-two sizes the stores of a tile would otherwise all fall in one cache set. */
long topiary_wino_stride(long rows, long cols) { return rows * padded16(cols) + 16; }

/* Each transform has a scratch of its own: the forward input copy and the output-gradient
 * copy are only ever written where the image is, in the real channels, so their borders,
 * cropped edges and padding channels stay zero from the (zeroed) allocation, and they are not
 * cleared per call. */
long topiary_wino_scratch_in(long tile, long h, long w, long c) {
    return padded16((tiles_of(h, tile) * tile + 2) * (tiles_of(w, tile) * tile + 2) * padded16(c));
}
long topiary_wino_scratch_out(long tile, long h, long w, long m) {
    return padded16(tiles_of(h, tile) * tile * tiles_of(w, tile) * tile * padded16(m));
}

/* Weights [m][c][3][3] → U[ξ][o][i] (rows of mp = padded m, columns of cp = padded c), output
 * channels o0 ..< o1. Sixteen input channels at a time: their 16 × 9 weights (contiguous) are
 * laid out tap by tap in a small block, transformed as vectors and stored along the row. */
INLINE void weights(const int R, const float *w, long m, long c, long o0, long o1, float *u) {
    const int N = R + 2;
    const float (*G)[6] = R == 2 ? G2 : G4;
    long cp = padded16(c), xs = topiary_wino_stride(padded16(m), c);
    for (long o = o0; o < o1; o++) {
        const float *src = w + o * c * 9;
        float *row = u + o * cp;
        for (long ib = 0; ib < c; ib += 16) {
            long count = c - ib < 16 ? c - ib : 16;
            float g[9][16] __attribute__((aligned(64)));
            if (count < 16) memset(g, 0, sizeof g);  /* U's padding columns stay zero */
#pragma clang loop vectorize(disable)
            for (long l = 0; l < count; l++) for (int k = 0; k < 9; k++) g[k][l] = src[(ib + l) * 9 + k];
            v16 hh[6][3];  /* G g: N rows of three */
            for (int s = 0; s < 3; s++) {
                v16 col[3] = {load(g[s]), load(g[3 + s]), load(g[6 + s])}, out[6];
                mul(N, 3, G, 0, col, out);
                for (int a = 0; a < N; a++) hh[a][s] = out[a];
            }
            for (int a = 0; a < N; a++) {
                v16 out[6];
                mul(N, 3, G, 0, hh[a], out);
                for (int b = 0; b < N; b++) store(row + (N * a + b) * xs + ib, out[b]);
            }
        }
    }
}

/* gw[o][i][3][3] += Gᵀ dU[ξ][o][i] G, output channels o0 ..< o1. */
INLINE void weights_grad(const int R, const float *du, long m, long c, long o0, long o1, float *gw) {
    const int N = R + 2;
    const float (*G)[6] = R == 2 ? G2 : G4;
    long cp = padded16(c), xs = topiary_wino_stride(padded16(m), c);
    for (long o = o0; o < o1; o++) {
        const float *row = du + o * cp;
        float *dst = gw + o * c * 9;
        for (long ib = 0; ib < c; ib += 16) {
            long count = c - ib < 16 ? c - ib : 16;
            v16 e[6][3];  /* dU G: N rows of three */
            for (int a = 0; a < N; a++) {
                v16 d[6];
                for (int b = 0; b < N; b++) d[b] = load(row + (N * a + b) * xs + ib);
                mul(3, N, G, 1, d, e[a]);
            }
            float g[9][16] __attribute__((aligned(64)));
            for (int s = 0; s < 3; s++) {
                v16 col[6], out[3];
                for (int a = 0; a < N; a++) col[a] = e[a][s];
                mul(3, N, G, 1, col, out);
                for (int r = 0; r < 3; r++) store(g[3 * r + s], out[r]);
            }
#pragma clang loop vectorize(disable)
            for (long l = 0; l < count; l++) for (int k = 0; k < 9; k++) dst[(ib + l) * 9 + k] += g[k][l];
        }
    }
}

/* Copies c planes of h × w into rows of `row` positions of `cp` interleaved channels, from `dst`
 * (the caller offsets it to the first row and column inside any border). */
INLINE void channels_last(const float *x, long c, long h, long w, float *dst, long row, long cp) {
    for (long ch = 0; ch < c; ch++) {
        const float *plane = x + ch * h * w;
        for (long r = 0; r < h; r++) {
            float *line = dst + r * row * cp + ch;
#pragma clang loop vectorize(disable)
            for (long q = 0; q < w; q++) line[q * cp] = plane[r * w + q];
        }
    }
}

INLINE void input(const int R, const float *x, long c, long h, long w, long ph, long pw, float *v, long ldt, long t0, float *scratch) {
    const int N = R + 2;
    const float (*BT)[6] = R == 2 ? BT2 : BT4;
    long th = tiles_of(h, R), tw = tiles_of(w, R), stride = tw * R + 2, cp = padded16(c), xs = topiary_wino_stride(ldt, c);
    float *pp = scratch;  /* border and padding channels zero since allocation */
    channels_last(x, c, h, w, pp + (ph * stride + pw) * cp, stride, cp);
    for (long ty = 0; ty < th; ty++) {
        for (long tx = 0; tx < tw; tx++) {
            const float *base = pp + (ty * R * stride + tx * R) * cp;
            float *out = v + (t0 + ty * tw + tx) * cp;
            for (long ch = 0; ch < cp; ch += 16) {
                v16 d[6][6], o[6][6];  /* Bᵀ d B */
                for (int i = 0; i < N; i++) for (int j = 0; j < N; j++) d[i][j] = load(base + (i * stride + j) * cp + ch);
                sandwich(N, N, BT, 0, d, o);
                for (int a = 0; a < N; a++) for (int b = 0; b < N; b++) store(out + (N * a + b) * xs + ch, o[a][b]);
            }
        }
    }
}

INLINE void input_grad(const int R, const float *dv, long c, long h, long w, long ph, long pw, long ldt, long t0, float *gx, float *scratch) {
    const int N = R + 2;
    const float (*BT)[6] = R == 2 ? BT2 : BT4;
    long th = tiles_of(h, R), tw = tiles_of(w, R), stride = tw * R + 2, cp = padded16(c), xs = topiary_wino_stride(ldt, c);
    float *pp = scratch;  /* an accumulator, cleared per call */
    memset(pp, 0, (size_t)((th * R + 2) * stride * cp) * sizeof(float));
    for (long ty = 0; ty < th; ty++) {
        for (long tx = 0; tx < tw; tx++) {
            float *base = pp + (ty * R * stride + tx * R) * cp;
            const float *in = dv + (t0 + ty * tw + tx) * cp;
            for (long ch = 0; ch < cp; ch += 16) {
                /* B dV Bᵀ, added onto the patch (tiles overlap). */
                v16 d[6][6], o[6][6];
                for (int a = 0; a < N; a++) for (int b = 0; b < N; b++) d[a][b] = load(in + (N * a + b) * xs + ch);
                sandwich(N, N, BT, 1, d, o);
                for (int r = 0; r < N; r++) {
                    for (int s = 0; s < N; s++) {
                        float *p = base + (r * stride + s) * cp + ch;
                        store(p, load(p) + o[r][s]);
                    }
                }
            }
        }
    }
    for (long ch = 0; ch < c; ch++) {
        float *plane = gx + ch * h * w;
        for (long r = 0; r < h; r++) {
            const float *line = pp + ((r + ph) * stride + pw) * cp + ch;
#pragma clang loop vectorize(disable)
            for (long q = 0; q < w; q++) plane[r * w + q] += line[q * cp];
        }
    }
}

INLINE void output(const int R, const float *mo, long m, long h, long w, long ldt, long t0, const float *bias, float *y, float *scratch) {
    const int N = R + 2;
    const float (*AT)[6] = R == 2 ? AT2 : AT4;
    long th = tiles_of(h, R), tw = tiles_of(w, R), wide = tw * R, mp = padded16(m), xs = topiary_wino_stride(ldt, m);
    float *qq = scratch;  /* [th·R][tw·R][mp] */
    for (long ty = 0; ty < th; ty++) {
        for (long tx = 0; tx < tw; tx++) {
            const float *in = mo + (t0 + ty * tw + tx) * mp;
            float *base = qq + (ty * R * wide + tx * R) * mp;
            for (long o = 0; o < mp; o += 16) {
                v16 d[6][6], y[6][6];  /* Aᵀ M A */
                for (int a = 0; a < N; a++) for (int b = 0; b < N; b++) d[a][b] = load(in + (N * a + b) * xs + o);
                sandwich(R, N, AT, 0, d, y);
                for (int p = 0; p < R; p++) for (int q = 0; q < R; q++) store(base + (p * wide + q) * mp + o, y[p][q]);
            }
        }
    }
    for (long o = 0; o < m; o++) {
        float b = bias ? bias[o] : 0.0f, *plane = y + o * h * w;
        for (long r = 0; r < h; r++) {
            const float *line = qq + r * wide * mp + o;
#pragma clang loop vectorize(disable)
            for (long q = 0; q < w; q++) plane[r * w + q] = line[q * mp] + b;
        }
    }
}

INLINE void output_grad(const int R, const float *gy, long m, long h, long w, long ldt, long t0, float *dmo, float *scratch) {
    const int N = R + 2;
    const float (*AT)[6] = R == 2 ? AT2 : AT4;
    long th = tiles_of(h, R), tw = tiles_of(w, R), wide = tw * R, mp = padded16(m), xs = topiary_wino_stride(ldt, m);
    /* [th·R][tw·R][mp], zero past the image and in the padding channels since allocation. */
    float *qq = scratch;
    channels_last(gy, m, h, w, qq, wide, mp);
    for (long ty = 0; ty < th; ty++) {
        for (long tx = 0; tx < tw; tx++) {
            const float *base = qq + (ty * R * wide + tx * R) * mp;
            float *out = dmo + (t0 + ty * tw + tx) * mp;
            for (long o = 0; o < mp; o += 16) {
                v16 g[6][6], d[6][6];  /* the adjoint of Aᵀ · A: A dY Aᵀ */
                for (int p = 0; p < R; p++) for (int q = 0; q < R; q++) g[p][q] = load(base + (p * wide + q) * mp + o);
                sandwich(N, R, AT, 1, g, d);
                for (int a = 0; a < N; a++) for (int b = 0; b < N; b++) store(out + (N * a + b) * xs + o, d[a][b]);
            }
        }
    }
}

/* Public entry points: the tile size chosen at run time, each body compiled for both. */
void topiary_wino_weights(long tile, const float *w, long m, long c, long o0, long o1, float *u) {
    if (tile == 4) weights(4, w, m, c, o0, o1, u); else weights(2, w, m, c, o0, o1, u);
}
void topiary_wino_weights_grad(long tile, const float *du, long m, long c, long o0, long o1, float *gw) {
    if (tile == 4) weights_grad(4, du, m, c, o0, o1, gw); else weights_grad(2, du, m, c, o0, o1, gw);
}
void topiary_wino_input(long tile, const float *x, long c, long h, long w, long ph, long pw, float *v, long ldt, long t0, float *scratch) {
    if (tile == 4) input(4, x, c, h, w, ph, pw, v, ldt, t0, scratch); else input(2, x, c, h, w, ph, pw, v, ldt, t0, scratch);
}
void topiary_wino_input_grad(long tile, const float *dv, long c, long h, long w, long ph, long pw, long ldt, long t0, float *gx, float *scratch) {
    if (tile == 4) input_grad(4, dv, c, h, w, ph, pw, ldt, t0, gx, scratch); else input_grad(2, dv, c, h, w, ph, pw, ldt, t0, gx, scratch);
}
void topiary_wino_output(long tile, const float *mo, long m, long h, long w, long ldt, long t0, const float *bias, float *y, float *scratch) {
    if (tile == 4) output(4, mo, m, h, w, ldt, t0, bias, y, scratch); else output(2, mo, m, h, w, ldt, t0, bias, y, scratch);
}
void topiary_wino_output_grad(long tile, const float *gy, long m, long h, long w, long ldt, long t0, float *dmo, float *scratch) {
    if (tile == 4) output_grad(4, gy, m, h, w, ldt, t0, dmo, scratch); else output_grad(2, gy, m, h, w, ldt, t0, dmo, scratch);
}
