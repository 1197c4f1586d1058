// SPDX-License-Identifier: Apache-2.0
/// @file row_kernels.ipp
/// @brief The vocabulary-row kernels written once over the packet `A` (simd::avx2 / simd::avx512):
///        the statistics sweep (block max, then one fused exp / sum / dot sweep per L1 block), the
///        gradient sweeps (full and from the row cache), and the software-pipelined statistics
///        sweep of the fused step. No include guard: vocab/kernels/<isa>/row.hpp includes it once
///        per ISA inside that ISA's target region and namespace, after `using A = ...;`.
///
/// The maths is the portable path's (vocab/row.hpp, ops/softmax.hpp formulas, exactly 0 mass at
/// the floor); the exp, the floor's exact position and the summation order differ. The sweeps
/// work in base 2: u = beta log2(e) (x - mb), e = 2^u by A::exp2_floor (relative error 1.9e-7 of
/// its polynomial, plus the rounding of u: <= 6e-8 |u|), u clamped at u_floor = -126, where
/// exp2_floor gives exactly 0, so the clamp is also the mask (entries with u <= -125.5, i.e.
/// d = beta (x - mb) <= -86.99, carry no mass; the portable path's floor is d <= -87).
/// One packet of the statistics sweep costs 14 operations: u = fma(x, c1, -c1 mb) (1), clamp
/// (1), exp2_floor (10), s += e (1), t += e u (1); the rounding of c1 mb is removed from the
/// block's sums afterwards (block_sums). The block-max pass adds 1 per packet (fp32: vmaxps; bf16
/// / fp16: signed 16-bit max and min of the raw patterns, 2 per 16 elements, no widening), and
/// 16-bit rows are widened by one unpack per packet in an order-free sweep (load2_unordered).
/// fp32 rows are read once from memory by the max pass and once more from L1 by the sweep.

using vf = typename A::vf;
/// Elements per packet, and per step of the unrolled sweeps (two independent packets).
inline constexpr index_t L = A::lanes;
inline constexpr index_t L2 = 2 * A::lanes;

/// Software prefetch of the compute-bound sweeps: 16 KiB ahead of the element being processed
/// (two fp32 blocks, four bf16 ones; L1 holds 32-48 KiB). The block-max pass is the one that meets
/// each line first; without the prefetch it waits on memory while the exp units idle, then the
/// sweep computes while memory idles. Measured on one Zen 5 core (AVX-512), fp32 rows streamed
/// from memory: 0.34 ns per logit without prefetch, 0.15 with it; L1- and L2-resident rows are
/// unaffected. Past the end of a row this touches the next row of a contiguous tensor (a prefetch
/// never faults).
inline constexpr std::size_t prefetch_bytes = 16384;

/// Prefetches the lines of the 2L elements at p + prefetch_bytes into L1.
template <class T>
GRPO_FORCEINLINE void prefetch_ahead(const T* p) noexcept {
  const char* q = reinterpret_cast<const char*>(p) + prefetch_bytes;
  for (std::size_t b = 0; b < std::size_t(L2) * sizeof(T); b += 64) A::prefetch(q + b);
}

/// The n < L elements at p widened, missing lanes -inf (no mass, never a maximum).
template <class T>
GRPO_FORCEINLINE vf load_tail(const T* p, index_t n) noexcept {
  return A::load_tail(p, n, -math::infinity<float>());
}

/// No side work in a statistics sweep.
struct no_side {
  GRPO_FORCEINLINE void step() noexcept {}
};

