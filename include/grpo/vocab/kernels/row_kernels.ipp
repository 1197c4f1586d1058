// SPDX-License-Identifier: Apache-2.0
/// @file row_kernels.ipp
/// @brief The vocabulary-row kernels written once over the packet `A` (simd::avx2 / simd::avx512):
///        the statistics sweep (block max, then one fused exp / sum / dot sweep per L1 block), the
///        gradient sweeps (full and from the row cache), and the software-pipelined statistics
///        sweep of the fused step. No include guard: vocab/kernels/<isa>/row.hpp includes it once
///        per ISA inside that ISA's target region and namespace, after `using A = ...;`.
///
/// The maths is the portable path's (vocab/row.hpp, ops/softmax.hpp formulas, d_floor, exactly 0
/// mass at or below the floor); only the exp (A::exp_fast, relative error <= 3e-7 + 1e-7 |x|)
/// and the summation order differ. One packet costs: widening load (0 ops for fp32: a memory
/// operand; 2 for bf16 / fp16), d = beta (x - mb) (1-2), keep mask (1), clamp (1), exp (8 + 2^n),
/// s += e (1), t += e d (1), plus 1 max in the block-max pass. fp32 rows are read once from
/// memory by the max pass and once more from L1 by the sweep; 16-bit rows are widened inside both
/// sweeps (no copy).

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
/// peels a head up to the stores' alignment; finish() writes what the steps left.
template <class G>
struct side_block {
  const float* e;
  G* o;
  index_t n;
  vf c;
  index_t j = 0;
  side_block(const float* e_, G* o_, index_t n_, float c_) noexcept
      : e(e_), o(o_), n(n_), c(A::set1(c_)) {
    constexpr std::uintptr_t align = std::uintptr_t(L) * sizeof(G);
    const auto mis =
        static_cast<index_t>((reinterpret_cast<std::uintptr_t>(o) % align) / sizeof(G));
    if (mis != 0) {
      j = std::min<index_t>(n, L - mis);
      A::store_tail(o, A::mul(c, A::load_tail(e, j)), j);
    }
  }
  GRPO_FORCEINLINE void step() noexcept {
    if (j + L2 <= n) {
      A::stream(o + j, A::mul(c, A::load(e + j)));
      A::stream(o + j + L, A::mul(c, A::load(e + j + L)));
      j += L2;
    }
  }
  void finish() noexcept {
    for (; j + L <= n; j += L) A::stream(o + j, A::mul(c, A::load(e + j)));
    if (j < n) A::store_tail(o + j, A::mul(c, A::load_tail(e + j, n - j)), n - j);
    j = n;
  }
};

/// Maximum of n widened elements (two independent accumulators). A NaN may or may not survive
/// (vmaxps); row_stats catches it through the sum of exponentials.
template <class T>
GRPO_FORCEINLINE float block_max(const T* x, index_t n) noexcept {
  vf m0 = A::set1(-math::infinity<float>()), m1 = m0;
  index_t j = 0;
  for (; j + L2 <= n; j += L2) {
    m0 = A::max(m0, A::load(x + j));
    m1 = A::max(m1, A::load(x + j + L));
  }
  if (j + L <= n) {
    m0 = A::max(m0, A::load(x + j));
    j += L;
  }
  if (j < n) m1 = A::max(m1, load_tail(x + j, n - j));
  return A::hmax(A::max(m0, m1));
}

/// One packet of the statistics sweep: d = beta (x - mb) (Unit: beta = 1, no multiply), clamped
/// at d_floor, e = exp(d) with exactly 0 for d <= d_floor (masked -inf entries included); NaN (a
/// NaN or +inf logit) passes the mask and the clamp (max returns its second operand) and reaches
/// the sums. Returns e; dc receives the clamped d.
template <bool Unit>
GRPO_FORCEINLINE vf exp_term(vf x, vf vmb, vf vbeta, vf& dc) noexcept {
  const vf fl = A::set1(d_floor);
  vf d = A::sub(x, vmb);
  if constexpr (!Unit) d = A::mul(d, vbeta);
  const auto keep = A::cmp_nle(d, fl);
  dc = A::max(fl, d);
  return A::keep(keep, A::exp_fast(dc));
}

