// SPDX-License-Identifier: Apache-2.0
/// @file vector_dense.ipp
/// @brief Passes 2 / 3 of the dense divergence rows written ONCE over an arch tag P (after
///        vector_pass1.ipp, in the same ISA region and namespace): the vector element operators
///        vdiv<K> (twins of detail::div_op<K>, the formulas of grpo::ops), the gradient stores
///        (plain, or non-temporal for 64-byte aligned rows), the forward- and reverse-KL gradient
///        sweeps after the fused pass 1, and dense_row. The algorithm of kernels/avx512/dense.hpp
///        with k-mask operations spelled as P::select / P::keep. No include guard, no intrinsics.

/// Per-row constants of the element operators as registers (avx512::vctx).
struct vctx {
  vf ms, ls, mu, lu, beta, w, w1;
  vf dl;  ///< ls - lu
  GRPO_FORCEINLINE vf lq(vf x) const noexcept { return P::fmsub(beta, P::sub(x, ms), ls); }
  GRPO_FORCEINLINE vf lp(vf u) const noexcept { return P::fmsub(beta, P::sub(u, mu), lu); }
  /// lp - lq, each row's offset taken out before the two are subtracted.
  GRPO_FORCEINLINE vf lp_minus_lq(vf x, vf u) const noexcept {
    return P::fmadd(beta, P::sub(P::sub(u, mu), P::sub(x, ms)), dl);
  }
};

/// Vector twins of div_op<K>: from the raw logits x (student), u (teacher) and the cached
/// probabilities q, p of one vector, the loss term `val` and g = dl/dlq (forward KL: the whole
/// dl/dz' = q - p, ops::forward_kl_dz); 0 log 0 = 0 as masks. Careful: the chunk holds a
/// probability >= 1/64 (forward KL series path).
template <divergence K>
struct vdiv;

template <>
struct vdiv<divergence::forward_kl> {
  static constexpr bool unit_g = true;
  template <bool Careful>
  static GRPO_FORCEINLINE void eval(const vctx& C, vf x, vf u, vf p, vf q, vf& val,
                                    vf& g) noexcept {
    const vf zero = P::zero();
    const vf t = C.lp_minus_lq(x, u);
    val = P::keep(P::cmp_gt(p, zero), P::mul(p, t));  // ops::forward_kl
    g = P::sub(q, p);
    if constexpr (Careful) {
      // ops::forward_kl_dz: p expm1(lq - lp) (5-term series) where |lq - lp| < 1/64.
      const vf d = P::sub(zero, t);
      vf c = P::fmadd(d, P::set1(1.0f / 120.0f), P::set1(1.0f / 24.0f));
      c = P::fmadd(d, c, P::set1(1.0f / 6.0f));
      c = P::fmadd(d, c, P::set1(0.5f));
      c = P::fmadd(d, c, P::set1(1.0f));
      const vf ad = P::max(d, P::sub(zero, d));
      g = P::select(P::cmp_gt(P::set1(0.015625f), ad), P::mul(p, P::mul(d, c)), g);
    }
  }
};
template <>
struct vdiv<divergence::reverse_kl> {
  static constexpr bool unit_g = false;
  template <bool>
  static GRPO_FORCEINLINE void eval(const vctx& C, vf x, vf u, vf, vf q, vf& val, vf& g) noexcept {
    const vmask kq = P::cmp_gt(q, P::zero());
    const vf t = P::sub(P::zero(), C.lp_minus_lq(x, u));         // lq - lp
    val = P::keep(kq, P::mul(q, t));                             // ops::reverse_kl
    g = P::keep(kq, P::mul(q, P::add(t, P::set1(1.0f))));        // ops::reverse_kl_grad
  }
};
template <>
struct vdiv<divergence::jsd> {
  static constexpr bool unit_g = false;
  template <bool>
  static GRPO_FORCEINLINE void eval(const vctx& C, vf x, vf u, vf p, vf q, vf& val,
                                    vf& g) noexcept {
    const vf zero = P::zero();
    const vf bp = P::mul(C.w, p), bq = P::mul(C.w1, q);
    const vf lm = P::log(P::add(bp, bq));
    g = P::keep(P::cmp_gt(bq, zero), P::mul(bq, P::sub(C.lq(x), lm)));  // ops::jsd_grad
    val = P::add(P::keep(P::cmp_gt(bp, zero), P::mul(bp, P::sub(C.lp(u), lm))), g);  // ops::jsd
  }
};
template <>
struct vdiv<divergence::skew_forward_kl> {
  static constexpr bool unit_g = false;
  template <bool>
  static GRPO_FORCEINLINE void eval(const vctx& C, vf, vf u, vf p, vf q, vf& val, vf& g) noexcept {
    const vf zero = P::zero();
    const vf bq = P::mul(C.w1, q);
    const vf m = P::fmadd(C.w, p, bq);
    const vf lm = P::log(m);
    const vmask kp = P::cmp_gt(p, zero);
    val = P::keep(kp, P::mul(p, P::sub(C.lp(u), lm)));  // ops::skew_forward_kl
    // ops::skew_forward_kl_grad: -p (1 - a) q / M
    g = P::keep(kp, div_(P::sub(zero, P::mul(p, bq)), m));
  }
};
template <>
struct vdiv<divergence::skew_reverse_kl> {
  static constexpr bool unit_g = false;
  template <bool>
  static GRPO_FORCEINLINE void eval(const vctx& C, vf x, vf, vf p, vf q, vf& val, vf& g) noexcept {
    const vf zero = P::zero();
    const vf bq = P::mul(C.w, q);
    const vf m = P::fmadd(C.w1, p, bq);
    const vf t = P::sub(C.lq(x), P::log(m));
    const vmask kq = P::cmp_gt(q, zero);
    val = P::keep(kq, P::mul(q, t));  // ops::skew_reverse_kl
    // ops::skew_reverse_kl_grad: q (lq - lM + 1 - a q / M)
    const vf r = P::sub(P::set1(1.0f), div_(bq, m));
    g = P::keep(kq, P::mul(q, P::add(t, r)));
  }
};