/// One block of another row's gradient, o_j = c e_j (the sweep of row_grad_cached), written 2L
/// elements per step of a statistics sweep: software pipelining of the fused step, so that the
/// gradient's non-temporal stores drain to memory while the exps of the next row are computed,
/// instead of the two phases alternating (one memory-bound, one compute-bound). The constructor
/// peels a head up to the stores' alignment (2L elements); finish() writes what the steps left
/// (alone, it is block_scale's streaming sweep). The exps are finite and in [0, 1] (a row whose
/// statistics succeeded), so with a finite c no product is NaN and the pair stores
/// (A::stream2_nonan: bf16 without the NaN repair, one pack per 2L) write the bits of stream();
/// a non-finite c (outside the fused step's contract, kept exact) takes stream() per packet.
template <class G>
struct side_block {
  const float* e;
  G* o;
  index_t n;
  vf c;
  index_t j = 0;
  bool finite;  ///< c is finite: the pair stores apply
  side_block(const float* e_, G* o_, index_t n_, float c_) noexcept
      : e(e_), o(o_), n(n_), c(A::set1(c_)), finite(std::isfinite(c_)) {
    constexpr std::uintptr_t align = std::uintptr_t(L2) * sizeof(G);
    const auto mis =
        static_cast<index_t>((reinterpret_cast<std::uintptr_t>(o) % align) / sizeof(G));
    if (mis == 0) return;
    const index_t h = std::min<index_t>(n, L2 - mis);
    if (mis % L == 0) {  // o is aligned to L elements: one packet streamed (h = L or n < L)
      if (h == L) {
        A::stream(o, A::mul(c, A::load(e)));
        j = L;
        return;
      }
    }
    for (; j < h; j += L) {
      const index_t cnt = std::min<index_t>(L, h - j);
      A::store_tail(o + j, A::mul(c, A::load_tail(e + j, cnt)), cnt);
    }
    j = h;
  }
  /// 2L elements at j (aligned), streamed.
  GRPO_FORCEINLINE void pair() noexcept {
    const vf a = A::mul(c, A::load(e + j)), b = A::mul(c, A::load(e + j + L));
    if (finite) {
      A::stream2_nonan(o + j, a, b);
    } else {
      A::stream(o + j, a);
      A::stream(o + j + L, b);
    }
    j += L2;
  }
  GRPO_FORCEINLINE void step() noexcept {
    if (j + L2 <= n) pair();
  }
  /// The remaining pairs in one loop per store kind (the kind tested once, not per pair).
  void finish() noexcept {
    const index_t pairs = (n - j) / L2;
    const float* GRPO_RESTRICT ej = e + j;
    const float* const end = ej + pairs * L2;
    G* GRPO_RESTRICT oj = o + j;
    const vf vc = c;
    if (finite) {
      for (; ej != end; ej += L2, oj += L2)
        A::stream2_nonan(oj, A::mul(vc, A::load(ej)), A::mul(vc, A::load(ej + L)));
    } else {
      for (; ej != end; ej += L2, oj += L2) {
        A::stream(oj, A::mul(vc, A::load(ej)));
        A::stream(oj + L, A::mul(vc, A::load(ej + L)));
      }
    }
    j += pairs * L2;
    if (j + L <= n) {
      A::stream(o + j, A::mul(c, A::load(e + j)));
      j += L;
    }
    if (j < n) A::store_tail(o + j, A::mul(c, A::load_tail(e + j, n - j)), n - j);
    j = n;
  }
};

/// log2(e): the sweeps' base-2 scale (u = beta log2(e) (x - mb)).
inline constexpr float log2e = 1.44269504088896341f;
/// The floor in base-2 units: exp2_floor(u_floor) = 0 exactly (see the file comment).
inline constexpr float u_floor = -126.0f;

/// Maximum of n widened elements (two independent accumulators). A NaN may or may not survive
/// (vmaxps; a 16-bit NaN pattern of either sign may be skipped); row_stats catches it through the
/// sum of exponentials. 16-bit rows (bf16, fp16: sign-magnitude patterns, NaN patterns beyond
/// the infinities) are scanned as signed integers without widening: among non-negative patterns
/// the integer maximum is the float maximum, among negative ones the integer minimum is (the
/// smallest magnitude), and any non-negative pattern beats every negative one.
template <class T>
GRPO_FORCEINLINE float block_max(const T* x, index_t n) noexcept {
  float m = -math::infinity<float>();
  index_t j = 0;
  if constexpr (sizeof(T) == 2) {
    constexpr index_t L16 = A::lanes16;
    if (n >= L16) {
      auto hi = A::set1_i16(std::numeric_limits<std::int16_t>::min());
      auto lo = A::set1_i16(std::numeric_limits<std::int16_t>::max());
      for (; j + L16 <= n; j += L16) {
        const auto v = A::load_bits16(x + j);
        hi = A::max_i16(hi, v);
        lo = A::min_i16(lo, v);
      }
      const std::int16_t h = A::hmax_i16(hi);
      const auto bits = static_cast<std::uint16_t>(h >= 0 ? h : A::hmin_i16(lo));
      m = static_cast<float>(widen(T::from_bits(bits)));
    }
    if (j == n) return m;
  }
  vf m0 = A::set1(-math::infinity<float>()), m1 = m0;
  for (; j + L2 <= n; j += L2) {
    m0 = A::max(m0, A::load(x + j));
    m1 = A::max(m1, A::load(x + j + L));
  }
  if (j + L <= n) {
    m0 = A::max(m0, A::load(x + j));
    j += L;
  }
  if (j < n) m1 = A::max(m1, load_tail(x + j, n - j));
  const float mv = A::hmax(A::max(m0, m1));
  return mv > m ? mv : m;  // a NaN m (16-bit NaN pattern) stays
}

