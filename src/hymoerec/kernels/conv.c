/* The Mamba mixer's causal depthwise convolution followed by SiLU, fused, in the
   (B, L, Di) layout the rest of the mixer uses:

     pre[b, t, d] = bias[d] + sum_j weight[j, d] x[b, t - (W - 1) + j, d]   (x = 0 before t = 0)
     y = pre * sigmoid(pre)

   Unfused, the input was transposed to (B, Di, L) and copied for the convolution, its
   output cut to L positions, passed through SiLU and transposed back, and backward did
   the same in reverse. Here each row is one pass with the channels in the vectorised
   inner loop. Backward recomputes pre from x. Rows are shared among torch's OpenMP
   threads, each with its own partial sums of the weight and bias gradients. */

#include "common.h"

static inline float sigmoid(float x) { return 1.0f / (1.0f + exp_approx(-x)); }

/* pre at (b, t) for channels [0, di) into out. */
static inline __attribute__((always_inline)) void pre_activation(
    const int bf16, const void *x, struct view v, int64_t b, int64_t t, int64_t di,
    int64_t width, const float *weight, const float *bias, float *out) {
  for (int64_t d = 0; d < di; d++) out[d] = bias[d];
  for (int64_t j = 0; j < width; j++) {
    int64_t s = t - (width - 1) + j;
    if (s < 0) continue;
    int64_t at = b * v.batch + s * v.time;
#pragma omp simd
    for (int64_t d = 0; d < di; d++)
      out[d] += weight[j * di + d] * load(x, at + d * v.channel, bf16);
  }
}

static inline __attribute__((always_inline)) void forward_row(
    const int bf16, int64_t b, int64_t length, int64_t di, int64_t width, struct view x,
    const float *weight, const float *bias, void *y, float *pre) {
  for (int64_t t = 0; t < length; t++) {
    pre_activation(bf16, x.data, x, b, t, di, width, weight, bias, pre);
    int64_t at = (b * length + t) * di;
#pragma omp simd
    for (int64_t d = 0; d < di; d++) store(y, at + d, pre[d] * sigmoid(pre[d]), bf16);
  }
}

/* y (B, L, Di; contiguous, x's dtype) from x (B, L, Di; any strides), float32 or, with
   bf16, bfloat16; weight (W, Di: tap-major, so channels are contiguous) and bias (Di)
   float32. Returns 0, or 1 when out of memory. */
int conv_silu_forward(int threads, int bf16, int64_t batch, int64_t length, int64_t di,
                      int64_t width, struct view x, const float *weight, const float *bias,
                      void *y) {
  int failed = 0;
#pragma omp parallel num_threads(threads)
  {
    float *pre = malloc(sizeof(float) * di);
    if (pre == NULL) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(static)
    for (int64_t b = 0; b < batch; b++) {
      if (pre == NULL) continue;
      if (bf16)
        forward_row(1, b, length, di, width, x, weight, bias, y, pre);
      else
        forward_row(0, b, length, di, width, x, weight, bias, y, pre);
    }
    free(pre);
  }
  return failed;
}

static inline __attribute__((always_inline)) void backward_row(
    const int bf16, int64_t b, int64_t length, int64_t di, int64_t width, struct view x,
    const float *weight, const float *bias, const void *grad_y, void *grad_x,
    float *grad_weight, float *grad_bias, float *grad_pre, float *pre) {
  for (int64_t t = 0; t < length; t++) { /* dLoss/dpre of the whole row */
    pre_activation(bf16, x.data, x, b, t, di, width, weight, bias, pre);
    int64_t at = (b * length + t) * di;
    float *g = grad_pre + t * di;
#pragma omp simd
    for (int64_t d = 0; d < di; d++) {
      float s = sigmoid(pre[d]);
      g[d] = load(grad_y, at + d, bf16) * s * (1.0f + pre[d] * (1.0f - s));
      grad_bias[d] += g[d];
    }
  }
  for (int64_t t = 0; t < length; t++) {
    int64_t from = b * x.batch + t * x.time, at = (b * length + t) * di;
    for (int64_t d = 0; d < di; d++) pre[d] = 0.0f; /* reused: dLoss/dx at (b, t) */
    for (int64_t j = 0; j < width; j++) {
      int64_t later = t + (width - 1) - j; /* the output that tap j reads x_t into */
      if (later >= length) continue;
      const float *g = grad_pre + later * di;
#pragma omp simd
      for (int64_t d = 0; d < di; d++) {
        pre[d] += weight[j * di + d] * g[d];
        grad_weight[j * di + d] += g[d] * load(x.data, from + d * x.channel, bf16);
      }
    }
#pragma omp simd
    for (int64_t d = 0; d < di; d++) store(grad_x, at + d, pre[d], bf16);
  }
}

/* grad_x (B, L, Di; contiguous, x's dtype), grad_weight (W, Di) and grad_bias (Di)
   (float32, overwritten) from grad_y (B, L, Di; contiguous, x's dtype). Returns 0, or 1
   when out of memory. */
int conv_silu_backward(int threads, int bf16, int64_t batch, int64_t length, int64_t di,
                       int64_t width, struct view x, const float *weight, const float *bias,
                       const void *grad_y, void *grad_x, float *grad_weight,
                       float *grad_bias) {
  size_t per_thread = (size_t)di * (width + 1);
  float *parts = calloc((size_t)threads * per_thread, sizeof(float));
  if (parts == NULL) return 1;
  int failed = 0;
#pragma omp parallel num_threads(threads)
  {
    float *grad_pre = malloc(sizeof(float) * length * di), *pre = malloc(sizeof(float) * di);
    float *mine = parts + (size_t)omp_get_thread_num() * per_thread;
    if (grad_pre == NULL || pre == NULL) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(static)
    for (int64_t b = 0; b < batch; b++) {
      if (grad_pre == NULL || pre == NULL) continue;
      if (bf16)
        backward_row(1, b, length, di, width, x, weight, bias, grad_y, grad_x, mine,
                     mine + di * width, grad_pre, pre);
      else
        backward_row(0, b, length, di, width, x, weight, bias, grad_y, grad_x, mine,
                     mine + di * width, grad_pre, pre);
    }
    free(grad_pre);
    free(pre);
  }
  for (size_t i = 0; i < per_thread; i++) {
    float sum = 0.0f;
    for (int p = 0; p < threads; p++) sum += parts[(size_t)p * per_thread + i];
    if (i < (size_t)di * width)
      grad_weight[i] = sum;
    else
      grad_bias[i - (size_t)di * width] = sum;
  }
  free(parts);
  return failed;
}
