/* The point-wise FFN's GELU followed by dropout, fused: y = gelu(x) * keep / (1 - p).
   Whether an element is kept is a hash of its index and of a seed drawn from torch's
   generator, so backward recomputes the mask instead of storing it, and every thread
   draws its own elements without sharing a generator. */

#include "common.h"
/* erf(x) by Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7). */
static inline float erf_approx(float x) {
  float a = x < 0.0f ? -x : x;
  float t = 1.0f / (1.0f + 0.3275911f * a);
  float p = 1.061405429f;
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  float e = 1.0f - p * t * exp_approx(-a * a);
  return x < 0.0f ? -e : e;
}

/* lowbias32 (Wellons): a bijective 32-bit hash with strong avalanche. */
static inline uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

/* The kept element's scale, or 0: element i is kept when its hash is at least `drop`
   (of 2^32), that is with probability 1 - drop / 2^32. */
static inline float keep_scale(uint64_t seed, int64_t i, uint32_t drop, float scale) {
  uint32_t h = mix32((uint32_t)i ^ (uint32_t)seed);
  h = mix32(h + (uint32_t)(seed >> 32) + 0x9e3779b9U * (uint32_t)((uint64_t)i >> 32));
  return h >= drop ? scale : 0.0f;
}

#define INV_SQRT2 0.70710678118654752f
#define INV_SQRT_2PI 0.39894228040143268f

static inline __attribute__((always_inline)) void gelu_dropout_block(
    const int bf16, const int backward, int64_t start, int64_t end, const void *x, const void *grad,
    void *out, uint64_t seed, uint32_t drop, float scale) {
#pragma omp simd
  for (int64_t i = start; i < end; i++) {
    float v = load(x, i, bf16), k = keep_scale(seed, i, drop, scale);
    float cdf = 0.5f * (1.0f + erf_approx(v * INV_SQRT2));
    if (backward) {
      float pdf = INV_SQRT_2PI * exp_approx(-0.5f * v * v);
      store(out, i, load(grad, i, bf16) * k * (cdf + v * pdf), bf16);
    } else {
      store(out, i, v * cdf * k, bf16);
    }
  }
}

/* Forward (grad NULL): out = gelu(x) * mask; backward: out = grad * mask * gelu'(x).
   x, grad and out hold `count` contiguous float32 or, with bf16, bfloat16 values. */
void gelu_dropout(int threads, int bf16, int64_t count, const void *x, const void *grad,
                  void *out, uint64_t seed, uint32_t drop, float scale) {
  int backward = grad != NULL;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t start = 0; start < count; start += 4096) {
    int64_t end = start + 4096 < count ? start + 4096 : count;
    if (bf16 && backward)
      gelu_dropout_block(1, 1, start, end, x, grad, out, seed, drop, scale);
    else if (bf16)
      gelu_dropout_block(1, 0, start, end, x, grad, out, seed, drop, scale);
    else if (backward)
      gelu_dropout_block(0, 1, start, end, x, grad, out, seed, drop, scale);
    else
      gelu_dropout_block(0, 0, start, end, x, grad, out, seed, drop, scale);
  }
}
