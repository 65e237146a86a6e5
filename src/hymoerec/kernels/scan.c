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

/* The mixer around the scan, fused for training:

     delta_t = softplus(x_t + bias),  y_t = C_t . h_t + D u_t,  out_t = y_t silu(z_t)

   x is the step size's projection before its bias; u, x, z (B, L, Di), B, C (B, L, N;
   unit channel stride) and out are all float32 or, with bf16, all bfloat16, read and
   written in place; bias, D (Di,) and A (Di, N) are float32. Each part may be left out:
   bias NULL (x is delta itself), D NULL (no skip), z.data NULL (no gate), which leaves
   the plain scan. A row at a time per thread: its step sizes for every position and
   channel first (so that the softplus vectorises), then each channel's recurrence (the
   state's N values in the vectorised inner loop), then the gate over the row. Backward
   recomputes one channel's states and decays for the whole sequence into two L x N
   buffers (51 KB at L = 200, N = 32: they stay in the core's cache) and walks them
   backwards. */

static inline float sigmoid(float x) { return 1.0f / (1.0f + exp_approx(-x)); }

/* steps (L x Di) = softplus(x + bias) of row b; with slopes, also its derivative. */
static inline __attribute__((always_inline)) void row_steps(const int bf16, int64_t b,
                                                            int64_t length, int64_t di,
                                                            struct view x, const float *bias,
                                                            float *steps, float *slopes) {
  for (int64_t t = 0; t < length; t++) {
    int64_t at = b * x.batch + t * x.time;
    float *st = steps + t * di, *sl = slopes == NULL ? NULL : slopes + t * di;
    if (bias == NULL) { /* x is the step size itself */
      for (int64_t d = 0; d < di; d++) st[d] = load(x.data, at + d * x.channel, bf16);
      if (sl != NULL)
        for (int64_t d = 0; d < di; d++) sl[d] = 1.0f;
      continue;
    }
#pragma omp simd
    for (int64_t d = 0; d < di; d++) st[d] = softplus(load(x.data, at + d * x.channel, bf16) + bias[d]);
    if (sl == NULL) continue;
#pragma omp simd
    for (int64_t d = 0; d < di; d++) sl[d] = sigmoid(load(x.data, at + d * x.channel, bf16) + bias[d]);
  }
}

#define AT_ANY(v, b, t, c) ((b) * (v).batch + (t) * (v).time + (c) * (v).channel)

static inline __attribute__((always_inline)) void mixer_row(
    const int bf16, int64_t b, int64_t length, int64_t di, int64_t n, struct view u,
    struct view x, const float *bias, const float *A, struct view B, struct view C,
    const float *D, struct view z, struct view out, float *y, float *steps) {
  row_steps(bf16, b, length, di, x, bias, steps, NULL);
  float *yb = y + b * length * di;
  for (int64_t d = 0; d < di; d++) {
    const float *a = A + d * n;
    float h[n];
    memset(h, 0, sizeof h);
    for (int64_t t = 0; t < length; t++) {
      float step = steps[t * di + d], input = load(u.data, AT_ANY(u, b, t, d), bf16);
      float inject = step * input, acc = 0.0f;
      int64_t bt = AT_ANY(B, b, t, 0), ct = AT_ANY(C, b, t, 0);
#pragma omp simd reduction(+ : acc)
      for (int64_t k = 0; k < n; k++) {
        h[k] = exp_approx(step * a[k]) * h[k] + inject * load(B.data, bt + k, bf16);
        acc += h[k] * load(C.data, ct + k, bf16);
      }
      yb[t * di + d] = D == NULL ? acc : acc + D[d] * input;
    }
  }
  if (z.data == NULL) { /* no gate */
    for (int64_t t = 0; t < length; t++)
      for (int64_t d = 0; d < di; d++) store(out.data, AT_ANY(out, b, t, d), yb[t * di + d], bf16);
    return;
  }
  for (int64_t t = 0; t < length; t++) {
#pragma omp simd
    for (int64_t d = 0; d < di; d++) {
      float gate = load(z.data, AT_ANY(z, b, t, d), bf16);
      store(out.data, AT_ANY(out, b, t, d), yb[t * di + d] * gate * sigmoid(gate), bf16);
    }
  }
}

/* out as above, and y (B, L, Di; contiguous float32, before the gate) for backward.
   Returns 0, or 1 when the buffers cannot be allocated. */
