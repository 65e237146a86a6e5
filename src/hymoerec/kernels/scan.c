/* The selective scan of hymoerec.models.mamba for CPU training and ranking, in float32.

     h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t,   y_t = C_t . h_t,   h_{-1} = 0

   Every (row b, channel d) pair is an independent recurrence over t on a state of N
   floats, so each function loops over pairs, then over time, with the state's N values
   in the vectorised inner loop. Backward recomputes one pair's states and decays for
   the whole sequence into two L x N buffers (51 KB at L = 200, N = 32: they stay in the
   core's cache) and walks them backwards. Rows are shared among `threads` OpenMP
   threads; torch ships libgomp under the same name, so these regions run on torch's own
   thread pool instead of a second one competing with it. Tensors are passed as views
   with element strides, so slices of a projection are read in place. */

#include "common.h"

/* y (B, L, Di) from u, delta (B, L, Di), A (Di, N), B, C (B, L, N; unit channel stride). */
void scan_forward(int threads, int64_t batch, int64_t length, int64_t di, int64_t n,
                  struct view u, struct view delta, const float *A, struct view B, struct view C,
                  struct view y) {
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads)
  for (int64_t b = 0; b < batch; b++) {
    for (int64_t d = 0; d < di; d++) {
      const float *a = A + d * n;
      float h[n];
      memset(h, 0, sizeof h);
      for (int64_t t = 0; t < length; t++) {
        float step = AT(delta, b, t, d), inject = step * AT(u, b, t, d), out = 0.0f;
        const float *bt = &AT(B, b, t, 0), *ct = &AT(C, b, t, 0);
#pragma omp simd reduction(+ : out)
        for (int64_t k = 0; k < n; k++) {
          h[k] = exp_approx(step * a[k]) * h[k] + inject * bt[k];
          out += h[k] * ct[k];
        }
        AT(y, b, t, d) = out;
      }
    }
  }
}

/* Gradients of a scalar loss given grad_y: grad_u, grad_delta (B, L, Di), grad_B,
   grad_C (B, L, N) and grad_A (Di, N), all overwritten. Returns 0, or 1 when the
   buffers cannot be allocated. */
int scan_backward(int threads, int64_t batch, int64_t length, int64_t di, int64_t n,
                  struct view u, struct view delta, const float *A, struct view B, struct view C,
                  struct view grad_y, struct view grad_u, struct view grad_delta,
                  float *grad_A, struct view grad_B, struct view grad_C) {
  float *grad_A_parts = calloc((size_t)threads * di * n, sizeof(float)); /* one a thread */
  if (grad_A_parts == NULL) return 1;
  int failed = 0;
#pragma omp parallel num_threads(threads)
  {
    float *states = malloc(sizeof(float) * length * n);
    float *decays = malloc(sizeof(float) * length * n);
    if (states == NULL || decays == NULL) {
#pragma omp atomic write
      failed = 1;
    }
    float *grad_A_mine = grad_A_parts + (size_t)omp_get_thread_num() * di * n;
    float h[n], grad_h[n], zeros[n];
    memset(zeros, 0, sizeof zeros);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < batch; b++) {
      if (states == NULL || decays == NULL) continue;
      for (int64_t t = 0; t < length; t++) {
        for (int64_t k = 0; k < n; k++) AT(grad_B, b, t, k) = AT(grad_C, b, t, k) = 0.0f;
      }
      for (int64_t d = 0; d < di; d++) {
        const float *a = A + d * n;
        float *ga = grad_A_mine + d * n;
        memset(h, 0, sizeof h);
        for (int64_t t = 0; t < length; t++) { /* the forward pass again, keeping its states */
          float step = AT(delta, b, t, d), inject = step * AT(u, b, t, d);
          const float *bt = &AT(B, b, t, 0);
          float *s = states + t * n, *e = decays + t * n;
#pragma omp simd
          for (int64_t k = 0; k < n; k++) {
            e[k] = exp_approx(step * a[k]);
            h[k] = e[k] * h[k] + inject * bt[k];
            s[k] = h[k];
          }
        }
        memset(grad_h, 0, sizeof grad_h); /* dLoss/dh_t, carried backwards in time */
        for (int64_t t = length - 1; t >= 0; t--) {
          float step = AT(delta, b, t, d), input = AT(u, b, t, d), g = AT(grad_y, b, t, d);
          float inject = step * input, grad_inject = 0.0f, grad_log_decay_a = 0.0f;
          const float *bt = &AT(B, b, t, 0), *ct = &AT(C, b, t, 0);
          float *gbt = &AT(grad_B, b, t, 0), *gct = &AT(grad_C, b, t, 0);
          const float *s = states + t * n, *e = decays + t * n;
          const float *before = t > 0 ? states + (t - 1) * n : zeros; /* h_{-1} = 0 */
#pragma omp simd reduction(+ : grad_inject, grad_log_decay_a)
          for (int64_t k = 0; k < n; k++) {
            float gh = grad_h[k] + g * ct[k];
            gct[k] += g * s[k];
            gbt[k] += inject * gh;
            grad_inject += gh * bt[k];
            float grad_log_decay = gh * before[k] * e[k]; /* d/d(delta_t A) */
            grad_log_decay_a += grad_log_decay * a[k];
            ga[k] += grad_log_decay * step;
            grad_h[k] = gh * e[k];
          }
          AT(grad_u, b, t, d) = grad_inject * step;
          AT(grad_delta, b, t, d) = grad_log_decay_a + grad_inject * input;
        }
      }
    }
    free(states);
    free(decays);
  }
  if (failed == 0) {
    for (int64_t j = 0; j < di * n; j++) {
      float sum = 0.0f;
      for (int p = 0; p < threads; p++) sum += grad_A_parts[(size_t)p * di * n + j];
      grad_A[j] = sum;
    }
  }
  free(grad_A_parts);
  return failed;
}