/// The fused block pass over n widened elements of x: s = sum e_j, t = sum e_j d_j with
/// d_j = beta (x_j - mb), e_j = e^(d_j) (0 at the floor), e_j written to e when Store;
/// side.step() once per 2L elements (side work of the fused pipeline).
/// Exact (always with Store: the cache must hold e^(d_j), exactly 1 at the maximum; and where
/// c1 mb overflows a float): u = c1 (x - mb), 2 operations. Otherwise one fma, u' = c1 x - p with p = fl(c1 mb): u' = u + r with r = c1 mb - p (exact by
/// an fma), so the sums carry the factor 2^r, removed from the block's sums: s = 2^-r s',
/// sum e u = 2^-r (t' - r s'). The order of the elements is free there (bf16 widened by one
/// unpack per packet). NaN (a NaN or +inf logit) passes the clamp (max returns its second
/// operand) and reaches the sums; -inf gives u = -inf, clamped, e = 0.
template <bool Store, bool Exact, class T, class Side>
GRPO_FORCEINLINE void block_sums(const T* GRPO_RESTRICT x, float* GRPO_RESTRICT e, index_t n,
                                 float mb, float beta, float& s, float& t, Side& side) noexcept {
  const float c1 = beta * log2e, p = c1 * mb;
  const vf vc1 = A::set1(c1), vmb = A::set1(mb), vnp = A::set1(-p), fl = A::set1(u_floor);
  vf s0 = A::zero(), s1 = s0, t0 = s0, t1 = s0;
  const auto term = [&](vf xv, vf& as, vf& at) noexcept {
    const vf u = A::max(fl, Exact ? A::mul(A::sub(xv, vmb), vc1) : A::fmadd(xv, vc1, vnp));
    const vf ev = A::exp2_floor(u);
    as = A::add(as, ev);
    at = A::fmadd(ev, u, at);
    return ev;
  };
  index_t j = 0;
  for (; j + L2 <= n; j += L2) {
    prefetch_ahead(x + j);
    side.step();
    vf a, b;
    if constexpr (Store) {
      a = A::load(x + j);
      b = A::load(x + j + L);
    } else {
      A::load2_unordered(x + j, a, b);
    }
    const vf e0 = term(a, s0, t0);
    const vf e1 = term(b, s1, t1);
    if constexpr (Store) {
      A::store(e + j, e0);
      A::store(e + j + L, e1);
    }
  }
  if (j + L <= n) {
    const vf e0 = term(A::load(x + j), s0, t0);
    if constexpr (Store) A::store(e + j, e0);
    j += L;
  }
  if (j < n) {
    const vf e0 = term(load_tail(x + j, n - j), s0, t0);
    if constexpr (Store) A::store_tail(e + j, e0, n - j);
  }
  float sv = A::hsum(A::add(s0, s1)), tv = A::hsum(A::add(t0, t1));
  if constexpr (!Exact) {
    const float r = std::fma(c1, mb, -p);  // c1 mb - p, exact
    // k = 2^-r - 1: two terms of the series where |r| <= 2^-10 (|c1 mb| < 8192), error < 1e-10.
    const float lr = -r * 0.693147180559945309f;
    const float k = std::fabs(r) <= 0x1p-10f ? lr * (1.0f + 0.5f * lr) : std::exp2(-r) - 1.0f;
    tv = std::fma(-r, sv, tv);  // sum e' (u' - r)
    tv = std::fma(tv, k, tv);
    sv = std::fma(sv, k, sv);
  }
  s = sv;
  t = tv * (beta / c1);  // d = u beta / c1
}

