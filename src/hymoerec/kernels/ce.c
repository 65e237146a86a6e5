/* The chunked cross-entropy's bfloat16 path as one kernel: for every target row h (bf16)
   its logits against the whole item table W (bf16), their softmax over items 1..N, the
   row's negative log-likelihood and the softmax part of both gradients,
       grad_h[r] = sum_n p[r, n] W[n],    grad_w[n] = sum_r p[r, n] h[r],
   with every product in AVX-512 BF16 dot products of bf16 pairs (float32 accumulation).

   torch runs the same work as three bf16 matrix products per chunk of targets with a
   softmax between them, and each product leaves the chunk's logits or probabilities to
   the next one through the shared cache. Here each thread takes blocks of ROWS targets
   from start to end: their logits (float32) stay in its own cache through the softmax,
   the probabilities are written once in the two pair layouts the gradient products read,
   and grad_w collects in a per-thread float32 buffer that is added up once at the end.

   Layouts (a "pair" is two bf16 in one 32-bit word, the first in the low half, which is
   what a BF16 dot product multiplies pairwise and adds):
     wk  [Np / 16][D / 2] vectors: 16 items' pairs along d          (logits: h . W[n])
     wv  [Np / 2][D / 16] vectors: 16 d values' pairs along items   (grad_h: p[r] W)
     pt  [Np / 16][ROWS / 2] vectors: 16 items' pairs along rows    (grad_w: p^T h)
     hv  [ROWS / 2][D / 16] vectors: 16 d values' pairs along rows  (grad_w)
   with Np the item count rounded up to ITEM_TILE (the extra items are zero and get
   probability 0, as item 0, the padding, does). Each product's tile keeps 24 float32
   vectors of sums in registers, and the softmax takes each row's largest logit from the
   logits' tile as it is stored. */

#include <math.h>

#include "common.h"

#ifdef __AVX512BF16__
#include <immintrin.h>

#define ROWS 48      /* targets per block: multiple of LOGIT_ROWS, GRAD_ROWS and 2 */
#define LOGIT_ROWS 8 /* logits tile: 8 rows x 3 item vectors (24 accumulators) */
#define ITEM_VECTORS 3
#define ITEM_TILE (16 * ITEM_VECTORS)
#define GRAD_ROWS 6 /* grad_h tile: 6 rows x 4 d vectors */
#define D_VECTORS 4
#define GRAD_ITEMS 6 /* grad_w tile: 6 items x 4 d vectors (ITEM_TILE is a multiple) */

typedef __m512 vec;

static inline vec dot(vec acc, uint32_t pair, __m512i pairs) {
  return _mm512_dpbf16_ps(acc, (__m512bh)_mm512_set1_epi32((int)pair), (__m512bh)pairs);
}

/* The lanes of the 16 items from `first` that are items 1..items-1 */
static inline __mmask16 real_items(int64_t first, int64_t items) {
  uint32_t lanes = 0xffffu;
  if (first == 0) lanes &= ~1u; /* the padding item */
  if (first + 16 > items) lanes &= first >= items ? 0u : (1u << (items - first)) - 1u;
  return (__mmask16)lanes;
}

/* logits[r][n] = h[r] . W[n] for a block's rows, all Np items; top[r] the largest over
   items 1..items-1 */
