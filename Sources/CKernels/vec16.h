/* Sixteen floats as one value (GCC/Clang vector extensions: one AVX-512 register, or four SSE
 * ones in a build for any x86-64), loaded and stored at any 4-byte alignment. Internal to the
 * kernels. */
#ifndef TOPIARY_VEC16_H
#define TOPIARY_VEC16_H

typedef float v16 __attribute__((vector_size(64), aligned(4)));

static inline v16 load(const float *p) { return *(const v16 *)p; }
static inline void store(float *p, v16 v) { *(v16 *)p = v; }

#endif