/// (count of entries equal to mb) - 1 + (sum of e_j over the others): the exact e_blk of a block
/// dominated by its maximum (rare: s - 1 < 2^-6), and its t = sum e_j d_j again with u = c1 (x -
/// mb) (exactly 0 at the maximum: a row of one value has entropy exactly 0, as on the portable
/// path, with no residue of the rounding that block_sums removes).
template <class T>
float dominated_rest(const T* x, index_t n, float mb, float beta, float& t) noexcept {
  const float c1 = beta * log2e;
  const vf vmb = A::set1(mb), vc1 = A::set1(c1), fl = A::set1(u_floor);
  vf rest = A::zero(), tt = A::zero();
  int count = 0;
  for (index_t j = 0; j < n; j += L) {
    const vf xv = j + L <= n ? A::load(x + j) : load_tail(x + j, n - j);
    const auto top = A::cmp_eq(xv, vmb);
    count += A::count(top);
    const vf u = A::max(fl, A::mul(A::sub(xv, vmb), vc1));
    const vf ev = A::select(top, A::zero(), A::exp2_floor(u));
    rest = A::add(rest, ev);
    tt = A::fmadd(ev, u, tt);
  }
  t = A::hsum(tt) * (beta / c1);
  return static_cast<float>(count - 1) + A::hsum(rest);
}

/// No pending gradient row.
struct no_pending {};

/// row_stats on a contiguous row (vocab/row.hpp's row_stats_portable, the packet spelling). With
/// a pending_row, block b of that row's gradient is written during block b of this sweep;
/// `pend_done` receives the first element of the pending row not yet written (the caller
/// completes it after an early return).
template <class T, class Pend = no_pending>
online_lse row_stats_contig(const T* row, index_t V, float beta, row_status& status,
                            row_cache* cache, Pend* pend = nullptr,
                            index_t* pend_done = nullptr) {
  constexpr bool has_pend = !std::is_same_v<Pend, no_pending>;
  online_lse st(beta);
  status = row_status::ok;
  for (index_t j0 = 0; j0 < V; j0 += block) {
    const index_t n = std::min(block, V - j0);
    const T* x = row + j0;
    const float mb = block_max(x, n);
    if (cache) cache->bmax[static_cast<std::size_t>(j0 / block)] = mb;
    if (!(mb > -math::infinity<float>())) {
      for (index_t j = 0; j < n; ++j)
        if (!(static_cast<float>(widen(x[j])) == -math::infinity<float>())) {
          status = row_status::non_finite;
          return st;
        }
      if (cache) std::fill_n(cache->e.data() + j0, n, 0.0f);
      if constexpr (has_pend) {
        side_block sb(pend->cache->e.data() + j0, pend->out + j0, n, pend->coef(j0 / block));
        sb.finish();
        *pend_done = j0 + n;
      }
      continue;
    }
    float s = 0.0f, t = 0.0f;
    const auto sweep = [&](auto& side) {
      if (cache)
        block_sums<true, true>(x, cache->e.data() + j0, n, mb, beta, s, t, side);
      else if (std::fabs(beta * log2e * mb) <= std::numeric_limits<float>::max())
        block_sums<false, false>(x, nullptr, n, mb, beta, s, t, side);
      else  // |c1 mb| overflows (logits near the float range): no shift to correct
        block_sums<false, true>(x, nullptr, n, mb, beta, s, t, side);
    };
    if constexpr (has_pend) {
      side_block sb(pend->cache->e.data() + j0, pend->out + j0, n, pend->coef(j0 / block));
      sweep(sb);
      sb.finish();
      *pend_done = j0 + n;
    } else {
      no_side none;
      sweep(none);
    }
    if (!(s <= std::numeric_limits<float>::max())) {
      status = row_status::non_finite;
      return st;
    }
    float e_blk = s - 1.0f;
    if (e_blk < 0.015625f) e_blk = dominated_rest(x, n, mb, beta, t);
    st.merge(online_lse::from_partial(beta, mb, e_blk, t));
  }
  if (st.empty()) status = row_status::all_masked;
  return st;
}

/// The statistics pass of a contiguous row (cache already sized when given).
template <class T>
online_lse row_stats(const T* row, index_t V, float beta, row_status& status, row_cache* cache) {
  return row_stats_contig(row, V, beta, status, cache);
}

/// Writes o[0, n) from f(j, cnt), the packet of elements j.. (cnt < L: a partial packet whose
/// first cnt lanes are used). Stream: non-temporal stores after a head that aligns o + j to L
/// elements; the caller issues A::sfence() before any other store to these lines.
template <bool Stream, class G, class F>
GRPO_FORCEINLINE void write_block(G* o, index_t n, F&& f) noexcept {
  index_t j = 0;
  if constexpr (Stream) {
    constexpr std::uintptr_t align = std::uintptr_t(L) * sizeof(G);
    const auto mis =
        static_cast<index_t>((reinterpret_cast<std::uintptr_t>(o) % align) / sizeof(G));
    if (mis != 0) {
      const index_t h = std::min<index_t>(n, L - mis);
      A::store_tail(o, f(index_t(0), h), h);
      j = h;
    }
    for (; j + L <= n; j += L) A::stream(o + j, f(j, L));
  } else {
    for (; j + L <= n; j += L) A::store(o + j, f(j, L));
  }
  if (j < n) A::store_tail(o + j, f(j, n - j), n - j);
}

