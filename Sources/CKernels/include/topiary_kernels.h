/* Compute kernels written in C, where Swift cannot reach the instruction needed (fused
 * multiply-add on 16-float vectors, masked loads). */
#ifndef TOPIARY_KERNELS_H
#define TOPIARY_KERNELS_H

#include <stdint.h>

/* 1 when this build has the direct convolution below (AVX-512), else 0. */
int topiary_conv_direct_available(void);

/* One sample of a convolution whose output is as large as its input (stride 1): for every
 * output channel o and position q (p positions, in vectors of 16),
 *   out[o][q] = bias[o] + sum over input channels i and taps t of w[o][i][t] * x[i][q + shifts[t]],
 * counting only the lanes set in masks[t * vectors + q / 16] (where tap t reads the image; lanes
 * past p are never set). x is c planes of p floats; w is [m][c][taps]; bias may be NULL. */
void topiary_conv_direct(const float *x, long c, long p, const long *shifts, const uint16_t *masks, long taps,
                         const float *w, const float *bias, float *out, long m);

#endif