/// How a gradient row is written: any stride or type (scalar narrow), contiguous float / bf16 /
/// fp16 (vector stores), or the same with a 64-byte aligned row (non-temporal stores: 1 write
/// per element instead of read for ownership + write).
enum : int { write_any = 0, write_contiguous = 1, write_stream = 2 };

template <class G>
inline constexpr bool vector_grad_v =
    std::is_same_v<G, float> || std::is_same_v<G, bfloat16> || std::is_same_v<G, float16>;

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

/// Writes the first cnt of W gradient values at element j of g (stride gs) in write mode Mode.
template <int Mode, class G>
GRPO_FORCEINLINE void put_grad(G* g, index_t gs, index_t j, vf v, index_t cnt) noexcept {
  if constexpr (Mode != write_any && vector_grad_v<G>) {
    if (cnt == W) {
      if constexpr (Mode == write_stream)
        P::stream(g + j, v);
      else
        P::store(g + j, v);
      return;
    }
  }
  alignas(64) float t[W];
  P::store(t, v);
  for (index_t i = 0; i < cnt; ++i) g[(j + i) * gs] = narrow<G>(t[i]);
}

/// The (masked) vector at element j of a float row: full, or the first cnt lanes with -inf.
GRPO_FORCEINLINE vf load_row(const float* x, index_t j, index_t cnt) noexcept {
  return cnt == W ? P::load(x + j) : P::load_tail(x + j, cnt, -std::numeric_limits<float>::infinity());
}