/// The fused block pass over n widened elements of x: s = sum e_j, t = sum e_j d_j, e_j written
/// to e when Store; side.step() once per 2L elements (side work of the fused pipeline).
template <bool Unit, bool Store, class T, class Side>
GRPO_FORCEINLINE void block_sums(const T* GRPO_RESTRICT x, float* GRPO_RESTRICT e, index_t n,
                                 float mb, float beta, float& s, float& t, Side& side) noexcept {
  const vf vmb = A::set1(mb), vb = A::set1(beta);
  vf s0 = A::zero(), s1 = s0, t0 = s0, t1 = s0;
  index_t j = 0;
  for (; j + L2 <= n; j += L2) {
    prefetch_ahead(x + j);
    side.step();
    vf d0, d1;
    const vf e0 = exp_term<Unit>(A::load(x + j), vmb, vb, d0);
    const vf e1 = exp_term<Unit>(A::load(x + j + L), vmb, vb, d1);
    s0 = A::add(s0, e0);
    t0 = A::fmadd(e0, d0, t0);
    s1 = A::add(s1, e1);
    t1 = A::fmadd(e1, d1, t1);
    if constexpr (Store) {
      A::store(e + j, e0);
      A::store(e + j + L, e1);
    }
  }
  if (j + L <= n) {
    vf d0;
    const vf e0 = exp_term<Unit>(A::load(x + j), vmb, vb, d0);
    s0 = A::add(s0, e0);
    t0 = A::fmadd(e0, d0, t0);
    if constexpr (Store) A::store(e + j, e0);
    j += L;
  }
  if (j < n) {
    vf d0;
    const vf e0 = exp_term<Unit>(load_tail(x + j, n - j), vmb, vb, d0);
    s0 = A::add(s0, e0);
    t0 = A::fmadd(e0, d0, t0);
    if constexpr (Store) A::store_tail(e + j, e0, n - j);
  }
  s = A::hsum(A::add(s0, s1));
  t = A::hsum(A::add(t0, t1));
}

/// (count of entries equal to mb) - 1 + (sum of e_j over the others): the exact e_blk of a block
/// dominated by its maximum (rare: s - 1 < 2^-6).
template <bool Unit, class T>
float dominated_rest(const T* x, index_t n, float mb, float beta) noexcept {
  const vf vmb = A::set1(mb), vb = A::set1(beta);
  vf rest = A::zero();
  int count = 0;
  for (index_t j = 0; j < n; j += L) {
    const vf xv = j + L <= n ? A::load(x + j) : load_tail(x + j, n - j);
    const auto top = A::cmp_eq(xv, vmb);
    count += A::count(top);
    vf dc;
    rest = A::add(rest, A::select(top, A::zero(), exp_term<Unit>(xv, vmb, vb, dc)));
  }
  return static_cast<float>(count - 1) + A::hsum(rest);
}

/// No pending gradient row.
struct no_pending {};

/// row_stats on a contiguous row (vocab/row.hpp's row_stats_portable, the packet spelling). With
/// a pending_row, block b of that row's gradient is written during block b of this sweep;
/// `pend_done` receives the first element of the pending row not yet written (the caller
/// completes it after an early return).
template <bool Unit, class T, class Pend = no_pending>
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
        block_sums<Unit, true>(x, cache->e.data() + j0, n, mb, beta, s, t, side);
      else
        block_sums<Unit, false>(x, nullptr, n, mb, beta, s, t, side);
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
    if (e_blk < 0.015625f) e_blk = dominated_rest<Unit>(x, n, mb, beta);
    st.merge(online_lse::from_partial(beta, mb, e_blk, t));
  }
  if (st.empty()) status = row_status::all_masked;
  return st;
}

