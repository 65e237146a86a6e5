/* What the kernels of this folder share: strided views of tensors, float32 and bfloat16
   loads and stores, and an exp that the compiler vectorises. */

#ifndef HYMOEREC_KERNELS_COMMON_H
#define HYMOEREC_KERNELS_COMMON_H

#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct view {
  float *data;
  int64_t batch, time, channel; /* element strides */
};

#define AT(v, b, t, c) ((v).data[(b) * (v).batch + (t) * (v).time + (c) * (v).channel])

/* e^r with x = k ln(2) + r, |r| <= ln(2)/2, by the degree-6 Taylor polynomial of e^r
   (relative error below 3e-7); k is set. Written out so that the compiler vectorises it
   inside the loops over the state. */
static inline float exp_reduced(float x, float *k) {
  *k = __builtin_rintf(x * 1.44269504088896341f);
  float r = x - *k * 0.693145751953125f - *k * 1.428606765330187045e-06f;
  float p = 0.0013888889f;
  p = p * r + 0.008333334f;
  p = p * r + 0.041666668f;
  p = p * r + 0.16666667f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  return p * r + 1.0f;
}

/* exp(x) for -87 <= x <= 88 (clamped outside): 2^k e^r. */
static inline float exp_approx(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  float k, p = exp_reduced(x, &k);
  union {
    int32_t i;
    float f;
  } scale = {.i = ((int32_t)k + 127) << 23};
  return p * scale.f;
}

/* exp(x) for x <= 0 (clamped below -87), as a decay needs it: one clamp, and 2^k added to
   e^r's exponent bits instead of a product (the scan's forward 1.05x, backward 1.08x). */
static inline float exp_nonpositive(float x) {
  x = x < -87.0f ? -87.0f : x;
  float k, p = exp_reduced(x, &k);
  union {
    int32_t i;
    float f;
  } v = {.f = p};
  v.i += (int32_t)k << 23;
  return v.f;
}

/* Element i of a float32 or, with bf16, a bfloat16 array, as float32. */
static inline float load(const void *data, int64_t i, int bf16) {
  if (!bf16) return ((const float *)data)[i];
  union {
    uint32_t i;
    float f;
  } v = {.i = (uint32_t)((const uint16_t *)data)[i] << 16};
  return v.f;
}

/* Element i of a float32 or, with bf16, a bfloat16 array set to value (rounded to
   nearest, ties to even). */
static inline void store(void *data, int64_t i, float value, int bf16) {
  if (!bf16) {
    ((float *)data)[i] = value;
    return;
  }
  union {
    uint32_t i;
    float f;
  } v = {.f = value};
  uint32_t rounding = 0x7fffU + ((v.i >> 16) & 1U);
  ((uint16_t *)data)[i] = (uint16_t)((v.i + rounding) >> 16);
}

#endif
