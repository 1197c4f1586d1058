// SPDX-License-Identifier: Apache-2.0
/// @file dense.hpp
/// @brief AVX-512 passes 2 / 3 of the dense divergence rows (moved verbatim from the former
///        detail/engine.hpp): the vector element operators vdiv<K> (twins of detail::div_op<K>),
///        the gradient stores (plain, or non-temporal for 64-byte aligned rows), the forward- and
///        reverse-KL gradient sweeps after the fused pass 1, and avx512::dense_row. Compiled in
///        every x86-64 build inside a target region; called only after grpo::active_isa() said
///        avx512.
#pragma once

#include <distill/detail/divergence.hpp>
#include <distill/detail/row_math.hpp>
#include <distill/kernels/avx512/pass1.hpp>
#include <grpo/core/isa.hpp>
#include <grpo/simd/arch/avx512/packet.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#if GRPO_SIMD_HAS_AVX512_PACKET
#include <immintrin.h>

GRPO_BEGIN_TARGET_AVX512
namespace grpo::distill::detail {
inline namespace GRPO_ISA_ABI {
namespace avx512 {

/// Per-row constants of the element operators as registers: both rows' log-softmax states
/// (log q = beta (x - m) - log s) and the mixture weights w, 1 - w.
struct vctx {
  vf ms, ls, mu, lu, beta, w, w1;
  vf dl;  ///< ls - lu: lp - lq = beta ((u - mu) - (x - ms)) + (ls - lu) (one temperature)
  GRPO_FORCEINLINE vf lq(vf x) const noexcept {  // ops::log_softmax
    return _mm512_fmsub_ps(beta, _mm512_sub_ps(x, ms), ls);
  }
  GRPO_FORCEINLINE vf lp(vf u) const noexcept {
    return _mm512_fmsub_ps(beta, _mm512_sub_ps(u, mu), lu);
  }
  /// lp - lq in 4 operations, each row's offset taken out before the two are subtracted (rows
  /// offset by +-1e4 keep their digits).
  GRPO_FORCEINLINE vf lp_minus_lq(vf x, vf u) const noexcept {
    return _mm512_fmadd_ps(beta, _mm512_sub_ps(_mm512_sub_ps(u, mu), _mm512_sub_ps(x, ms)), dl);
  }
};

/// Vector twins of div_op<K> (the same formulas as grpo::ops, with the same 0 log 0 = 0
/// selects written as zero-masking): from the raw logits x (student), u (teacher) and the
/// cached probabilities q, p of one vector, the loss term `val` and g = dl/dlq (for the forward
/// KL the whole dl/dz' = q - p, ops::forward_kl_dz). The mixture log lM = log(M) comes from
/// v512::log of M = w_p p + w_q q formed from the cached probabilities: log(0) = -inf only where
/// p = q = 0, and those lanes are masked out (no 0 * inf: the Liger JSD NaN). Careful: the chunk
/// holds a probability >= 1/64 (see forward KL).
template <divergence K>
struct vdiv;

template <>
struct vdiv<divergence::forward_kl> {
  static constexpr bool unit_g = true;
  template <bool Careful>
  static GRPO_FORCEINLINE void eval(const vctx& C, vf x, vf u, vf p, vf q, vf& val,
                                    vf& g) noexcept {
    const vf zero = _mm512_setzero_ps();
    const vf t = C.lp_minus_lq(x, u);
    const __mmask16 kp = _mm512_cmp_ps_mask(p, zero, _CMP_GT_OQ);
    val = _mm512_maskz_mul_ps(kp, p, t);  // ops::forward_kl
    g = _mm512_sub_ps(q, p);
    if constexpr (Careful) {
      // ops::forward_kl_dz: p expm1(lq - lp) (5-term series) where |lq - lp| < 1/64: there q - p
      // cancels when both approach 1. Where the chunk's probabilities are all below 1/64 (its
      // scale factors, the probabilities at its maxima, say so) q - p is as accurate as the
      // series, whose lq - lp then carries |log q| ulps of its own.
      const vf d = _mm512_sub_ps(zero, t);
      vf c = _mm512_fmadd_ps(d, v5::set1(1.0f / 120.0f), v5::set1(1.0f / 24.0f));
      c = _mm512_fmadd_ps(d, c, v5::set1(1.0f / 6.0f));
      c = _mm512_fmadd_ps(d, c, v5::set1(0.5f));
      c = _mm512_fmadd_ps(d, c, v5::set1(1.0f));
      const __mmask16 near = _mm512_cmp_ps_mask(_mm512_abs_ps(d), v5::set1(0.015625f), _CMP_LT_OQ);
      g = _mm512_mask_mul_ps(g, near, p, _mm512_mul_ps(d, c));
    }
  }
};
template <>
struct vdiv<divergence::reverse_kl> {
  static constexpr bool unit_g = false;
  template <bool>
  static GRPO_FORCEINLINE void eval(const vctx& C, vf x, vf u, vf, vf q, vf& val, vf& g) noexcept {
    const __mmask16 kq = _mm512_cmp_ps_mask(q, _mm512_setzero_ps(), _CMP_GT_OQ);
    const vf t = _mm512_sub_ps(_mm512_setzero_ps(), C.lp_minus_lq(x, u));  // lq - lp
    val = _mm512_maskz_mul_ps(kq, q, t);                                   // ops::reverse_kl
    g = _mm512_maskz_mul_ps(kq, q, _mm512_add_ps(t, v5::set1(1.0f)));      // ops::reverse_kl_grad
  }
};
template <>
struct vdiv<divergence::jsd> {
  static constexpr bool unit_g = false;
  template <bool>
  static GRPO_FORCEINLINE void eval(const vctx& C, vf x, vf u, vf p, vf q, vf& val,
                                    vf& g) noexcept {
    const vf zero = _mm512_setzero_ps();
    const vf bp = _mm512_mul_ps(C.w, p), bq = _mm512_mul_ps(C.w1, q);
    const vf lm = v5::log(_mm512_add_ps(bp, bq));
    const __mmask16 kp = _mm512_cmp_ps_mask(bp, zero, _CMP_GT_OQ);
    const __mmask16 kq = _mm512_cmp_ps_mask(bq, zero, _CMP_GT_OQ);
    g = _mm512_maskz_mul_ps(kq, bq, _mm512_sub_ps(C.lq(x), lm));  // ops::jsd_grad
    val = _mm512_add_ps(_mm512_maskz_mul_ps(kp, bp, _mm512_sub_ps(C.lp(u), lm)), g);  // ops::jsd
  }
};
template <>
struct vdiv<divergence::skew_forward_kl> {
  static constexpr bool unit_g = false;
  template <bool>
  static GRPO_FORCEINLINE void eval(const vctx& C, vf, vf u, vf p, vf q, vf& val, vf& g) noexcept {
    const vf zero = _mm512_setzero_ps();
    const vf bq = _mm512_mul_ps(C.w1, q);
    const vf m = _mm512_fmadd_ps(C.w, p, bq);
    const vf lm = v5::log(m);
    const __mmask16 kp = _mm512_cmp_ps_mask(p, zero, _CMP_GT_OQ);
    val = _mm512_maskz_mul_ps(kp, p, _mm512_sub_ps(C.lp(u), lm));  // ops::skew_forward_kl
    // ops::skew_forward_kl_grad: -p (1 - a) q / M
    g = _mm512_maskz_div_ps(kp, _mm512_sub_ps(zero, _mm512_mul_ps(p, bq)), m);
  }
};
template <>
struct vdiv<divergence::skew_reverse_kl> {
  static constexpr bool unit_g = false;
  template <bool>
  static GRPO_FORCEINLINE void eval(const vctx& C, vf x, vf, vf p, vf q, vf& val, vf& g) noexcept {
    const vf zero = _mm512_setzero_ps();
    const vf bq = _mm512_mul_ps(C.w, q);
    const vf m = _mm512_fmadd_ps(C.w1, p, bq);
    const vf t = _mm512_sub_ps(C.lq(x), v5::log(m));
    const __mmask16 kq = _mm512_cmp_ps_mask(q, zero, _CMP_GT_OQ);
    val = _mm512_maskz_mul_ps(kq, q, t);  // ops::skew_reverse_kl
    // ops::skew_reverse_kl_grad: q (lq - lM + 1 - a q / M)
    const vf r = _mm512_sub_ps(v5::set1(1.0f), _mm512_div_ps(bq, m));
    g = _mm512_maskz_mul_ps(kq, q, _mm512_add_ps(t, r));
  }
};

/// float -> 16 bf16 bit patterns in a register for the gradient stores: vcvtneps2bf16 where the
/// target has AVX512-BF16 and GRPO_DISTILL_CVTBF16 is on (it flushes values below 2^-126 to 0),
/// else v512::to_bf16 (the rounding of grpo::bfloat16).
GRPO_FORCEINLINE __m256i to_bf16(vf v) noexcept {
#if defined(__AVX512BF16__) && GRPO_DISTILL_CVTBF16
  return reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v));
#else
  return v5::to_bf16(v);
#endif
}

/// How a gradient row is written: 0 any stride or type (scalar narrow, the portable rounding),
/// 1 contiguous float / bf16 / fp16 (vector stores), 2 the same with a 64-byte aligned row:
/// non-temporal stores, so the gradient lines are not first read from DRAM (read for ownership):
/// 1 write per element instead of 1 read + 1 write.
enum : int { write_any = 0, write_contiguous = 1, write_stream = 2 };

template <class G>
inline constexpr bool vector_grad_v =
    std::is_same_v<G, float> || std::is_same_v<G, bfloat16> || std::is_same_v<G, float16>;

/// The write mode of a gradient row (write_any when there is none).
template <class G>
int write_mode(const G* g, index_t gs) noexcept {
  if constexpr (vector_grad_v<G>) {
    if (g == nullptr || gs != 1) return write_any;
    return reinterpret_cast<std::uintptr_t>(g) % 64 == 0 ? write_stream : write_contiguous;
  } else {
    (void)g;
    (void)gs;
    return write_any;
  }
}

/// Writes the first cnt of 16 gradient values at element j of g (stride gs) in write mode Mode
/// (every vector of a row starts at a multiple of 16 elements, hence 64 / 32 bytes aligned in
/// write_stream mode).
template <int Mode, class G>
GRPO_FORCEINLINE void put_grad(G* g, index_t gs, index_t j, vf v, index_t cnt) noexcept {
  if constexpr (Mode != write_any && vector_grad_v<G>) {
    if (cnt == 16) {
      if constexpr (std::is_same_v<G, float>) {
        if constexpr (Mode == write_stream) {
          _mm512_stream_ps(g + j, v);
        } else {
          _mm512_storeu_ps(g + j, v);
        }
      } else if constexpr (std::is_same_v<G, bfloat16>) {
        if constexpr (Mode == write_stream) {
          _mm256_stream_si256(reinterpret_cast<__m256i*>(g + j), to_bf16(v));
        } else {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(g + j), to_bf16(v));
        }
      } else {
        if constexpr (Mode == write_stream) {
          _mm256_stream_si256(reinterpret_cast<__m256i*>(g + j),
                              _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        } else {
          v5::store_fp16(g + j, v);
        }
      }
      return;
    }
  }
  alignas(64) float t[16];
  _mm512_store_ps(t, v);
  for (index_t i = 0; i < cnt; ++i) g[(j + i) * gs] = narrow<G>(t[i]);
}

/// Passes 2 (and 3) of a dense divergence row after avx::row_lse_store filled both caches: xs,
/// xu the contiguous float rows pass 1 read. Forward KL: one sweep writes the loss and q - p.
/// The others: pass 2 computes the loss and G = sum g and parks g_j in the teacher's exp cache
/// (read at j just before), pass 3 writes gscale (g_j - q_j G). Per 16 elements the forward-KL
/// sweep is 2 sub + 2 fmsub (log-probs), 2 mul (p, q), 3 (loss), 9 (q - p), 1 (scale) and the
/// store. g may alias the student row: every vector is read before the gradient over it is
/// written.
template <divergence K, int Mode, class G>
void dense_passes(const float* GRPO_RESTRICT xs, const float* GRPO_RESTRICT xu,
                  const row_state<float>& st, const row_state<float>& tt,
                  const row_exp_cache<float>& cs, row_exp_cache<float>& cu, G* g, index_t gs,
                  const dense_row_args<float>& R, double& value) noexcept {
  using op = vdiv<K>;
  constexpr float ninf = -std::numeric_limits<float>::infinity();
  const index_t V = R.V;
  const vctx C{v5::set1(st.m),           v5::set1(st.log_s),
               v5::set1(tt.m),           v5::set1(tt.log_s),
               v5::set1(st.beta),        v5::set1(R.div.w),
               v5::set1(1.0f - R.div.w), v5::set1(st.log_s - tt.log_s)};
  const vf vninf = v5::set1(ninf), vgs = v5::set1(R.gscale);
  const float* GRPO_RESTRICT es = cs.e.data();
  float* GRPO_RESTRICT eu = cu.e.data();
  const bool write = g != nullptr;
  double total = 0.0, gsum = 0.0;
  for (index_t j0 = 0, c = 0; j0 < V; j0 += chunk, ++c) {
    const index_t n = std::min(chunk, V - j0), nf = n / 16 * 16;
    const float sq = cs.scale[static_cast<std::size_t>(c)];
    const float sp = cu.scale[static_cast<std::size_t>(c)];
    const vf scs = v5::set1(sq), scu = v5::set1(sp);
    vf va = _mm512_setzero_ps(), vg = _mm512_setzero_ps();
    // One vector; x / u are the raw rows (-inf on padding lanes, whose cached e is 0: p = q = 0
    // there, masked out by the element operators).
    auto body = [&](auto careful, index_t j, vf x, vf u, index_t cnt) {
      const vf q = _mm512_mul_ps(_mm512_loadu_ps(es + j), scs);
      const vf p = _mm512_mul_ps(_mm512_loadu_ps(eu + j), scu);
      vf val, gr;
      op::template eval<decltype(careful)::value>(C, x, u, p, q, val, gr);
      va = _mm512_add_ps(va, val);
      if constexpr (op::unit_g) {
        if (write) put_grad<Mode>(g, gs, j, _mm512_mul_ps(vgs, gr), cnt);
      } else {
        vg = _mm512_add_ps(vg, gr);
        _mm512_storeu_ps(eu + j, gr);
      }
    };
    auto sweep = [&](auto careful) {
      for (index_t i = 0; i < nf; i += 16)
        body(careful, j0 + i, _mm512_loadu_ps(xs + j0 + i), _mm512_loadu_ps(xu + j0 + i), 16);
      if (nf < n) {
        const __mmask16 k = head_mask(n - nf);
        body(careful, j0 + nf, _mm512_mask_loadu_ps(vninf, k, xs + j0 + nf),
             _mm512_mask_loadu_ps(vninf, k, xu + j0 + nf), n - nf);
      }
    };
    // scale_c is the largest probability of chunk c (e = 1 at its maximum).
    if (op::unit_g && (sq >= 0.015625f || sp >= 0.015625f))
      sweep(std::true_type{});
    else
      sweep(std::false_type{});
    total += static_cast<double>(v5::hsum(va));
    if constexpr (!op::unit_g) gsum += static_cast<double>(v5::hsum(vg));
  }
  value = total * static_cast<double>(R.vscale);
  if constexpr (!op::unit_g) {
    if (!write) return;
    // Pass 3: gscale (g_j - q_j G), q_j G = e_j (scale_c G) (ops::softmax_chain).
    const float G_ = static_cast<float>(gsum);
    for (index_t j0 = 0, c = 0; j0 < V; j0 += chunk, ++c) {
      const index_t n = std::min(chunk, V - j0);
      const vf qg = v5::set1(cs.scale[static_cast<std::size_t>(c)] * G_);
      for (index_t i = 0; i < n; i += 16) {
        const index_t j = j0 + i;
        const vf gr = _mm512_fnmadd_ps(_mm512_loadu_ps(es + j), qg, _mm512_loadu_ps(eu + j));
        put_grad<Mode>(g, gs, j, _mm512_mul_ps(vgs, gr), std::min<index_t>(16, n - i));
      }
    }
  }
  if constexpr (Mode == write_stream) _mm_sfence();  // order the streamed lines before return
}

/// The forward-KL gradient sweep after pair_pass1<true>: gscale (q_j - p_j) from the two exp
/// caches (mul + fmsub per 16 elements and the store); chunks holding a probability >= 1/64
/// take ops::forward_kl_dz's series path from the logits (vdiv<forward_kl>).
template <int Mode, class G>
void forward_kl_grad(const row_state<float>& st, const row_state<float>& tt,
                     const row_exp_cache<float>& cs, const row_exp_cache<float>& cu, G* g,
                     index_t gs, const dense_row_args<float>& R) noexcept {
  constexpr float ninf = -std::numeric_limits<float>::infinity();
  const index_t V = R.V;
  const vctx C{
      v5::set1(st.m),    v5::set1(st.log_s),  v5::set1(tt.m),      v5::set1(tt.log_s),
      v5::set1(st.beta), _mm512_setzero_ps(), _mm512_setzero_ps(), v5::set1(st.log_s - tt.log_s)};
  const vf vninf = v5::set1(ninf), vgs = v5::set1(R.gscale);
  const float* GRPO_RESTRICT es = cs.e.data();
  const float* GRPO_RESTRICT eu = cu.e.data();
  const float* GRPO_RESTRICT xs = cs.row;
  const float* GRPO_RESTRICT xu = cu.row;
  for (index_t j0 = 0, c = 0; j0 < V; j0 += chunk, ++c) {
    const index_t n = std::min(chunk, V - j0), nf = n / 16 * 16;
    const float sq = cs.scale[static_cast<std::size_t>(c)];
    const float sp = cu.scale[static_cast<std::size_t>(c)];
    if (sq >= 0.015625f || sp >= 0.015625f) {
      const vf scs = v5::set1(sq), scu = v5::set1(sp);
      for (index_t i = 0; i < n; i += 16) {
        const index_t j = j0 + i, cnt = std::min<index_t>(16, n - i);
        const __mmask16 k = cnt == 16 ? static_cast<__mmask16>(0xFFFF) : head_mask(cnt);
        vf val, gr;
        vdiv<divergence::forward_kl>::eval<true>(
            C, _mm512_mask_loadu_ps(vninf, k, xs + j), _mm512_mask_loadu_ps(vninf, k, xu + j),
            _mm512_mul_ps(_mm512_loadu_ps(eu + j), scu),
            _mm512_mul_ps(_mm512_loadu_ps(es + j), scs), val, gr);
        put_grad<Mode>(g, gs, j, _mm512_mul_ps(vgs, gr), cnt);
      }
    } else {
      const vf gq = v5::set1(sq * R.gscale), gp = v5::set1(sp * R.gscale);
      auto one = [&](index_t j, index_t cnt) {
        put_grad<Mode>(g, gs, j,
                       _mm512_fmsub_ps(_mm512_loadu_ps(es + j), gq,
                                       _mm512_mul_ps(_mm512_loadu_ps(eu + j), gp)),
                       cnt);
      };
      for (index_t i = 0; i < nf; i += 16) one(j0 + i, 16);
      if (nf < n) one(j0 + nf, n - nf);
    }
  }
  if constexpr (Mode == write_stream) _mm_sfence();  // order the streamed lines before return
}

/// The reverse-KL gradient after pair_pass1<2> summed the value KL: dKL(q || p)/dz'_j =
/// q_j (lq_j - lp_j - KL) (ops::reverse_kl_grad through ops::softmax_chain with G = KL + 1,
/// sum q = 1), 0 where q_j = 0: one sweep over the student's exp cache and the difference
/// D_j = a^s_j - a^u_j that pass 1 left in the teacher's cache (no logit is re-read: at
/// V = 151936 the two rows and two caches exceed L2). lq_j - lp_j = D_j + off_c with the chunk
/// constant off_c = beta (m^s_c - M_s) - log s_s - beta (m^u_c - M_u) + log s_u, in double.
template <int Mode, class G>
void reverse_kl_grad(const row_state<float>& st, const row_state<float>& tt, double kl,
                     const row_exp_cache<float>& cs, const row_exp_cache<float>& cu, G* g,
                     index_t gs, const dense_row_args<float>& R) noexcept {
  constexpr float ninf = -std::numeric_limits<float>::infinity();
  const index_t V = R.V;
  const vf zero = _mm512_setzero_ps();
  const double b = st.beta;
  const double base = -b * static_cast<double>(st.m) - static_cast<double>(st.log_s) +
                      b * static_cast<double>(tt.m) + static_cast<double>(tt.log_s) - kl;
  const float* GRPO_RESTRICT es = cs.e.data();
  const float* GRPO_RESTRICT du = cu.e.data();
  for (index_t j0 = 0, c = 0; j0 < V; j0 += chunk, ++c) {
    const std::size_t k = static_cast<std::size_t>(c);
    const index_t n = std::min(chunk, V - j0), nf = n / 16 * 16;
    const vf gq = v5::set1(cs.scale[k] * R.gscale);
    // off_c - KL (+inf for a chunk without teacher mass, -inf / NaN without student mass: the
    // latter are masked by q = 0 below)
    const double mu_c = cu.m[k] > ninf ? static_cast<double>(cu.m[k])
                                        : -std::numeric_limits<double>::infinity();
    const vf kc = v5::set1(static_cast<float>(b * static_cast<double>(cs.m[k]) - b * mu_c + base));
    auto one = [&](index_t j, index_t cnt) {
      const vf e = _mm512_loadu_ps(es + j);
      const __mmask16 kq = _mm512_cmp_ps_mask(e, zero, _CMP_GT_OQ);
      put_grad<Mode>(g, gs, j,
                     _mm512_maskz_mul_ps(kq, _mm512_mul_ps(e, gq),
                                         _mm512_add_ps(_mm512_loadu_ps(du + j), kc)),
                     cnt);
    };
    for (index_t i = 0; i < nf; i += 16) one(j0 + i, 16);
    if (nf < n) one(j0 + nf, n - nf);
  }
  if constexpr (Mode == write_stream) _mm_sfence();  // order the streamed lines before return
}

/// The AVX-512 dense row: the fused pass 1 of both rows (pair_pass1, prefetching the next row
/// pair's head as it ends), then the gradient sweep (forward KL, whose value pass 1 already
/// summed) or dense_passes.
template <divergence K, class S, class U, class G>
int dense_row(const S* s, index_t ss, const U* u, index_t us, G* g, index_t gs,
              const dense_row_args<float>& R, double& value) {
  constexpr bool fkl = K == divergence::forward_kl;
  constexpr bool rkl = K == divergence::reverse_kl;
  thread_caches<float>& tc = local_caches<float>();
  tc.student.reserve(R.V);
  tc.teacher.reserve(R.V);
  bool bad_s = false, bad_u = false;
  basic_online_lse<float> ls(R.beta_s), lu(R.beta_u);
  double kl = 0.0;
  pair_pass1<fkl   ? 1
             : rkl ? 2
                   : 0>(s, ss, u, us, R.V, R.beta_s, tc.student, tc.teacher, R.next_s,
                        R.next_s_bytes, ls, lu, bad_s, bad_u, &kl);
  if (bad_s) return student_not_finite;
  if (bad_u) return teacher_not_finite;
  if (ls.empty()) return student_empty;
  if (lu.empty()) return teacher_empty;
  const row_state<float> st{ls.m, ls.log_sum(), R.beta_s}, tt{lu.m, lu.log_sum(), R.beta_u};
  const int mode = write_mode(g, gs);
  if constexpr (fkl) {
    value = kl * static_cast<double>(R.vscale);
    if (mode == write_stream)
      forward_kl_grad<write_stream>(st, tt, tc.student, tc.teacher, g, gs, R);
    else if (mode == write_contiguous)
      forward_kl_grad<write_contiguous>(st, tt, tc.student, tc.teacher, g, gs, R);
    else if (g != nullptr)
      forward_kl_grad<write_any>(st, tt, tc.student, tc.teacher, g, gs, R);
    return row_ok;
  }
  if constexpr (rkl) {
    value = kl * static_cast<double>(R.vscale);
    if (mode == write_stream)
      reverse_kl_grad<write_stream>(st, tt, kl, tc.student, tc.teacher, g, gs, R);
    else if (mode == write_contiguous)
      reverse_kl_grad<write_contiguous>(st, tt, kl, tc.student, tc.teacher, g, gs, R);
    else if (g != nullptr)
      reverse_kl_grad<write_any>(st, tt, kl, tc.student, tc.teacher, g, gs, R);
    return row_ok;
  }
  switch (mode) {
    case write_stream:
      dense_passes<K, write_stream>(tc.student.row, tc.teacher.row, st, tt, tc.student, tc.teacher,
                                    g, gs, R, value);
      break;
    case write_contiguous:
      dense_passes<K, write_contiguous>(tc.student.row, tc.teacher.row, st, tt, tc.student,
                                        tc.teacher, g, gs, R, value);
      break;
    default:
      dense_passes<K, write_any>(tc.student.row, tc.teacher.row, st, tt, tc.student, tc.teacher, g,
                                 gs, R, value);
  }
  return row_ok;
}

}  // namespace avx512
}  // inline namespace GRPO_ISA_ABI
}  // namespace grpo::distill::detail
GRPO_END_TARGET

#endif  // GRPO_SIMD_HAS_AVX512_PACKET