/// The statistics pass of a contiguous row (cache already sized when given).
template <class T>
online_lse row_stats(const T* row, index_t V, float beta, row_status& status, row_cache* cache) {
  return beta == 1.0f ? row_stats_contig<true>(row, V, beta, status, cache)
                      : row_stats_contig<false>(row, V, beta, status, cache);
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

/// The gradient sweep of one contiguous segment: per packet, log q = beta (x - m) - log s,
/// q = exp(log q) with exactly 0 at or below d_floor (masked entries included), and the
/// non-target gradient of ops::log_softmax_grad_nontarget rewritten as one product
///   beta [-g q - h q (log q + H)] = q (a log q + b),  a = -beta h,  b = -beta (g + h H),
/// (GradH = false: a = 0, o = b q). `o` may equal `x` (in place): each packet is loaded before
/// its store.
template <bool Unit, bool GradH, bool Stream, class T, class G>
GRPO_FORCEINLINE void block_grad(const T* x, G* o, index_t n, float beta, const row_summary& rs,
                                 float g_logp, float g_entropy) noexcept {
  const vf vm = A::set1(rs.m), vls = A::set1(rs.log_s), vb = A::set1(beta);
  const vf fl = A::set1(d_floor);
  const vf a = A::set1(-beta * g_entropy), b = A::set1(-beta * (g_logp + g_entropy * rs.entropy));
  write_block<Stream>(o, n, [&](index_t j, index_t cnt) noexcept {
    vf xv;
    if (cnt == L) {
      if (j % L2 == 0) prefetch_ahead(x + j);
      xv = A::load(x + j);
    } else {
      xv = load_tail(x + j, cnt);
    }
    vf lq = A::sub(xv, vm);
    lq = Unit ? A::sub(lq, vls) : A::fmsub(lq, vb, vls);
    const auto keep = A::cmp_nle(lq, fl);
    const vf lqc = A::max(fl, lq);
    const vf q = A::exp_fast(lqc);
    return A::keep(keep, A::mul(q, GradH ? A::fmadd(a, lqc, b) : b));
  });
}

/// The gradient sweep of row_grad_cached over one block: o_j = c e_j.
template <bool Stream, class G>
GRPO_FORCEINLINE void block_scale(const float* GRPO_RESTRICT e, G* GRPO_RESTRICT o, index_t n,
                                  float c) noexcept {
  const vf vc = A::set1(c);
  write_block<Stream>(o, n, [&](index_t j, index_t cnt) noexcept {
    return A::mul(vc, cnt == L ? A::load(e + j) : A::load_tail(e + j, cnt));
  });
}

/// vocab/engine.hpp's row_grad on a contiguous row and a contiguous output: one sweep per block
/// straight from the row to the output (in place allowed), then the exact target element.
template <class T, class G>
void row_grad(const T* row, index_t V, float beta, const row_summary& rs, index_t y, float x_y,
              float g_logp, float g_entropy, G* out, bool stream) noexcept {
  const auto sweep = [&](auto unit, auto gradh, auto nt) {
    for (index_t j0 = 0; j0 < V; j0 += block)
      block_grad<decltype(unit)::value, decltype(gradh)::value, decltype(nt)::value>(
          row + j0, out + j0, std::min(block, V - j0), beta, rs, g_logp, g_entropy);
  };
  const auto with = [&](auto nt) {
    using yes = std::true_type;
    using no = std::false_type;
    if (beta == 1.0f)
      g_entropy != 0.0f ? sweep(yes{}, yes{}, nt) : sweep(yes{}, no{}, nt);
    else
      g_entropy != 0.0f ? sweep(no{}, yes{}, nt) : sweep(no{}, no{}, nt);
  };
  if (stream) {
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
  const online_lse st = beta == 1.0f
                            ? row_stats_contig<true>(row, V, beta, status, &cache, &p, &done)
                            : row_stats_contig<false>(row, V, beta, status, &cache, &p, &done);
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