/// Per-row constants of the gradient sweep (grad_consts::make).
struct grad_consts {
  vf c1, c0, ga, gb;
  /// The non-target gradient of ops::log_softmax_grad_nontarget,
  ///   beta [-g q - h q (log q + H)] = q (a log q + b),  a = -beta h,  b = -beta (g + h H),
  /// in base 2: u = c1 x + c0 ~ log2(e) log q (c1 = beta log2 e, c0 = -(c1 m + log2(e) log s)
  /// rounded from double, remainder g: u_true = u + g), q = 2^u 2^g and log q = (u + g) beta / c1,
  /// so o = 2^u (ga u + gb) with ga = 2^g a beta / c1, gb = 2^g (a g beta / c1 + b).
  static grad_consts make(float beta, const row_summary& rs, float g_logp,
                          float g_entropy) noexcept {
    const float c1 = beta * log2e;
    const double c0d = -(double(c1) * rs.m + double(rs.log_s) * 1.4426950408889634);
    const float c0 = static_cast<float>(c0d);
    const double g = c0d - c0, sc = std::exp2(g), r = double(beta) / c1;
    const double a = -double(beta) * g_entropy;
    const double b = -double(beta) * (double(g_logp) + double(g_entropy) * rs.entropy);
    return {A::set1(c1), A::set1(c0), A::set1(static_cast<float>(sc * a * r)),
            A::set1(static_cast<float>(sc * (a * r * g + b)))};
  }
};

/// The gradient sweep of one contiguous segment: per packet u = max(c1 x + c0, u_floor),
/// o = 2^u (ga u + gb) (GradH = false: ga = 0, o = 2^u gb), exactly 0 at the floor (masked
/// entries included; -0 where the factor is negative, as on the portable path).
/// 14 operations per packet (GradH), 13 without. `o` may equal `x` (in place): each packet is
/// loaded before its store.
template <bool GradH, bool Stream, class T, class G>
GRPO_FORCEINLINE void block_grad(const T* x, G* o, index_t n, const grad_consts& k) noexcept {
  const vf fl = A::set1(u_floor);
  write_block<Stream>(o, n, [&](index_t j, index_t cnt) noexcept {
    vf xv;
    if (cnt == L) {
      if (j % L2 == 0) prefetch_ahead(x + j);
      xv = A::load(x + j);
    } else {
      xv = load_tail(x + j, cnt);
    }
    const vf u = A::max(fl, A::fmadd(xv, k.c1, k.c0));
    const vf q = A::exp2_floor(u);
    return A::mul(q, GradH ? A::fmadd(k.ga, u, k.gb) : k.gb);
  });
}

/// The gradient sweep of row_grad_cached over one block: o_j = c e_j (Stream: side_block's
/// sweep, pairs of packets per non-temporal store).
template <bool Stream, class G>
GRPO_FORCEINLINE void block_scale(const float* GRPO_RESTRICT e, G* GRPO_RESTRICT o, index_t n,
                                  float c) noexcept {
  if constexpr (Stream) {
    side_block<G>(e, o, n, c).finish();
  } else {
    const vf vc = A::set1(c);
    write_block<false>(o, n, [&](index_t j, index_t cnt) noexcept {
      return A::mul(vc, cnt == L ? A::load(e + j) : A::load_tail(e + j, cnt));
    });
  }
}

