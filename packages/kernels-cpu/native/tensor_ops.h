// Elementwise, reduction and data-movement kernels over plain float32 / int32 buffers: what the tfjs wasm
// backend runs single-threaded and slowly (broadcast compares, reductions over outer axes, transposes, exp)
// and the addon runs on the pool. Each function computes one range so that the addon can split the work; the
// TypeScript twins are in src/tensor-ops.ts and the op codes below must match theirs.
//
// ISA: tensor_ops.cc compiles its loops with `target_clones` (x86-64-v4 / x86-64-v3 / baseline), so the
// dynamic loader picks the widest vectors this CPU has; BITDISTILL_ISA does not apply to these loops.
#pragma once
#include <stddef.h>
#include <stdint.h>

namespace bd {

enum UnaryOp : int {
  kExp = 0,
  kLog = 1,
  kNeg = 2,
  kAbs = 3,
  kSqrt = 4,
  kRsqrt = 5,
  kSquare = 6,
  kSigmoid = 7,
  kRound = 8,  // half to even, as tf.round
  kClip = 9,   // min(max(x, lo), hi)
  kReciprocal = 10,
  kUnaryCount = 11,
};

enum BinaryOp : int { kAdd = 0, kSub = 1, kMul = 2, kDiv = 3, kMax = 4, kMin = 5, kBinaryCount = 6 };

enum CompareOp : int { kEq = 0, kNe = 1, kLt = 2, kLe = 3, kGt = 4, kGe = 5, kCompareCount = 6 };

enum ReduceOp : int { kSum = 0, kRMax = 1, kRMin = 2, kMean = 3, kReduceCount = 4 };

// y[i] = op(x[i]) for i in [0, n); lo, hi are the bounds of kClip.
void unary_f32(int op, const float* x, float* y, int64_t n, float lo, float hi);

// y[i] = a[i * sa] op b[i * sb] for i in [0, n); sa, sb in {0, 1} (0: broadcast one value along the row).
void binary_f32(int op, const float* a, int64_t sa, const float* b, int64_t sb, float* y, int64_t n);
void compare_f32(int op, const float* a, int64_t sa, const float* b, int64_t sb, uint8_t* y, int64_t n);
void compare_i32(int op, const int32_t* a, int64_t sa, const int32_t* b, int64_t sb, uint8_t* y, int64_t n);

// x is [outer, r, inner]; y[o, i] = reduce over j of x[o, j, i], for o in [o0, o1) and i in [i0, i1).
// Sums accumulate in float32 (several partial sums when inner == 1); kMean divides the sum by r.
void reduce_f32(int op, const float* x, float* y, int64_t o0, int64_t o1, int64_t r, int64_t inner, int64_t i0, int64_t i1);

// y[i] = (float)x[i]
void cast_u8_f32(const uint8_t* x, float* y, int64_t n);
void cast_i32_f32(const int32_t* x, float* y, int64_t n);

// A rows x cols block of 4-byte elements between two strided views: dst[r * dr + c * dc] = src[r * sr + c * sc].
// Unit strides on both inner sides are a memcpy per row, a zero source stride along the row a fill (tile /
// broadcast); a unit stride on the other axis of each side (a transpose) runs in cache-sized tiles (or the
// ISA's TransposeFn, chosen in tensor_ops_napi.cc).
void copy_block_u32(const uint32_t* src, int64_t sr, int64_t sc, uint32_t* dst, int64_t dr, int64_t dc, int64_t rows, int64_t cols);

// RMSNorm over rows of [rows, dim] (LlamaRMSNorm, float32): y = x * r * g with r = 1 / sqrt(mean(x^2) + eps),
// for rows [r0, r1).
void rmsnorm_f32(const float* x, const float* g, float* y, int64_t r0, int64_t r1, int64_t dim, float eps);

// Its gradient for rows [r0, r1): with u = dy * g and s = sum(u * x) per row,
//   dx = r * u - (r^3 / dim) * s * x,   dg += dy * x * r  (dg accumulates: the caller zeroes it).
void rmsnorm_grad_f32(const float* dy, const float* x, const float* g, float* dx, float* dg, int64_t r0, int64_t r1, int64_t dim, float eps);

// y[b, r] = wscale[r] * sum_c x[b, c] * (float)w[r, c] for rows [r0, r1): int8 weights with one float scale per
// row (the int8 embedding / lm_head), float32 activations; 16 float32 partial sums per row.
// The generic (any ISA) int8 x int8 rows product of MatvecI8Job (kernels.h), rows [r0, r1).
void matvec_i8q(const int8_t* w, const float* wscale, const int8_t* xq, const float* xs, float* y, int64_t rows, int64_t cols, int64_t xstride, int64_t batch, int64_t r0, int64_t r1);

// Per-row absmax int8 quantization of rows [r0, r1) of w [rows, cols], float32 arithmetic: s = max|w| / 127,
// q = clamp(round_half_even(w * (1 / s)), -127, 127); an all-zero row gets s = 0 and q = 0. Returns -1, or the
// first row holding NaN or infinity (where it stops).
int64_t quantize_rows_i8(const float* w, int8_t* q, float* scale, int64_t cols, int64_t r0, int64_t r1);

// Causal attention of T new positions (start .. start+T-1) over a KV cache, for the units u = t * Hkv + g in
// [u0, u1) (token t, KV head g with its query heads g * H / Hkv ..): q, out are [T, H, d]; kc, vc are [Hkv, cap, d];
// position start+t attends to cache rows 0 .. start+t. Scores are float32 dot products times `scale`, a
// max-subtracted softmax (exp to ~1 ulp), then the weighted sum of V rows. scores: 2 * (start + T) floats of scratch.
void attention_f32(const float* q, const float* kc, const float* vc, float* out, int64_t H, int64_t Hkv, int64_t d, int64_t cap, int64_t start,
                   float scale, float* scores, int64_t u0, int64_t u1);

// attention_f32 over a half-precision (IEEE binary16) cache: each K / V value is widened to float32 exactly, then
// the same arithmetic in the same order (the compiler may contract it differently: equal to ~1e-7, not bit for bit).
void attention_f16kv(const float* q, const uint16_t* kc, const uint16_t* vc, float* out, int64_t H, int64_t Hkv, int64_t d, int64_t cap,
                     int64_t start, float scale, float* scores, int64_t u0, int64_t u1);

// The first index of the largest value of x [n], as the loop `if (x[i] > x[best]) best = i` from best = 0 finds it
// (NaN never wins; a NaN at 0 stays): a vectorised max, then a scan for its first occurrence.
int64_t argmax_f32(const float* x, int64_t n);

// Rows of src [T, Hkv, d] into the cache dst [Hkv, cap, d] at positions start .. start+T-1, rounded to binary16
// (to nearest, ties to even; beyond 65504 to infinity, as IEEE conversion does).
void kv_store_f16(const float* src, uint16_t* dst, int64_t T, int64_t Hkv, int64_t d, int64_t cap, int64_t start);

// One AdamW update over elements [0, n) (torch.optim.AdamW, decoupled decay), in double per element like the
// TypeScript twin: gs = g * grad_scale; m = b1 m + (1 - b1) gs; v = b2 v + (1 - b2) gs^2 (m, v in place);
// out = p * (1 - lr wd) - lr (m / bc1) / (sqrt(v / bc2) + eps). out may be p.
struct AdamwParams {
  double beta1, beta2, eps, decay, lr, bc1, bc2, grad_scale;
};
void adamw_f32(const float* p, const float* g, float* m, float* v, float* out, int64_t n, const AdamwParams& h);

// --- Fused training ops (fused_napi.cc BitLinearF32 / SwigluF32 and their gradients) ---

// out[i] = (float)q[i] / s (s = 1: the codes as floats): the dequantized activations, as q / s in float32.
void int8_to_f32(const int8_t* q, float s, float* out, int64_t n);

// codes[i] = clamp(round_half_even(w[i] / d), -1, 1) for i in [0, n).
void ternary_codes_i8(const float* w, float d, int8_t* codes, int64_t n);

// sum of |w[i]| over [0, n), accumulated in double.
double abs_sum_f64(const float* w, int64_t n);
// sum of w[i]^2 over [0, n), accumulated in double (the gradient-norm pass).
double sq_sum_f64(const float* w, int64_t n);
// Latent-weight statistics of w under ternary scale d (codes r = w / d: r > 0.5 -> 1, r < -0.5 -> -1, else 0):
// out = {sum (w - c d)^2, sum w^2, count of ||w| / d - 0.5| < 0.05, count of zero codes}, in float64.
void ternary_stats_f64(const float* w, float d, int64_t n, double* out);

// out[i] = clamp(round_half_even(w[i] / d), -1, 1) * mul for i in [0, n): mul 1 gives the ternary codes,
// mul d the dequantized weights (exact: +-d or 0).
void ternary_f32(const float* w, float d, float mul, float* out, int64_t n);

// SwiGLU: y = silu(g) * u = g * sigmoid(g) * u, and its gradient
//   dg = dy * u * sig(g) * (1 + g * (1 - sig(g))),  du = dy * g * sig(g).
void swiglu_f32(const float* g, const float* u, float* y, int64_t n);
void swiglu_grad_f32(const float* dy, const float* g, const float* u, float* dg, float* du, int64_t n);

// --- Fused causal attention (fused_napi.cc AttentionTrainF32 and its gradient) ---

// RoPE (rotate_half, as HF Llama) of T rows of width d: y[t] = x[t] * cos[t] + rot(x[t]) * sin[t], rot(x) =
// [-x2, x1]; inverse != 0 applies its transpose (the backward): y = x * cos + [x2 * sin2, -x1 * sin1].
// x and y have row strides sx and sy; cos and sin are [T, d].
void rope_rows_f32(const float* x, int64_t sx, const float* cos, const float* sin, float* y, int64_t sy, int64_t T, int64_t d, int inverse);

// Causal softmax of a [T, T] score block in place: row i keeps j <= i, scaled by `scale`, max-subtracted exp,
// normalised (as tf.softmax of scale * s + mask with -1e9 above the diagonal); entries j > i become 0.
void causal_softmax_f32(float* s, int64_t T, float scale);

// Softmax backward in place, causal: dp[i, j] = scale * p[i, j] * (dp[i, j] - sum_k p[i, k] dp[i, k]).
void causal_softmax_grad_f32(const float* p, float* dp, int64_t T, float scale);

// --- Fused head loss (fused_napi.cc HeadLossF32): one row of answer CE and logit KD over a vocabulary ---

// Row z [V] of student logits (and zt of the teacher's, or null). CE where ce_mask != 0 and label >= 0:
// *ce = ce_mask * (log sum exp(z - max) - (z[label] - max)). KD where zt and kd_mask != 0: with
// log p = z / tau - max - log sum exp(...) for both, *kl = kd_mask * sum p_t (log p_t - log p_s). With g, the
// gradient: ce_mask ce_grad (softmax(z) - onehot) + kd_mask kd_grad (p_s - p_t). e, es, et: [V] scratch.
void head_loss_row_f32(const float* z, const float* zt, int64_t V, int32_t label, float ce_mask, float ce_grad, float kd_mask, float kd_grad, float tau, float* g,
                       float* e, float* es, float* et, double* ce, double* kl);

// Causal attention of one head for small head sizes (d <= 16), 16 rows per lane group (fused_napi.cc picks it):
// qT [d, Tp] (RoPE'd queries transposed, Tp = T rounded up to 16, the padding zero), kr [T, d] (RoPE'd keys),
// v [T, d]. Forward: y[i] (row stride sy) = softmax(causal(scale q_i kr^T)) v, as (sum_j e_ij v_j) / sum_j e_ij.
// Backward, query pass: dqr [T, d] = dS kr (before the inverse RoPE) and stats [3, T] (each row's max, 1 / sum,
// sum_j P dP); key pass: dkT, dvT [d, Tp] += (dS^T qr)^T, (P^T dy)^T from qr [T, d], dy (row stride sdy), krT,
// vT [d, Tp] and those stats. S, DP: [T, 16] scratch.
void attn16_fwd_f32(const float* qT, int64_t Tp, const float* kr, const float* v, int64_t T, int64_t d, float scale, float* y, int64_t sy, float* S);
void attn16_bwd_q_f32(const float* qT, const float* dyT, int64_t Tp, const float* kr, const float* v, int64_t T, int64_t d, float scale, float* dqr, float* stats,
                      float* S, float* DP);
void attn16_bwd_kv_f32(const float* qr, const float* dy, int64_t sdy, const float* krT, const float* vT, int64_t Tp, int64_t T, int64_t d, float scale,
                       const float* stats, float* dkT, float* dvT);

// --- Attention-relation KD (fused_napi.cc RelationKdF32) ---

// One (batch, relation head) of the relation KD for relation heads up to 16 wide, 16 rows per lane group
// (fused_napi.cc picks it): at [T, Dt], as [T, Ds] (cosine: rows L2-normalised), atT, asT their transposes
// [D, Tp] (Tp = T rounded up to 16, zero padded). The sum of the rows' KL(teacher || student) times inv into
// *kl; with dan ([T, Ds]), G ([T, Tp] scratch) takes the score gradient dS and dan = dS as; rel16_cols_f32 then
// adds dS^T as. buf: [4 T 16] scratch. Same formulas as relation_softmax_f32 and relation_kl_grad_f32.
void rel16_rows_f32(const float* at, const float* atT, int64_t Dt, const float* as, const float* asT, int64_t Ds, int64_t T, int64_t Tp, bool cosine, float inv,
                    float* buf, float* G, float* dan, double* kl);
void rel16_cols_f32(const float* as, const float* G, int64_t Ds, int64_t T, int64_t Tp, float* dan);

// Row softmax of s [T, T] into p (p may be s), and logp = max(log p, log 1e-8) computed as s - max - log(sum)
// (one log per row).
void relation_softmax_f32(const float* s, float* p, float* logp, int64_t T);

// One relation head of KL(teacher || student) and its gradient: with pT = max(p_t, 1e-8) (the teacher's clamped
// probabilities, exp(logp_t)), adds sum pT (logp_t - logp_s) * inv to *kl, and writes into g the gradient with
// respect to the student's scores: gP = -pT * inv / p_s where p_s >= 1e-8 (else 0), g = p_s (gP - sum_k gP p_s).
void relation_kl_grad_f32(const float* p_t, const float* p_s, const float* logp_s, const float* logp_t, float* g, int64_t T, float inv, double* kl);

}  // namespace bd
