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

/* Winograd F(R×R, 3×3), R = tile = 2 or 4, for 3×3 stride-1 convolutions whose output is as
 * large as the input (pads ph top, pw left). A sample's tiles are its R×R output blocks,
 * row-major, ⌈h/R⌉·⌈w/R⌉ of them; t0 is the sample's first tile among the ldt of the batch.
 * Channels are padded to topiary_wino_channels(n) (cp for inputs, mp for outputs) and innermost:
 *   U[ξ][mp][cp] (transformed weights), V[ξ][ldt][cp] (input tiles), M[ξ][ldt][mp] (products),
 * ξ = 0 ..< (R+2)², matrix ξ starting at ξ · topiary_wino_stride(rows, channels), so that
 * M_ξ = V_ξ · U_ξᵀ. U's padding rows must be zero (they are never written). Arrays on 64-byte
 * boundaries. The weight functions take output channels o0 ..< o1. Backward functions are the
 * exact adjoints of the forward ones and add into gx and gw. Scratch, on 64-byte boundaries,
 * one per concurrent call and a separate one per function: topiary_wino_scratch_in(tile, h, w,
 * c) floats for the input transform and its adjoint, topiary_wino_scratch_out(tile, h, w, m)
 * for the output transform and its adjoint. Those of topiary_wino_input and
 * topiary_wino_output_grad must be zero when first used and not written by anything else
 * (they keep zero borders from call to call). */
long topiary_wino_channels(long n);
long topiary_wino_stride(long rows, long cols);
long topiary_wino_scratch_in(long tile, long h, long w, long c);
long topiary_wino_scratch_out(long tile, long h, long w, long m);
void topiary_wino_weights(long tile, const float *w, long m, long c, long o0, long o1, float *u);
void topiary_wino_weights_grad(long tile, const float *du, long m, long c, long o0, long o1, float *gw);
void topiary_wino_input(long tile, const float *x, long c, long h, long w, long ph, long pw, float *v, long ldt, long t0, float *scratch);
void topiary_wino_input_grad(long tile, const float *dv, long c, long h, long w, long ph, long pw, long ldt, long t0, float *gx, float *scratch);
void topiary_wino_output(long tile, const float *mo, long m, long h, long w, long ldt, long t0, const float *bias, float *y, float *scratch);
void topiary_wino_output_grad(long tile, const float *gy, long m, long h, long w, long ldt, long t0, float *dmo, float *scratch);

/* out[o][q] = bias[o] + Σ_k w[o][k] · bt[q][k] for o < m, q < n ≤ TOPIARY_SKINNY_MAX (out rows
 * ldo apart; bias may be NULL): a product of few columns, reading each weight once. */
#define TOPIARY_SKINNY_MAX 8
void topiary_skinny(const float *w, long m, long k, const float *bt, long n, const float *bias, float *out, long ldo);

/* Max pooling of one h × w plane into ho × wo: out = the window's maximum (−FLT_MAX for a window
 * wholly in the padding), argmax = its first position in row-major order (−1 if none). */
void topiary_maxpool_plane(const float *src, long h, long w, long ho, long wo, long kh, long kw, long sh, long sw, long ph, long pw,
                           long dh, long dw, float *out, int32_t *argmax);

#endif
