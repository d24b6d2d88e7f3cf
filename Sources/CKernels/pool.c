/* Max pooling of one plane, with the input position of each maximum for the backward pass. */
#include "topiary_kernels.h"

#include <float.h>

/* The first maximum of a window in row-major order, compared without branches (the data
 * decides every comparison: a branch per comparison mispredicts about half the time). */
static inline __attribute__((always_inline)) void window(const float *src, long w, long y0, long y1, long x0, long x1, long dh, long dw,
                                                         float *best, int32_t *at) {
    float b = -FLT_MAX;
    int32_t a = -1;
    for (long iy = y0; iy < y1; iy += dh) {
        for (long ix = x0; ix < x1; ix += dw) {
            float v = src[iy * w + ix];
            int take = v > b;
            b = take ? v : b;
            a = take ? (int32_t)(iy * w + ix) : a;
        }
    }
    *best = b;
    *at = a;
}

void topiary_maxpool_plane(const float *src, long h, long w, long ho, long wo, long kh, long kw, long sh, long sw, long ph, long pw,
                           long dh, long dw, float *out, int32_t *argmax) {
    for (long oy = 0; oy < ho; oy++) {
        long top = oy * sh - ph;
        /* Rows of the window inside the image: the first tap row at or after 0, up to h. */
        long y0 = top >= 0 ? top : top + (-top + dh - 1) / dh * dh, y1 = top + (kh - 1) * dh + 1;
        if (y1 > h) y1 = h;
        for (long ox = 0; ox < wo; ox++) {
            long left = ox * sw - pw;
            long x0 = left >= 0 ? left : left + (-left + dw - 1) / dw * dw, x1 = left + (kw - 1) * dw + 1;
            if (x1 > w) x1 = w;
            window(src, w, y0, y1, x0, x1, dh, dw, out + oy * wo + ox, argmax + oy * wo + ox);
        }
    }
}