/// vocab/engine.hpp's row_grad on a contiguous row and a contiguous output: one sweep per block
/// straight from the row to the output (in place allowed), then the exact target element.
template <class T, class G>
void row_grad(const T* row, index_t V, float beta, const row_summary& rs, index_t y, float x_y,
              float g_logp, float g_entropy, G* out, bool stream) noexcept {
  const grad_consts k = grad_consts::make(beta, rs, g_logp, g_entropy);
  const auto sweep = [&](auto gradh, auto nt) {
    for (index_t j0 = 0; j0 < V; j0 += block)
      block_grad<decltype(gradh)::value, decltype(nt)::value>(row + j0, out + j0,
                                                              std::min(block, V - j0), k);
  };
  const auto with = [&](auto nt) {
    g_entropy != 0.0f ? sweep(std::true_type{}, nt) : sweep(std::false_type{}, nt);
  };
  if (!(std::fabs(A::hmax(k.c0)) <= std::numeric_limits<float>::max())) {
    // c1 m + log2(e) log s overflows a float (logits near the float range): the formula per
    // element, with the portable path's floor (exactly 0 at or below d_floor).
    for (index_t j = 0; j < V; ++j) {
      const float lq = ops::log_softmax(static_cast<float>(widen(row[j])), rs.m, rs.log_s, beta);
      out[j] = narrow<G>(lq > d_floor ? ops::log_softmax_grad(lq, math::exp(lq), false, g_logp,
                                                              g_entropy, rs.entropy, beta)
                                      : 0.0f);
    }
  } else if (stream) {
    with(std::true_type{});
    A::sfence();  // order the non-temporal stores before the target's store below
  } else {
    with(std::false_type{});
  }
  if (y >= 0) {
    const float lq = ops::log_softmax(x_y, rs.m, rs.log_s, beta);
    out[y] = narrow<G>(
        ops::log_softmax_grad(lq, math::exp(lq), true, g_logp, g_entropy, rs.entropy, beta));
  }
}

/// vocab/engine.hpp's row_grad_cached into a contiguous output: o_j = c_b e_j per block b with
/// c_b = -beta g exp(beta (mb - m) - log s) (0 for a masked block), then the exact target.
template <class G>
void row_grad_cached(const row_cache& c, index_t V, float beta, const row_summary& rs, index_t y,
                     float x_y, float g_logp, G* out, bool stream) noexcept {
  for (index_t j0 = 0; j0 < V; j0 += block) {
    const index_t n = std::min(block, V - j0);
    const float mb = c.bmax[static_cast<std::size_t>(j0 / block)];
    const float scale = mb > -math::infinity<float>()
                            ? math::exp(ops::log_softmax(mb, rs.m, rs.log_s, beta))
                            : 0.0f;
    if (stream)
      block_scale<true>(c.e.data() + j0, out + j0, n, -beta * g_logp * scale);
    else
      block_scale<false>(c.e.data() + j0, out + j0, n, -beta * g_logp * scale);
  }
  if (stream) A::sfence();
  if (y >= 0) {
    const float lq = ops::log_softmax(x_y, rs.m, rs.log_s, beta);
    out[y] = narrow<G>(ops::log_softmax_grad(lq, math::exp(lq), true, g_logp, 0.0f, 0.0f, beta));
  }
}

/// row_stats of a contiguous row, keeping its exps in `cache` (sized), that also writes the
/// pending gradient row `p` (non-temporal stores, block b of p during block b of this sweep). On
/// return p is complete, also after an error in this row.
template <class T, class G>
online_lse row_stats_pipelined(const T* row, index_t V, float beta, row_status& status,
                               row_cache& cache, pending_row<G>& p) {
  index_t done = 0;
  const online_lse st = row_stats_contig(row, V, beta, status, &cache, &p, &done);
  for (index_t j0 = done; j0 < V; j0 += block)  // what an early return left of p
    block_scale<true>(p.cache->e.data() + j0, p.out + j0, std::min(block, V - j0),
                      p.coef(j0 / block));
  A::sfence();  // order the non-temporal stores before the target's store
  p.write_target();
  return st;
}

/// The compute floor of the statistics sweep (benchmarks/logprob): sum of exp_fast(max(x, d_floor))
/// over n L1-resident floats, one exp per element with the sweep's exp and two accumulators.
inline float exp_probe(const float* x, index_t n) noexcept {
  const vf fl = A::set1(d_floor);
  vf s0 = A::zero(), s1 = s0;
  index_t j = 0;
  for (; j + L2 <= n; j += L2) {
    s0 = A::add(s0, A::exp_fast(A::max(fl, A::load(x + j))));
    s1 = A::add(s1, A::exp_fast(A::max(fl, A::load(x + j + L))));
  }
  for (; j + L <= n; j += L) s0 = A::add(s0, A::exp_fast(A::max(fl, A::load(x + j))));
  float s = A::hsum(A::add(s0, s1));
  for (; j < n; ++j) s += math::fast_exp_bounded(x[j] < d_floor ? d_floor : x[j]);
  return s;
}