/// Passes 2 (and 3) of a dense divergence row other than the KLs after pair_pass1<0>
/// (avx512::dense_passes): pass 2 the loss and G = sum g, g_j parked in the teacher's exp
/// cache; pass 3 writes gscale (g_j - q_j G).
template <divergence K, int Mode, class G>
void dense_passes(const float* GRPO_RESTRICT xs, const float* GRPO_RESTRICT xu,
                  const row_state<float>& st, const row_state<float>& tt,
                  const row_exp_cache<float>& cs, row_exp_cache<float>& cu, G* g, index_t gs,
                  const dense_row_args<float>& R, double& value) noexcept {
  using op = vdiv<K>;
  const index_t V = R.V;
  const vctx C{P::set1(st.m),           P::set1(st.log_s),
               P::set1(tt.m),           P::set1(tt.log_s),
               P::set1(st.beta),        P::set1(R.div.w),
               P::set1(1.0f - R.div.w), P::set1(st.log_s - tt.log_s)};
  const vf vgs = P::set1(R.gscale);
  const float* GRPO_RESTRICT es = cs.e.data();
  float* GRPO_RESTRICT eu = cu.e.data();
  const bool write = g != nullptr;
  double total = 0.0, gsum = 0.0;
  for (index_t j0 = 0, c = 0; j0 < V; j0 += chunk, ++c) {
    const index_t n = std::min(chunk, V - j0);
    const vf scs = P::set1(cs.scale[static_cast<std::size_t>(c)]);
    const vf scu = P::set1(cu.scale[static_cast<std::size_t>(c)]);
    vf va = P::zero(), vg = P::zero();
    for (index_t i = 0; i < n; i += W) {
      const index_t j = j0 + i, cnt = std::min<index_t>(W, n - i);
      const vf q = P::mul(P::load(es + j), scs);
      const vf p = P::mul(P::load(eu + j), scu);
      vf val, gr;
      op::template eval<false>(C, load_row(xs, j, cnt), load_row(xu, j, cnt), p, q, val, gr);
      va = P::add(va, val);
      vg = P::add(vg, gr);
      P::store(eu + j, gr);
    }
    total += static_cast<double>(P::hsum(va));
    gsum += static_cast<double>(P::hsum(vg));
  }
  value = total * static_cast<double>(R.vscale);
  if (!write) return;
  // Pass 3: gscale (g_j - q_j G), q_j G = e_j (scale_c G) (ops::softmax_chain).
  const float G_ = static_cast<float>(gsum);
  for (index_t j0 = 0, c = 0; j0 < V; j0 += chunk, ++c) {
    const index_t n = std::min(chunk, V - j0);
    const vf qg = P::set1(cs.scale[static_cast<std::size_t>(c)] * G_);
    for (index_t i = 0; i < n; i += W) {
      const index_t j = j0 + i;
      const vf gr = fnmadd_(P::load(es + j), qg, P::load(eu + j));
      put_grad<Mode>(g, gs, j, P::mul(vgs, gr), std::min<index_t>(W, n - i));
    }
  }
  if constexpr (Mode == write_stream) P::sfence();
}

/// The forward-KL gradient sweep after pair_pass1<1> (avx512::forward_kl_grad): gscale (q_j - p_j)
/// from the two exp caches; chunks holding a probability >= 1/64 take ops::forward_kl_dz's series
/// path from the logits.
template <int Mode, class G>
void forward_kl_grad(const row_state<float>& st, const row_state<float>& tt,
                     const row_exp_cache<float>& cs, const row_exp_cache<float>& cu, G* g,
                     index_t gs, const dense_row_args<float>& R) noexcept {
  const index_t V = R.V;
  const vctx C{P::set1(st.m),    P::set1(st.log_s), P::set1(tt.m), P::set1(tt.log_s),
               P::set1(st.beta), P::zero(),         P::zero(),     P::set1(st.log_s - tt.log_s)};
  const vf vgs = P::set1(R.gscale);
  const float* GRPO_RESTRICT es = cs.e.data();
  const float* GRPO_RESTRICT eu = cu.e.data();
  const float* GRPO_RESTRICT xs = cs.row;
  const float* GRPO_RESTRICT xu = cu.row;
  for (index_t j0 = 0, c = 0; j0 < V; j0 += chunk, ++c) {
    const index_t n = std::min(chunk, V - j0), nf = n / W * W;
    const float sq = cs.scale[static_cast<std::size_t>(c)];
    const float sp = cu.scale[static_cast<std::size_t>(c)];
    if (sq >= 0.015625f || sp >= 0.015625f) {
      const vf scs = P::set1(sq), scu = P::set1(sp);
      for (index_t i = 0; i < n; i += W) {
        const index_t j = j0 + i, cnt = std::min<index_t>(W, n - i);
        vf val, gr;
        vdiv<divergence::forward_kl>::eval<true>(C, load_row(xs, j, cnt), load_row(xu, j, cnt),
                                                 P::mul(P::load(eu + j), scu),
                                                 P::mul(P::load(es + j), scs), val, gr);
        put_grad<Mode>(g, gs, j, P::mul(vgs, gr), cnt);
      }
    } else {
      const vf gq = P::set1(sq * R.gscale), gp = P::set1(sp * R.gscale);
      auto one = [&](index_t j, index_t cnt) {
        put_grad<Mode>(g, gs, j, P::fmsub(P::load(es + j), gq, P::mul(P::load(eu + j), gp)), cnt);
      };
      for (index_t i = 0; i < nf; i += W) one(j0 + i, W);
      if (nf < n) one(j0 + nf, n - nf);
    }
  }
  if constexpr (Mode == write_stream) P::sfence();
}

