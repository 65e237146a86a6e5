/* The softmax of the chunked cross-entropy over the catalogue, in place, with each row's
   negative log-likelihood of its target. Column 0 (the padding item) gets probability 0
   and takes no part in the normaliser. Per row: one pass for the largest logit, one that
   forms exp(x - max) into a float32 buffer and sums it, one that writes the
   probabilities, rounded once. The logits are finite (no -inf column to skip: these
   kernels are built without infinities). */

#include <math.h>

#include "common.h"

static inline __attribute__((always_inline)) void softmax_row(const int bf16, int64_t columns,
                                                              void *row, int64_t target,
                                                              float *buffer, double *nll) {
  float top = load(row, 1, bf16);
#pragma omp simd reduction(max : top)
  for (int64_t c = 2; c < columns; c++) {
    float x = load(row, c, bf16);
    top = x > top ? x : top;
  }
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t c = 1; c < columns; c++) {
    float e = exp_approx(load(row, c, bf16) - top);
    buffer[c] = e;
    sum += e;
  }
  /* -log p(target) = log sum exp - logit, without forming p (which can underflow) */
  *nll = (double)top + log((double)sum) - (double)load(row, target, bf16);
  float scale = 1.0f / sum;
  store(row, 0, 0.0f, bf16);
#pragma omp simd
  for (int64_t c = 1; c < columns; c++) store(row, c, buffer[c] * scale, bf16);
}

/* logits: `rows` x `columns` contiguous float32 or, with bf16, bfloat16 values, replaced
   by their softmax over columns 1..columns-1; targets (rows,) in 1..columns-1, or 0 for
   a row whose nll is not wanted; nll (rows,) float64; scratch: `columns` floats for
   each of the `threads` threads. */
void softmax_nll(int threads, int bf16, int64_t rows, int64_t columns, void *logits,
                 const int64_t *targets, double *nll, float *scratch) {
#pragma omp parallel num_threads(threads)
  {
    float *buffer = scratch + (int64_t)omp_get_thread_num() * columns;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
      if (bf16)
        softmax_row(1, columns, (uint16_t *)logits + r * columns, targets[r], buffer, &nll[r]);
      else
        softmax_row(0, columns, (float *)logits + r * columns, targets[r], buffer, &nll[r]);
    }
  }
}
