/* The selective scan of hymoerec.models.mamba for CPU training and ranking, in float32.

     h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t,   y_t = C_t . h_t,   h_{-1} = 0

   Every (row b, channel d) pair is an independent recurrence over t on a state of N
   floats. Ranking (scan_last) runs a row's channels one by one with the state's N values
   in the vectorised inner loop; training (mixer_forward, mixer_backward) runs LANES
   channels at a time with the channels in the vector, which needs no sums across
   lanes inside its loops (1.7x forward, 1.3x backward in bf16 over the one-channel
   form: `python benchmarks/mixer_revisions.py --base 4288dee`). Rows are shared among
   `threads` OpenMP threads; torch ships libgomp under the same name, so these regions
   run on torch's own thread pool instead of a second one competing with it. Tensors are
   passed as views with element strides, so slices of a projection are read in place. */

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
        hd[k] = exp_nonpositive(step * a[k]) * hd[k] + inject * load(B.data, bt + k, bf16);
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
   the plain scan.

   A row at a time per thread, LANES channels at a time within it: the channels are the
   vectorised dimension, so that B_t and C_t are broadcast scalars, the sums over the
   state (y_t, and backward's gradients of u and delta) are plain vector sums, and the
   only sums across lanes (the gradients of B and C, over channels) are taken once per
   row. Per row: its step sizes and inputs for every position as float32 (channels
   padded to a multiple of LANES with zero steps, which leave a zero state), then each
   block of channels' recurrence with its N x LANES state in L1. Backward recomputes a
   block's states and decays over the whole sequence into two L x N x LANES buffers
   (410 KB each at L = 200, N = 32: in the core's L2; storing the decays was faster
   than computing them again) and walks them backwards, adding the gradients of B and C
   into per-lane sums that are added across lanes once per row. */


#define LANES 16 /* channels a vector: one 512-bit register of float32 */

static inline float sigmoid(float x) { return 1.0f / (1.0f + exp_approx(-x)); }

#define AT_ANY(v, b, t, c) ((b) * (v).batch + (t) * (v).time + (c) * (v).channel)

/* count floats, 64-byte aligned (NULL when out of memory) */
static float *floats(int64_t count) {
  size_t bytes = ((size_t)count * sizeof(float) + 63) / 64 * 64;
  return aligned_alloc(64, bytes > 0 ? bytes : 64);
}

/* A (Di, N) transposed to (N, Dp), the padded channels zero. */
static float *transposed(const float *A, int64_t di, int64_t dp, int64_t n) {
  float *at = floats(n * dp);
  if (at == NULL) return NULL;
  memset(at, 0, sizeof(float) * n * dp);
  for (int64_t d = 0; d < di; d++)
    for (int64_t k = 0; k < n; k++) at[k * dp + d] = A[d * n + k];
  return at;
}

/* Row b's steps = softplus(x + bias) (or x), its inputs u and, with slopes, the
   softplus's derivative, each L x Dp float32 with the padded channels zero. */
static inline __attribute__((always_inline)) void row_inputs(
    const int bf16, int64_t b, int64_t length, int64_t di, int64_t dp, struct view u,
    struct view x, const float *bias, float *steps, float *inputs, float *slopes) {
  for (int64_t t = 0; t < length; t++) {
    float *st = steps + t * dp, *in = inputs + t * dp, *sl = slopes == NULL ? NULL : slopes + t * dp;
    for (int64_t d = di; d < dp; d++) {
      st[d] = in[d] = 0.0f;
      if (sl != NULL) sl[d] = 0.0f;
    }
    for (int64_t d = 0; d < di; d++) in[d] = load(u.data, AT_ANY(u, b, t, d), bf16);
    if (bias == NULL) { /* x is the step size itself */
      for (int64_t d = 0; d < di; d++) st[d] = load(x.data, AT_ANY(x, b, t, d), bf16);
      if (sl != NULL)
        for (int64_t d = 0; d < di; d++) sl[d] = 1.0f;
      continue;
    }
#pragma omp simd
    for (int64_t d = 0; d < di; d++) st[d] = softplus(load(x.data, AT_ANY(x, b, t, d), bf16) + bias[d]);
    if (sl == NULL) continue;
#pragma omp simd
    for (int64_t d = 0; d < di; d++) sl[d] = sigmoid(load(x.data, AT_ANY(x, b, t, d), bf16) + bias[d]);
  }
}

struct mixer_buffers {
  float *steps, *inputs, *slopes, *grad_y; /* L x Dp */
  float *states, *decays, *grad_B, *grad_C; /* L x N x LANES */
  float *block; /* N x LANES: a block's state (forward), dLoss/dh_t (backward) */
  float *grad_A, *grad_D, *grad_bias; /* this thread's sums over its rows: N x Dp, Dp, Dp */
};

static inline __attribute__((always_inline)) void mixer_row(
    const int bf16, int64_t b, int64_t length, int64_t di, int64_t dp, int64_t n,
    struct view u, struct view x, const float *bias, const float *at, struct view B,
    struct view C, const float *D, struct view z, struct view out, float *y,
    struct mixer_buffers m) {
  row_inputs(bf16, b, length, di, dp, u, x, bias, m.steps, m.inputs, NULL);
  float *h = m.block, *yb = y + b * length * di;
  for (int64_t d0 = 0; d0 < dp; d0 += LANES) {
    int64_t width = di - d0 < LANES ? di - d0 : LANES; /* real channels of the block */
    memset(h, 0, sizeof(float) * n * LANES);
    for (int64_t t = 0; t < length; t++) {
      const float *st = m.steps + t * dp + d0, *in = m.inputs + t * dp + d0;
      float inject[LANES], acc[LANES];
#pragma omp simd
      for (int j = 0; j < LANES; j++) {
        inject[j] = st[j] * in[j];
        acc[j] = 0.0f;
      }
      int64_t bt = AT_ANY(B, b, t, 0), ct = AT_ANY(C, b, t, 0);
      for (int64_t k = 0; k < n; k++) {
        float bk = load(B.data, bt + k, bf16), ck = load(C.data, ct + k, bf16);
        const float *ak = at + k * dp + d0;
        float *hk = h + k * LANES;
#pragma omp simd
        for (int j = 0; j < LANES; j++) {
          hk[j] = exp_nonpositive(st[j] * ak[j]) * hk[j] + inject[j] * bk;
          acc[j] += hk[j] * ck;
        }
      }
      for (int64_t j = 0; j < width; j++)
        yb[t * di + d0 + j] = D == NULL ? acc[j] : acc[j] + D[d0 + j] * in[j];
    }
  }
  for (int64_t t = 0; t < length; t++) {
    if (z.data == NULL) { /* no gate */
      for (int64_t d = 0; d < di; d++) store(out.data, AT_ANY(out, b, t, d), yb[t * di + d], bf16);
      continue;
    }
#pragma omp simd
    for (int64_t d = 0; d < di; d++) {
      float gate = load(z.data, AT_ANY(z, b, t, d), bf16);
      store(out.data, AT_ANY(out, b, t, d), yb[t * di + d] * gate * sigmoid(gate), bf16);
    }
  }
}

static void free_buffers(struct mixer_buffers *m) {
  free(m->steps);
  free(m->inputs);
  free(m->slopes);
  free(m->grad_y);
  free(m->states);
  free(m->decays);
  free(m->grad_B);
  free(m->grad_C);
  free(m->block);
}

/* out as above, and y (B, L, Di; contiguous float32, before the gate) for backward.
   Returns 0, or 1 when the buffers cannot be allocated. */
int mixer_forward(int threads, int bf16, int64_t batch, int64_t length, int64_t di, int64_t n,
                  struct view u, struct view x, const float *bias, const float *A,
                  struct view B, struct view C, const float *D, struct view z, struct view out,
                  float *y) {
  int64_t dp = (di + LANES - 1) / LANES * LANES;
  float *at = transposed(A, di, dp, n);
  if (at == NULL) return 1;
  int failed = 0;
#pragma omp parallel num_threads(threads)
  {
    struct mixer_buffers m = {.steps = floats(length * dp), .inputs = floats(length * dp),
                              .block = floats(n * LANES)};
    int missing = !m.steps || !m.inputs || !m.block;
    if (missing) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(static)
    for (int64_t b = 0; b < batch; b++) {
      if (missing) continue;
      if (bf16)
        mixer_row(1, b, length, di, dp, n, u, x, bias, at, B, C, D, z, out, y, m);
      else
        mixer_row(0, b, length, di, dp, n, u, x, bias, at, B, C, D, z, out, y, m);
    }
    free_buffers(&m);
  }
  free(at);
  return failed;
}

/* One block of channels d0..d0+LANES-1 of row b: the forward pass again, keeping its
   states and decays, then backwards in time. */
static inline __attribute__((always_inline)) void mixer_block_backward(
    const int bf16, int64_t b, int64_t d0, int64_t length, int64_t di, int64_t dp, int64_t n,
    const float *at, struct view B, struct view C, const float *D, struct view grad_u,
    struct view grad_x, struct mixer_buffers m) {
  float *grad_h = m.block;
  for (int64_t t = 0; t < length; t++) {
    const float *st = m.steps + t * dp + d0, *in = m.inputs + t * dp + d0;
    float inject[LANES];
#pragma omp simd
    for (int j = 0; j < LANES; j++) inject[j] = st[j] * in[j];
    int64_t bt = AT_ANY(B, b, t, 0);
    float *s = m.states + t * n * LANES, *e = m.decays + t * n * LANES;
    const float *before = t > 0 ? s - n * LANES : NULL; /* h_{-1} = 0 */
    for (int64_t k = 0; k < n; k++) {
      float bk = load(B.data, bt + k, bf16);
      const float *ak = at + k * dp + d0;
      float *sk = s + k * LANES, *ek = e + k * LANES;
#pragma omp simd
      for (int j = 0; j < LANES; j++) {
        ek[j] = exp_nonpositive(st[j] * ak[j]);
        sk[j] = (before == NULL ? 0.0f : ek[j] * before[k * LANES + j]) + inject[j] * bk;
      }
    }
  }
  memset(grad_h, 0, sizeof(float) * n * LANES); /* dLoss/dh_t, carried backwards in time */
  int64_t width = di - d0 < LANES ? di - d0 : LANES; /* real channels of the block */
  for (int64_t t = length - 1; t >= 0; t--) {
    const float *st = m.steps + t * dp + d0, *in = m.inputs + t * dp + d0;
    const float *g = m.grad_y + t * dp + d0;
    float inject[LANES], grad_inject[LANES], grad_log_decay_a[LANES];
#pragma omp simd
    for (int j = 0; j < LANES; j++) {
      inject[j] = st[j] * in[j];
      grad_inject[j] = grad_log_decay_a[j] = 0.0f;
    }
    int64_t bt = AT_ANY(B, b, t, 0), ct = AT_ANY(C, b, t, 0);
    const float *s = m.states + t * n * LANES, *e = m.decays + t * n * LANES;
    const float *before = t > 0 ? s - n * LANES : NULL;
    float *gb = m.grad_B + t * n * LANES, *gc = m.grad_C + t * n * LANES;
    for (int64_t k = 0; k < n; k++) {
      float bk = load(B.data, bt + k, bf16), ck = load(C.data, ct + k, bf16);
      const float *ak = at + k * dp + d0, *sk = s + k * LANES, *ek = e + k * LANES;
      float *ghk = grad_h + k * LANES, *gak = m.grad_A + k * dp + d0;
      float *gbk = gb + k * LANES, *gck = gc + k * LANES;
#pragma omp simd
      for (int j = 0; j < LANES; j++) {
        float gh = ghk[j] + g[j] * ck;
        gck[j] += g[j] * sk[j];
        gbk[j] += inject[j] * gh;
        grad_inject[j] += gh * bk;
        /* d/d(delta_t A): h_{t-1} e_t, zero at t = 0 */
        float grad_log_decay = before == NULL ? 0.0f : gh * before[k * LANES + j] * ek[j];
        grad_log_decay_a[j] += grad_log_decay * ak[j];
        gak[j] += grad_log_decay * st[j];
        ghk[j] = gh * ek[j];
      }
    }
    const float *sl = m.slopes + t * dp + d0;
    for (int64_t j = 0; j < width; j++) {
      int64_t d = d0 + j;
      float skip = D == NULL ? 0.0f : g[j] * D[d];
      store(grad_u.data, AT_ANY(grad_u, b, t, d), grad_inject[j] * st[j] + skip, bf16);
      float gx = (grad_log_decay_a[j] + grad_inject[j] * in[j]) * sl[j]; /* via the softplus */
      store(grad_x.data, AT_ANY(grad_x, b, t, d), gx, bf16);
      m.grad_bias[d] += gx;
      m.grad_D[d] += g[j] * in[j];
    }
  }
}

static inline __attribute__((always_inline)) void mixer_row_backward(
    const int bf16, int64_t b, int64_t length, int64_t di, int64_t dp, int64_t n,
    struct view u, struct view x, const float *bias, const float *at, struct view B,
    struct view C, const float *D, struct view z, const float *y, struct view grad_out,
    struct view grad_u, struct view grad_x, struct view grad_B, struct view grad_C,
    struct view grad_z, struct mixer_buffers m) {
  row_inputs(bf16, b, length, di, dp, u, x, bias, m.steps, m.inputs, m.slopes);
  const float *yb = y + b * length * di;
  for (int64_t t = 0; t < length; t++) {
    float *gy = m.grad_y + t * dp;
    for (int64_t d = di; d < dp; d++) gy[d] = 0.0f;
    if (z.data == NULL) { /* no gate: dL/dy is given */
      for (int64_t d = 0; d < di; d++) gy[d] = load(grad_out.data, AT_ANY(grad_out, b, t, d), bf16);
      continue;
    }
#pragma omp simd
    for (int64_t d = 0; d < di; d++) { /* the gate: dL/dy and dL/dz */
      float g = load(grad_out.data, AT_ANY(grad_out, b, t, d), bf16);
      float gate = load(z.data, AT_ANY(z, b, t, d), bf16), s = sigmoid(gate);
      gy[d] = g * gate * s;
      float slope = s * (1.0f + gate * (1.0f - s)); /* d silu / d z */
      store(grad_z.data, AT_ANY(grad_z, b, t, d), g * yb[t * di + d] * slope, bf16);
    }
  }
  memset(m.grad_B, 0, sizeof(float) * length * n * LANES);
  memset(m.grad_C, 0, sizeof(float) * length * n * LANES);
  for (int64_t d0 = 0; d0 < dp; d0 += LANES)
    mixer_block_backward(bf16, b, d0, length, di, dp, n, at, B, C, D, grad_u, grad_x, m);
  for (int64_t t = 0; t < length; t++) { /* the sums over channels, lane by lane */
    for (int64_t k = 0; k < n; k++) {
      const float *gb = m.grad_B + (t * n + k) * LANES, *gc = m.grad_C + (t * n + k) * LANES;
      float sum_b = 0.0f, sum_c = 0.0f;
#pragma omp simd reduction(+ : sum_b, sum_c)
      for (int j = 0; j < LANES; j++) {
        sum_b += gb[j];
        sum_c += gc[j];
      }
      store(grad_B.data, AT_ANY(grad_B, b, t, k), sum_b, bf16);
      store(grad_C.data, AT_ANY(grad_C, b, t, k), sum_c, bf16);
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
  int64_t dp = (di + LANES - 1) / LANES * LANES;
  int64_t part = n * dp + 2 * dp; /* grad_A (transposed), grad_D and grad_bias of a thread */
  float *at = transposed(A, di, dp, n), *parts = floats(threads * part);
  if (at == NULL || parts == NULL) {
    free(at);
    free(parts);
    return 1;
  }
  memset(parts, 0, sizeof(float) * threads * part);
  int failed = 0;
#pragma omp parallel num_threads(threads)
  {
    float *mine = parts + (size_t)omp_get_thread_num() * part;
    struct mixer_buffers m = {
        .steps = floats(length * dp),
        .inputs = floats(length * dp),
        .slopes = floats(length * dp),
        .grad_y = floats(length * dp),
        .states = floats(length * n * LANES),
        .decays = floats(length * n * LANES),
        .grad_B = floats(length * n * LANES),
        .grad_C = floats(length * n * LANES),
        .block = floats(n * LANES),
        .grad_A = mine,
        .grad_D = mine + n * dp,
        .grad_bias = mine + n * dp + dp,
    };
    int missing = !m.steps || !m.inputs || !m.slopes || !m.grad_y || !m.states ||
                  !m.decays || !m.grad_B || !m.grad_C || !m.block;
    if (missing) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(static)
    for (int64_t b = 0; b < batch; b++) {
      if (missing) continue;
      if (bf16)
        mixer_row_backward(1, b, length, di, dp, n, u, x, bias, at, B, C, D, z, y, grad_out,
                           grad_u, grad_x, grad_B, grad_C, grad_z, m);
      else
        mixer_row_backward(0, b, length, di, dp, n, u, x, bias, at, B, C, D, z, y, grad_out,
                           grad_u, grad_x, grad_B, grad_C, grad_z, m);
    }
    free_buffers(&m);
  }
  if (failed == 0) {
    for (int64_t d = 0; d < di; d++) {
      float sum_D = 0.0f, sum_bias = 0.0f;
      for (int p = 0; p < threads; p++) {
        const float *theirs = parts + (size_t)p * part;
        sum_D += theirs[n * dp + d];
        sum_bias += theirs[n * dp + dp + d];
      }
      grad_D[d] = sum_D;
      grad_bias[d] = sum_bias;
      for (int64_t k = 0; k < n; k++) {
        float sum = 0.0f;
        for (int p = 0; p < threads; p++) sum += parts[(size_t)p * part + k * dp + d];
        grad_A[d * n + k] = sum;
      }
    }
  }
  free(at);
  free(parts);
  return failed;
}