/// The reverse-KL gradient after pair_pass1<2> summed KL (avx512::reverse_kl_grad):
/// q_j (lq_j - lp_j - KL) from the student's exp cache and the difference a^s - a^u that pass 1
/// left in the teacher's cache, 0 where q_j = 0.
template <int Mode, class G>
void reverse_kl_grad(const row_state<float>& st, const row_state<float>& tt, double kl,
                     const row_exp_cache<float>& cs, const row_exp_cache<float>& cu, G* g,
                     index_t gs, const dense_row_args<float>& R) noexcept {
  constexpr float ninf = -std::numeric_limits<float>::infinity();
  const index_t V = R.V;
  const vf zero = P::zero();
  const double b = st.beta;
  const double base = -b * static_cast<double>(st.m) - static_cast<double>(st.log_s) +
                      b * static_cast<double>(tt.m) + static_cast<double>(tt.log_s) - kl;
  const float* GRPO_RESTRICT es = cs.e.data();
  const float* GRPO_RESTRICT du = cu.e.data();
  for (index_t j0 = 0, c = 0; j0 < V; j0 += chunk, ++c) {
    const std::size_t k = static_cast<std::size_t>(c);
    const index_t n = std::min(chunk, V - j0), nf = n / W * W;
    const vf gq = P::set1(cs.scale[k] * R.gscale);
    const double mu_c = cu.m[k] > ninf ? static_cast<double>(cu.m[k])
                                        : -std::numeric_limits<double>::infinity();
    const vf kc = P::set1(static_cast<float>(b * static_cast<double>(cs.m[k]) - b * mu_c + base));
    auto one = [&](index_t j, index_t cnt) {
      const vf e = P::load(es + j);
      put_grad<Mode>(g, gs, j,
                     P::keep(P::cmp_gt(e, zero),
                             P::mul(P::mul(e, gq), P::add(P::load(du + j), kc))),
                     cnt);
    };
    for (index_t i = 0; i < nf; i += W) one(j0 + i, W);
    if (nf < n) one(j0 + nf, n - nf);
  }
  if constexpr (Mode == write_stream) P::sfence();
}

/// Runs f(std::integral_constant<int, Mode>{}) for the write mode of g.
template <class G, class F>
void with_write_mode(const G* g, index_t gs, F&& f) {
  switch (write_mode(g, gs)) {
    case write_stream: f(std::integral_constant<int, write_stream>{}); break;
    case write_contiguous: f(std::integral_constant<int, write_contiguous>{}); break;
    default: f(std::integral_constant<int, write_any>{});
  }
}

/// The dense row on this ISA (avx512::dense_row's contract): the fused pass 1 of both rows, then
/// the gradient sweep (the KLs, whose value pass 1 already summed) or dense_passes.
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
  pair_pass1<fkl ? 1 : rkl ? 2 : 0>(s, ss, u, us, R.V, R.beta_s, tc.student, tc.teacher, R.next_s,
                                    R.next_s_bytes, ls, lu, bad_s, bad_u, &kl);
  if (bad_s) return student_not_finite;
  if (bad_u) return teacher_not_finite;
  if (ls.empty()) return student_empty;
  if (lu.empty()) return teacher_empty;
  const row_state<float> st{ls.m, ls.log_sum(), R.beta_s}, tt{lu.m, lu.log_sum(), R.beta_u};
  if constexpr (fkl || rkl) {
    value = kl * static_cast<double>(R.vscale);
    if (g == nullptr) return row_ok;
  }
  with_write_mode(g, gs, [&](auto mode) {
    constexpr int M = decltype(mode)::value;
    if constexpr (fkl)
      forward_kl_grad<M>(st, tt, tc.student, tc.teacher, g, gs, R);
    else if constexpr (rkl)
      reverse_kl_grad<M>(st, tt, kl, tc.student, tc.teacher, g, gs, R);
    else
      dense_passes<K, M>(tc.student.row, tc.teacher.row, st, tt, tc.student, tc.teacher, g, gs,
                         R, value);
  });
  return row_ok;
}