static void block_logits(int64_t d, int64_t items, int64_t np, const uint32_t *h,
                         const __m512i *wk, float *logits, float *top) {
  const int64_t half = d / 2;
  vec tops[ROWS];
  for (int r = 0; r < ROWS; r++) tops[r] = _mm512_set1_ps(-3.0e38f);
  for (int64_t nb = 0; nb < np / 16; nb += ITEM_VECTORS) {
    __mmask16 real[ITEM_VECTORS];
    for (int j = 0; j < ITEM_VECTORS; j++) real[j] = real_items((nb + j) * 16, items);
    for (int64_t r0 = 0; r0 < ROWS; r0 += LOGIT_ROWS) {
      vec acc[LOGIT_ROWS][ITEM_VECTORS];
      for (int i = 0; i < LOGIT_ROWS; i++)
        for (int j = 0; j < ITEM_VECTORS; j++) acc[i][j] = _mm512_setzero_ps();
      for (int64_t p = 0; p < half; p++) {
        __m512i w[ITEM_VECTORS];
        for (int j = 0; j < ITEM_VECTORS; j++) w[j] = _mm512_load_si512(&wk[(nb + j) * half + p]);
        for (int i = 0; i < LOGIT_ROWS; i++) {
          uint32_t pair = h[(r0 + i) * half + p];
          for (int j = 0; j < ITEM_VECTORS; j++) acc[i][j] = dot(acc[i][j], pair, w[j]);
        }
      }
      for (int i = 0; i < LOGIT_ROWS; i++)
        for (int j = 0; j < ITEM_VECTORS; j++) {
          _mm512_store_ps(&logits[(r0 + i) * np + (nb + j) * 16], acc[i][j]);
          tops[r0 + i] = _mm512_mask_max_ps(tops[r0 + i], real[j], tops[r0 + i], acc[i][j]);
        }
    }
  }
  for (int r = 0; r < ROWS; r++) top[r] = _mm512_reduce_max_ps(tops[r]);
}

/* A row's logits replaced by exp(x - top) over items 1..N and 0 elsewhere, top its
   largest; returns their sum, and the row's -log p(target) in *nll unless nll is NULL. */
static float row_exp(int64_t items, int64_t np, float *row, float top, int64_t target,
                     double *nll) {
  float picked = row[target];
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t c = 1; c < items; c++) {
    float e = exp_nonpositive(row[c] - top);
    row[c] = e;
    sum += e;
  }
  row[0] = 0.0f;
  for (int64_t c = items; c < np; c++) row[c] = 0.0f;
  if (nll) *nll = (double)top + log((double)sum) - (double)picked;
  return sum;
}

/* Probabilities of rows a and a + 1 rounded to bf16: row-major into p, and as pairs
   along rows into pt. */
static void pair_probs(int64_t np, const float *ea, const float *eb, float sa, float sb,
                       uint16_t *pa, uint16_t *pb, __m512i *pt, int64_t half_rows) {
  const __m512i interleave =
      _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22,
                       6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const vec va = _mm512_set1_ps(sa), vb = _mm512_set1_ps(sb);
  for (int64_t nb = 0; nb < np / 16; nb++) {
    vec a = _mm512_mul_ps(_mm512_load_ps(&ea[nb * 16]), va);
    vec b = _mm512_mul_ps(_mm512_load_ps(&eb[nb * 16]), vb);
    __m512i both = (__m512i)_mm512_cvtne2ps_pbh(b, a); /* a in the low 16, b above */
    _mm256_store_si256((__m256i *)&pa[nb * 16], _mm512_castsi512_si256(both));
    _mm256_store_si256((__m256i *)&pb[nb * 16], _mm512_extracti64x4_epi64(both, 1));
    _mm512_store_si512(&pt[nb * half_rows], _mm512_permutexvar_epi16(interleave, both));
  }
}

/* grad_h[r] = p[r] W for the block's first `real` rows (grad_h: row stride d) */
static void block_grad_h(int64_t d, int64_t np, const uint32_t *p, const __m512i *wv,
                         int64_t real, float *grad_h) {
  const int64_t dv = d / 16;
  for (int64_t r0 = 0; r0 < ROWS; r0 += GRAD_ROWS) {
    if (r0 >= real) break;
    for (int64_t k0 = 0; k0 < dv; k0 += D_VECTORS) {
      vec acc[GRAD_ROWS][D_VECTORS];
      for (int i = 0; i < GRAD_ROWS; i++)
        for (int k = 0; k < D_VECTORS; k++) acc[i][k] = _mm512_setzero_ps();
      for (int64_t q = 0; q < np / 2; q++) {
        __m512i w[D_VECTORS];
        for (int k = 0; k < D_VECTORS; k++) w[k] = _mm512_load_si512(&wv[q * dv + k0 + k]);
        for (int i = 0; i < GRAD_ROWS; i++) {
          uint32_t pair = p[(r0 + i) * (np / 2) + q];
          for (int k = 0; k < D_VECTORS; k++) acc[i][k] = dot(acc[i][k], pair, w[k]);
        }
      }
      for (int i = 0; i < GRAD_ROWS && r0 + i < real; i++)
        for (int k = 0; k < D_VECTORS; k++)
          _mm512_storeu_ps(&grad_h[(r0 + i) * d + (k0 + k) * 16], acc[i][k]);
    }
  }
}