int mixer_forward(int threads, int bf16, int64_t batch, int64_t length, int64_t di, int64_t n,
                  struct view u, struct view x, const float *bias, const float *A,
                  struct view B, struct view C, const float *D, struct view z, struct view out,
                  float *y) {
  int failed = 0;
#pragma omp parallel num_threads(threads)
  {
    float *steps = malloc(sizeof(float) * length * di);
    if (steps == NULL) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(static)
    for (int64_t b = 0; b < batch; b++) {
      if (steps == NULL) continue;
      if (bf16)
        mixer_row(1, b, length, di, n, u, x, bias, A, B, C, D, z, out, y, steps);
      else
        mixer_row(0, b, length, di, n, u, x, bias, A, B, C, D, z, out, y, steps);
    }
    free(steps);
  }
  return failed;
}

struct mixer_buffers {
  float *steps, *slopes, *grad_y; /* L x Di */
  float *states, *decays, *grad_B, *grad_C; /* L x N */
  float *grad_A, *grad_D, *grad_bias; /* this thread's sums over its rows */
};

static inline __attribute__((always_inline)) void mixer_row_backward(
    const int bf16, int64_t b, int64_t length, int64_t di, int64_t n, struct view u,
    struct view x, const float *bias, const float *A, struct view B, struct view C,
    const float *D, struct view z, const float *y, struct view grad_out, struct view grad_u,
    struct view grad_x, struct view grad_B, struct view grad_C, struct view grad_z,
    struct mixer_buffers m) {
  row_steps(bf16, b, length, di, x, bias, m.steps, m.slopes);
  const float *yb = y + b * length * di;
  for (int64_t t = 0; t < length && z.data == NULL; t++) /* no gate: dL/dy is given */
    for (int64_t d = 0; d < di; d++)
      m.grad_y[t * di + d] = load(grad_out.data, AT_ANY(grad_out, b, t, d), bf16);
  for (int64_t t = 0; t < length && z.data != NULL; t++) { /* the gate: dL/dy and dL/dz */
#pragma omp simd
    for (int64_t d = 0; d < di; d++) {
      float g = load(grad_out.data, AT_ANY(grad_out, b, t, d), bf16);
      float gate = load(z.data, AT_ANY(z, b, t, d), bf16), s = sigmoid(gate);
      m.grad_y[t * di + d] = g * gate * s;
      float slope = s * (1.0f + gate * (1.0f - s)); /* d silu / d z */
      store(grad_z.data, AT_ANY(grad_z, b, t, d), g * yb[t * di + d] * slope, bf16);
    }
  }
  memset(m.grad_B, 0, sizeof(float) * length * n);
  memset(m.grad_C, 0, sizeof(float) * length * n);
  float h[n], grad_h[n], zeros[n];
  memset(zeros, 0, sizeof zeros);
  for (int64_t d = 0; d < di; d++) {
    const float *a = A + d * n;
    float *ga = m.grad_A + d * n;
    memset(h, 0, sizeof h);
    for (int64_t t = 0; t < length; t++) { /* the forward pass again, keeping its states */
      float step = m.steps[t * di + d];
      float inject = step * load(u.data, AT_ANY(u, b, t, d), bf16);
      int64_t bt = AT_ANY(B, b, t, 0);
      float *s = m.states + t * n, *e = m.decays + t * n;
#pragma omp simd
      for (int64_t k = 0; k < n; k++) {
        e[k] = exp_approx(step * a[k]);
        h[k] = e[k] * h[k] + inject * load(B.data, bt + k, bf16);
        s[k] = h[k];
      }
    }
    memset(grad_h, 0, sizeof grad_h); /* dLoss/dh_t, carried backwards in time */
    float grad_D = 0.0f, grad_bias = 0.0f;
    for (int64_t t = length - 1; t >= 0; t--) {
      float step = m.steps[t * di + d], input = load(u.data, AT_ANY(u, b, t, d), bf16);
      float g = m.grad_y[t * di + d], inject = step * input;
      float grad_inject = 0.0f, grad_log_decay_a = 0.0f;
      int64_t bt = AT_ANY(B, b, t, 0), ct = AT_ANY(C, b, t, 0);
      float *gbt = m.grad_B + t * n, *gct = m.grad_C + t * n;
      const float *s = m.states + t * n, *e = m.decays + t * n;
      const float *before = t > 0 ? m.states + (t - 1) * n : zeros; /* h_{-1} = 0 */
#pragma omp simd reduction(+ : grad_inject, grad_log_decay_a)
      for (int64_t k = 0; k < n; k++) {
        float gh = grad_h[k] + g * load(C.data, ct + k, bf16);
        gct[k] += g * s[k];
        gbt[k] += inject * gh;
        grad_inject += gh * load(B.data, bt + k, bf16);
        float grad_log_decay = gh * before[k] * e[k]; /* d/d(delta_t A) */
        grad_log_decay_a += grad_log_decay * a[k];
        ga[k] += grad_log_decay * step;
        grad_h[k] = gh * e[k];
      }
      float skip = D == NULL ? 0.0f : g * D[d];
      store(grad_u.data, AT_ANY(grad_u, b, t, d), grad_inject * step + skip, bf16);
      float grad_step = grad_log_decay_a + grad_inject * input;
      float gx = grad_step * m.slopes[t * di + d]; /* through the softplus */
      store(grad_x.data, AT_ANY(grad_x, b, t, d), gx, bf16);
      grad_bias += gx;
      grad_D += g * input;
    }
    m.grad_D[d] += grad_D;
    m.grad_bias[d] += grad_bias;
  }
  for (int64_t t = 0; t < length; t++) {
    for (int64_t k = 0; k < n; k++) {
      store(grad_B.data, AT_ANY(grad_B, b, t, k), m.grad_B[t * n + k], bf16);
      store(grad_C.data, AT_ANY(grad_C, b, t, k), m.grad_C[t * n + k], bf16);
    }
  }
}