/* log(1 + y) for 0 <= y <= 1: 2 atanh(s) with s = y / (2 + y) <= 1/3, by its series to
   s^11 (relative error below 1e-7). */
static inline float log1p_unit(float y) {
  float s = y / (2.0f + y), s2 = s * s;
  float p = 1.0f / 11.0f;
  p = p * s2 + 1.0f / 9.0f;
  p = p * s2 + 1.0f / 7.0f;
  p = p * s2 + 0.2f;
  p = p * s2 + 1.0f / 3.0f;
  p = p * s2 + 1.0f;
  return 2.0f * s * p;
}

/* softplus(x) = max(x, 0) + log(1 + exp(-|x|)) */
static inline float softplus(float x) {
  float negative_abs = x < 0.0f ? x : -x;
  return (x > 0.0f ? x : 0.0f) + log1p_unit(exp_approx(negative_abs));
}

/* One row of scan_last; bf16 is a constant at each call, so each dtype gets its own
   vectorised copy. */
static inline __attribute__((always_inline)) void last_row(
    const int bf16, int64_t b, int64_t di, int64_t n, struct view u, struct view delta,
    const float *bias, const float *A, struct view B, int64_t last, const float *C_last,
    float *y, float *h, float *steps) {
  memset(h, 0, sizeof(float) * di * n);
  for (int64_t t = 0; t <= last; t++) {
    int64_t at = b * delta.batch + t * delta.time;
    if (bias != NULL) {
#pragma omp simd
      for (int64_t d = 0; d < di; d++)
        steps[d] = softplus(load(delta.data, at + d * delta.channel, bf16) + bias[d]);
    } else {
      for (int64_t d = 0; d < di; d++)
        steps[d] = load(delta.data, at + d * delta.channel, bf16);
    }
    int64_t bt = b * B.batch + t * B.time;
    for (int64_t d = 0; d < di; d++) {
      float step = steps[d];
      float inject = step * load(u.data, b * u.batch + t * u.time + d * u.channel, bf16);
      const float *a = A + d * n;
      float *hd = h + d * n;
#pragma omp simd
      for (int64_t k = 0; k < n; k++)
        hd[k] = exp_approx(step * a[k]) * hd[k] + inject * load(B.data, bt + k, bf16);
    }
  }
  for (int64_t d = 0; d < di; d++) {
    float out = 0.0f;
#pragma omp simd reduction(+ : out)
    for (int64_t k = 0; k < n; k++) out += h[d * n + k] * C_last[b * n + k];
    y[b * di + d] = out;
  }
}

/* Inference: y (B, Di) = C_last . h at each row's position last[b], the state after
   steps 0..last[b] (later steps are never read). u, delta (B, L, Di) and B (B, L, N;
   unit channel stride) are all float32 or, with bf16, all bfloat16, read in place; with
   `bias` (Di,), delta is the step size before that bias and its softplus, applied here
   in float32. A row's state for all Di channels (Di x N floats, 16 KB at 128 x 32)
   stays in cache while its steps run, and one position's step sizes are formed for all
   channels at once, so that the softplus vectorises too. C_last (B, N) and y (B, Di)
   are contiguous float32. Returns 0, or 1 when the buffers cannot be allocated. */
int scan_last(int threads, int bf16, int64_t batch, int64_t di, int64_t n, struct view u,
              struct view delta, const float *bias, const float *A, struct view B,
              const int64_t *last, const float *C_last, float *y) {
  int failed = 0;
#pragma omp parallel num_threads(threads)
  {
    float *h = malloc(sizeof(float) * di * n), *steps = malloc(sizeof(float) * di);
    if (h == NULL || steps == NULL) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(dynamic, 4)
    for (int64_t b = 0; b < batch; b++) {
      if (h == NULL || steps == NULL) continue;
      if (bf16)
        last_row(1, b, di, n, u, delta, bias, A, B, last[b], C_last, y, h, steps);
      else
        last_row(0, b, di, n, u, delta, bias, A, B, last[b], C_last, y, h, steps);
    }
    free(h);
    free(steps);
  }
  return failed;
}