/* sums[n] += sum_r p[r][n] h[r] for all Np items: one thread's float32 total of grad_w */
static void block_grad_w(int64_t d, int64_t np, const uint32_t *pt, const __m512i *hv,
                         float *sums) {
  const int64_t half_rows = ROWS / 2, dv = d / 16;
  for (int64_t n0 = 0; n0 < np; n0 += GRAD_ITEMS) {
    for (int64_t k0 = 0; k0 < dv; k0 += D_VECTORS) {
      vec acc[GRAD_ITEMS][D_VECTORS];
      for (int i = 0; i < GRAD_ITEMS; i++)
        for (int k = 0; k < D_VECTORS; k++)
          acc[i][k] = _mm512_load_ps(&sums[(n0 + i) * d + (k0 + k) * 16]);
      for (int64_t q = 0; q < half_rows; q++) {
        __m512i x[D_VECTORS];
        for (int k = 0; k < D_VECTORS; k++) x[k] = _mm512_load_si512(&hv[q * dv + k0 + k]);
        for (int i = 0; i < GRAD_ITEMS; i++) {
          const int64_t n = n0 + i;
          uint32_t pair = pt[((n / 16) * half_rows + q) * 16 + n % 16];
          for (int k = 0; k < D_VECTORS; k++) acc[i][k] = dot(acc[i][k], pair, x[k]);
        }
      }
      for (int i = 0; i < GRAD_ITEMS; i++)
        for (int k = 0; k < D_VECTORS; k++)
          _mm512_store_ps(&sums[(n0 + i) * d + (k0 + k) * 16], acc[i][k]);
    }
  }
}

static void *aligned(size_t bytes) { return aligned_alloc(64, (bytes + 63) / 64 * 64); }

static void *zeroed(size_t bytes) {
  void *memory = aligned(bytes);
  if (memory) memset(memory, 0, bytes);
  return memory;
}

/* The item table W (items x d, bf16) in the wk and wv layouts, zero past the items */
static void pack_table(int64_t items, int64_t d, int64_t np, const uint16_t *w, uint32_t *wk,
                       uint32_t *wv) {
  const int64_t half = d / 2;
#pragma omp for schedule(static)
  for (int64_t n = 0; n < items; n++) {
    const uint32_t *row = (const uint32_t *)(w + n * d);
    for (int64_t p = 0; p < half; p++) wk[((n / 16) * half + p) * 16 + n % 16] = row[p];
    uint16_t *pairs = (uint16_t *)wv;
    for (int64_t c = 0; c < d; c++) pairs[((n / 2) * d + c) * 2 + n % 2] = w[n * d + c];
  }
}

int ce_available(void) { return 1; }

/* Bytes that ce_forward allocates for these sizes */
int64_t ce_scratch_bytes(int threads, int64_t items, int64_t d) {
  const int64_t np = (items + ITEM_TILE - 1) / ITEM_TILE * ITEM_TILE;
  return 2 * np * d * 2 + threads * (ROWS * np * 8 + ROWS * d * 4 + np * d * 4);
}

/* h: rows x d bf16, w: items x d bf16 (both contiguous), targets: rows int64 in
   0..items-1 (the caller checks); out: nll (rows,) float64, grad_h (rows x d) and grad_w
   (items x d) float32, the softmax part only (the one-hot part is the caller's).
   d must be a multiple of 64. Returns 0, or -1 when memory runs out (outputs unset). */