/* Gradients of a scalar loss given grad_out: grad_u, grad_x, grad_z (B, L, Di), grad_B,
   grad_C (B, L, N) in the inputs' dtype, and grad_bias, grad_D (Di,), grad_A (Di, N)
   in float32, all overwritten; y is mixer_forward's. Returns 0, or 1 when the buffers
   cannot be allocated. */
int mixer_backward(int threads, int bf16, int64_t batch, int64_t length, int64_t di,
                   int64_t n, struct view u, struct view x, const float *bias, const float *A,
                   struct view B, struct view C, const float *D, struct view z, const float *y,
                   struct view grad_out, struct view grad_u, struct view grad_x,
                   float *grad_bias, float *grad_A, struct view grad_B, struct view grad_C,
                   float *grad_D, struct view grad_z) {
  int64_t part = di * n + 2 * di; /* grad_A, grad_D and grad_bias of one thread */
  float *parts = calloc((size_t)threads * part, sizeof(float));
  if (parts == NULL) return 1;
  int failed = 0;
#pragma omp parallel num_threads(threads)
  {
    float *mine = parts + (size_t)omp_get_thread_num() * part;
    struct mixer_buffers m = {
        .steps = malloc(sizeof(float) * length * di),
        .slopes = malloc(sizeof(float) * length * di),
        .grad_y = malloc(sizeof(float) * length * di),
        .states = malloc(sizeof(float) * length * n),
        .decays = malloc(sizeof(float) * length * n),
        .grad_B = malloc(sizeof(float) * length * n),
        .grad_C = malloc(sizeof(float) * length * n),
        .grad_A = mine,
        .grad_D = mine + di * n,
        .grad_bias = mine + di * n + di,
    };
    int missing = !m.steps || !m.slopes || !m.grad_y || !m.states || !m.decays ||
                  !m.grad_B || !m.grad_C;
    if (missing) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(static)
    for (int64_t b = 0; b < batch; b++) {
      if (missing) continue;
      if (bf16)
        mixer_row_backward(1, b, length, di, n, u, x, bias, A, B, C, D, z, y, grad_out,
                           grad_u, grad_x, grad_B, grad_C, grad_z, m);
      else
        mixer_row_backward(0, b, length, di, n, u, x, bias, A, B, C, D, z, y, grad_out,
                           grad_u, grad_x, grad_B, grad_C, grad_z, m);
    }
    free(m.steps);
    free(m.slopes);
    free(m.grad_y);
    free(m.states);
    free(m.decays);
    free(m.grad_B);
    free(m.grad_C);
  }
  if (failed == 0) {
    for (int64_t j = 0; j < part; j++) {
      float sum = 0.0f;
      for (int p = 0; p < threads; p++) sum += parts[(size_t)p * part + j];
      if (j < di * n)
        grad_A[j] = sum;
      else if (j < di * n + di)
        grad_D[j - di * n] = sum;
      else
        grad_bias[j - di * n - di] = sum;
    }
  }
  free(parts);
  return failed;
}