int ce_forward(int threads, int64_t rows, int64_t items, int64_t d, const uint16_t *h,
               const uint16_t *w, const int64_t *targets, double *nll, float *grad_h,
               float *grad_w) {
  const int64_t np = (items + ITEM_TILE - 1) / ITEM_TILE * ITEM_TILE;
  const int64_t blocks = (rows + ROWS - 1) / ROWS;
  if (threads > blocks) threads = blocks > 0 ? (int)blocks : 1;
  const size_t table = (size_t)np * d * 2, sums = (size_t)np * d * 4;
  const size_t total_at = (size_t)ROWS * np * 8 + (size_t)ROWS * d * 4;
  const size_t scratch = total_at + sums;
  uint32_t *wk = zeroed(table), *wv = zeroed(table);
  char *space = aligned(scratch * threads); /* all written before read, but the totals */
  int failed = !wk || !wv || !space;
  if (!failed) {
#pragma omp parallel num_threads(threads)
    {
      pack_table(items, d, np, w, wk, wv);
      /* the implicit barrier of pack_table's loop: the tables are complete */
      char *mine = space + scratch * omp_get_thread_num();
      float *logits = (float *)mine;                        /* ROWS x np float32 */
      uint16_t *p = (uint16_t *)(mine + (size_t)ROWS * np * 4);  /* ROWS x np bf16 */
      __m512i *pt = (__m512i *)(mine + (size_t)ROWS * np * 6);   /* np / 16 x ROWS / 2 */
      uint16_t *hb = (uint16_t *)(mine + (size_t)ROWS * np * 8); /* ROWS x d bf16 */
      uint16_t *hv = hb + ROWS * d;                              /* ROWS / 2 x d pairs */
      float *total = (float *)(mine + total_at);
      memset(total, 0, sums);
#pragma omp for schedule(static)
      for (int64_t block = 0; block < blocks; block++) {
        const int64_t first = block * ROWS;
        const int64_t real = rows - first < ROWS ? rows - first : ROWS;
        memcpy(hb, h + first * d, (size_t)real * d * 2);
        memset(hb + real * d, 0, (size_t)(ROWS - real) * d * 2);
        for (int64_t r = 0; r < ROWS; r += 2)
          for (int64_t c = 0; c < d; c++) {
            hv[(r / 2 * d + c) * 2] = hb[r * d + c];
            hv[(r / 2 * d + c) * 2 + 1] = hb[(r + 1) * d + c];
          }
        float top[ROWS], scale[ROWS];
        block_logits(d, items, np, (const uint32_t *)hb, (const __m512i *)wk, logits, top);
        for (int64_t r = 0; r < ROWS; r++) {
          int64_t target = r < real ? targets[first + r] : 0;
          double *likelihood = r < real ? &nll[first + r] : NULL;
          scale[r] = 1.0f / row_exp(items, np, logits + r * np, top[r], target, likelihood);
        }
        for (int64_t r = 0; r < ROWS; r += 2)
          pair_probs(np, logits + r * np, logits + (r + 1) * np, r < real ? scale[r] : 0.0f,
                     r + 1 < real ? scale[r + 1] : 0.0f, p + r * np, p + (r + 1) * np,
                     pt + r / 2, ROWS / 2);
        block_grad_h(d, np, (const uint32_t *)p, (const __m512i *)wv, real, grad_h + first * d);
        block_grad_w(d, np, (const uint32_t *)pt, (const __m512i *)hv, total);
      }
      /* grad_w = the threads' totals, added up */
      const int64_t parts = omp_get_num_threads();
#pragma omp for schedule(static)
      for (int64_t n = 0; n < items; n++)
        for (int64_t c = 0; c < d; c++) {
          float value = 0.0f;
          for (int64_t t = 0; t < parts; t++)
            value += ((const float *)(space + scratch * t + total_at))[n * d + c];
          grad_w[n * d + c] = value;
        }
    }
  }
  free(wk);
  free(wv);
  free(space);
  return failed ? -1 : 0;
}

#else

int ce_available(void) { return 0; }

int64_t ce_scratch_bytes(int threads, int64_t items, int64_t d) { return 0; }

int ce_forward(int threads, int64_t rows, int64_t items, int64_t d, const uint16_t *h,
               const uint16_t *w, const int64_t *targets, double *nll, float *grad_h,
               float *grad_w) {
  return -2;
}

#endif
