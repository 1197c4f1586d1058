// SPDX-License-Identifier: Apache-2.0
/// @file sampler.hpp
/// @brief Sampler-matched log-probabilities: log p(y) renormalised over the top-k / top-p support
/// the
///        sampler used (vLLM semantics: temperature, then top-k, then top-p), with entropy of the
///        truncated distribution and the gradient into the logits, so that the training ratio
///        pi_theta / pi_old is taken between the same distributions vLLM sampled from.
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/math.hpp>
#include <grpo/core/strided_view.hpp>
#include <grpo/logprob.hpp>
#include <grpo/ops/softmax.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace grpo {

/// What happens to tokens TIED with the top-k / top-p boundary value (bf16 logits tie often, and
/// the kept set decides the renormalised log-probs exactly where IS correction looks). Every
/// policy is deterministic: ties are ordered by token id.
///   ours:        top-k keeps every token equal to the k-th value (vLLM's `logits < tau` test);
///                top-p keeps tied tokens lowest id first (the library's original rule).
///   vllm_triton: vLLM's Triton top-k / top-p kernel (vllm/v1/sample/ops/topk_topp_triton.py,
///                snapshot 65874cc; `apply_top_k_top_p` uses it on GPU when Triton is present and
///                the batch has >= 8 rows): top-k keeps EXACTLY k tokens, the tokens equal to the
///                k-th value kept lowest id first (its duplicate counter runs in vocabulary
///                order); top-p keeps tied tokens lowest id first, the fewest that reach p.
///   vllm_torch:  vLLM's PyTorch path (apply_top_k_top_p_pytorch in topk_topp_sampler.py,
///                snapshot 3babc05; small batches and no-Triton builds): top-k keeps every tied
///                token; top-p sorts ascending and drops from the smallest while the cumulative
///                mass is <= 1 - p. torch's sort is not documented as stable; we define it as the
///                stable ascending order (what CUDA's radix sort gives), so at a top-p tie the
///                tokens are dropped LOWEST id first, i.e. kept highest id first.
enum class sampler_tie_policy : unsigned char { ours, vllm_triton, vllm_torch };

/// The sampler whose distribution the log-probabilities must match.
///
/// vLLM (v1 sampler: temperature, min-p logits processor, `apply_top_k_top_p`) semantics:
///   1. z = logits / T;
///   2. min-p (vLLM MinPLogitsProcessor, after temperature, before top-k / top-p): a token is
///      removed iff p_j < min_p * max_j p_j, i.e. z_j - z_max < log(min_p) (decided in double on
///      the logit gap, where vLLM compares float32 probabilities: a token within float32 rounding
///      of the threshold may be decided differently);
///   3. top-k: tau = k-th largest remaining z; every token with z < tau is removed; tokens EQUAL to
///      tau per the tie policy (all kept, or exactly k);
///   4. top-p: on the renormalised remaining probabilities sorted descending (ties ordered per the
///      tie policy), a token is kept iff the mass strictly before it is < p (the token that
///      crosses p is kept; the most probable token always). The cumulative mass is accumulated in
///      double, so a token within ~1e-7 of the boundary may be decided differently from vLLM's
///      float cumsum;
///   5. p~ = softmax over the kept support S.
/// log p~(y) = z_y - logsumexp_{S} z, and -inf when y is not in S (the current policy puts no
/// sampler mass on it; the ratio is then 0 and the row's gradient is 0).
/// Not reproduced: the Triton kernel's duplicate test |a - b| < 1e-15 (it merges distinct float
/// probabilities below ~1e-8 into one tie group; here ties are exact equality).
struct sampler_options {
  float temperature = 1.0f;          ///< T > 0
  index_t top_k = 0;                 ///< 0 (or >= V): no top-k
  float top_p = 1.0f;                ///< in (0, 1]; 1: no top-p
  float min_p = 0.0f;                ///< in [0, 1]; 0: no min-p
  sampler_tie_policy ties = sampler_tie_policy::ours;  ///< tokens tied at a boundary
  std::int64_t ignore_index = -100;  ///< rows with this id are skipped (outputs 0, zero gradient)
  int num_threads = 0;               ///< OpenMP threads (0: default)
};

namespace detail {

inline void validate(const sampler_options& o) {
  GRPO_EXPECTS(o.top_k >= 0, bad_option, "sampler_options::top_k must be >= 0");
  GRPO_EXPECTS(o.top_p > 0.0f && o.top_p <= 1.0f, bad_option,
               "sampler_options::top_p must be in (0, 1], got " + std::to_string(o.top_p));
  GRPO_EXPECTS(o.min_p >= 0.0f && o.min_p <= 1.0f, bad_option,
               "sampler_options::min_p must be in [0, 1], got " + std::to_string(o.min_p));
  GRPO_EXPECTS(o.ties == sampler_tie_policy::ours || o.ties == sampler_tie_policy::vllm_triton ||
                   o.ties == sampler_tie_policy::vllm_torch,
               bad_option, "sampler_options::ties: unknown policy");
}

inline namespace GRPO_ISA_ABI {  // bodies depend on the compile flags (core/isa.hpp)

/// Builds in `buf` (V floats) the row of raw logits with every token outside the sampler support
/// set to -inf; returns the row statistics over the support. `tmp` is scratch of V floats. Rows
/// with NaN / +inf are reported through `status`.
template <class T>
online_lse sampler_support_row(const T* row, index_t stride, index_t V, float beta,
                               const sampler_options& o, std::vector<float>& buf,
                               std::vector<float>& tmp, lp::scratch& w, lp::row_status& status) {
  buf.resize(static_cast<std::size_t>(V));
  lp::load(row, stride, V, buf.data());
  online_lse st = lp::row_stats(buf.data(), 1, V, beta, w, status);
  if (status != lp::row_status::ok) return st;
  const float ninf = -math::infinity<float>();
  // 2. min-p: remove z_j - z_max < log(min_p) (p_j < min_p p_max), z = beta x.
  if (o.min_p > 0.0f) {
    const double log_min_p = std::log(static_cast<double>(o.min_p));
    bool removed = false;
    for (index_t j = 0; j < V; ++j)
      if (static_cast<double>(beta) * (static_cast<double>(buf[j]) - st.m) < log_min_p) {
        buf[j] = ninf;
        removed = true;
      }
    if (removed) st = lp::row_stats(buf.data(), 1, V, beta, w, status);
  }
  // 3. top-k on the raw logits (T > 0 preserves the order): tau = k-th largest.
  if (o.top_k > 0 && o.top_k < V) {
    tmp.assign(buf.begin(), buf.end());
    const auto kth = tmp.begin() + (o.top_k - 1);
    std::nth_element(tmp.begin(), kth, tmp.end(), std::greater<float>());
    const float tau = *kth;
    // vllm_triton keeps exactly k: all tokens above tau, then the first (k - above) tokens equal
    // to tau in id order. The others keep every tied token.
    index_t tied_left = V;
    if (o.ties == sampler_tie_policy::vllm_triton) {
      index_t above = 0;
      for (index_t j = 0; j < V; ++j) above += buf[j] > tau ? 1 : 0;
      tied_left = o.top_k - above;
    }
    for (index_t j = 0; j < V; ++j) {
      if (buf[j] < tau) {
        buf[j] = ninf;
      } else if (buf[j] == tau && tau > ninf) {
        if (tied_left > 0)
          --tied_left;
        else
          buf[j] = ninf;
      }
    }
    st = lp::row_stats(buf.data(), 1, V, beta, w, status);
  }
  // 3. top-p on the top-k-renormalised distribution q_j = exp(beta (x_j - m) - log s).
  if (o.top_p < 1.0f) {
    const float m = st.m, log_s = st.log_sum();
    // Prefilter: masses of 0.25-nat buckets of log q below the maximum; the first buckets whose
    // mass reaches p bound the kept set (a token below them has >= p mass strictly before it).
    constexpr int nb = 160;  // 40 nats
    double mass[nb + 1] = {};
    for (index_t j0 = 0; j0 < V; j0 += lp::block) {
      const index_t n = std::min(lp::block, V - j0);
      for (index_t j = 0; j < n; ++j) w.a[j] = ops::log_softmax(buf[j0 + j], m, log_s, beta);
      lp::vexp_floor(w.a, w.b, n, lp::d_floor);
      for (index_t j = 0; j < n; ++j) {
        if (!(w.a[j] > ninf)) continue;
        const float below = beta * (m - buf[j0 + j]) * 4.0f;  // quarter-nats below the max
        const int b = below < static_cast<float>(nb) ? static_cast<int>(below) : nb;
        mass[b] += w.b[j];
      }
    }
    int last = nb;
    double acc = 0.0;
    for (int b = 0; b < nb; ++b) {
      acc += mass[b];
      if (acc >= static_cast<double>(o.top_p)) {
        last = b;
        break;
      }
    }
    // Candidates (value, id) sorted descending by value, ties by ascending id (ours,
    // vllm_triton) or descending id (vllm_torch: the stable ascending sort read backwards).
    const bool ids_down = o.ties == sampler_tie_policy::vllm_torch;
    std::vector<std::pair<float, index_t>> cand;
    for (index_t j = 0; j < V; ++j) {
      if (!(buf[j] > ninf)) continue;
      const float below = beta * (m - buf[j]) * 4.0f;
      if (last == nb || below < static_cast<float>(last + 1)) cand.emplace_back(buf[j], j);
    }
    std::sort(cand.begin(), cand.end(), [ids_down](const auto& a, const auto& b) {
      return a.first > b.first ||
             (a.first == b.first && (ids_down ? a.second > b.second : a.second < b.second));
    });
    double before = 0.0;
    std::size_t keep = 0;
    for (; keep < cand.size(); ++keep) {
      if (!(before < static_cast<double>(o.top_p))) break;
      before += math::exp(static_cast<double>(ops::log_softmax(cand[keep].first, m, log_s, beta)));
    }
    keep = std::max<std::size_t>(keep, 1);
    const float x_last = cand[keep - 1].first;
    const index_t id_last = cand[keep - 1].second;
    for (index_t j = 0; j < V; ++j)
      if (buf[j] < x_last || (buf[j] == x_last && (ids_down ? j < id_last : j > id_last)))
        buf[j] = ninf;
    st = lp::row_stats(buf.data(), 1, V, beta, w, status);
  }
  return st;
}

}  // inline namespace GRPO_ISA_ABI
}  // namespace detail

inline namespace GRPO_LOGPROB_ABI {

/// Sampler-matched selective log-softmax (see sampler_options for the exact semantics).
/// @param logits       [N, V] float / bfloat16 / float16 logits, any strides.
/// @param ids          [N] sampled ids (ignore_index rows skipped).
/// @param logp         [N] log p~(y) over the sampler support (-inf when y is outside it).
/// @param entropy      [N] entropy of p~ (optional: default-constructed view).
/// @param support_size [N] number of kept tokens (optional).
/// @pre as selective_log_softmax; top_k >= 0; top_p in (0, 1].
/// @post outputs written for every row; extra memory O(threads x V) floats (kept per thread).
template <class LT, class IT>
void sampler_log_softmax(strided_view<LT, 2> logits, strided_view<IT, 1> ids,
                         strided_view<float, 1> logp, strided_view<float, 1> entropy = {},
                         strided_view<std::int64_t, 1> support_size = {},
                         const sampler_options& opt = {}) {
  using T = std::remove_const_t<LT>;
  static_assert(
      std::is_same_v<T, float> || std::is_same_v<T, bfloat16> || std::is_same_v<T, float16>,
      "sampler_log_softmax: logits must be float, bfloat16 or float16");
  namespace lp = detail::lp;
  detail::validate(opt);
  const index_t N = logits.extent(0), V = logits.extent(1);
  expect_host(logits, "logits");
  expect_extents(ids, {N}, "ids");
  expect_extents(logp, {N}, "logp");
  const bool want_h = lp::requested(entropy), want_n = lp::requested(support_size);
  if (want_h) expect_extents(entropy, {N}, "entropy");
  if (want_n) expect_extents(support_size, {N}, "support_size");
  const float beta = lp::inverse_temperature(opt.temperature);
  lp::check_ids(ids, V, opt.ignore_index, "sampler_log_softmax: ids");
  lp::parallel_rows(N, opt.num_threads, [&](index_t i) {
    const auto y = static_cast<std::int64_t>(ids(i));
    if (y == opt.ignore_index) {
      logp(i) = 0.0f;
      if (want_h) entropy(i) = 0.0f;
      if (want_n) support_size(i) = 0;
      return;
    }
    thread_local std::vector<float> buf, tmp;
    lp::scratch w;
    lp::row_status status;
    const online_lse st = detail::sampler_support_row(&logits(i, 0), logits.stride(1), V, beta, opt,
                                                      buf, tmp, w, status);
    if (status != lp::row_status::ok) {
      lp::raise_row_status("sampler_log_softmax", i, status);
    }
    const float x_y = buf[static_cast<std::size_t>(y)];
    logp(i) = x_y > -math::infinity<float>() ? ops::log_softmax(x_y, st.m, st.log_sum(), beta)
                                             : -math::infinity<float>();
    if (want_h) entropy(i) = st.entropy();
    if (want_n) {
      std::int64_t c = 0;
      for (float v : buf) c += v > -math::infinity<float>() ? 1 : 0;
      support_size(i) = c;
    }
  });
}

/// Backward of sampler_log_softmax: dL/dx_j = (1/T) [g (delta_jy - p~_j) - h p~_j (log p~_j + H~)]
/// for j in the support S, 0 outside (S is locally constant in the logits). Rows whose target is
/// outside S have log p~ = -inf, a constant: their gradient row is 0. The support is recomputed.
/// @pre as sampler_log_softmax; grad_logits [N, V] float / bfloat16 / float16, not aliasing logits.
template <class LT, class IT, class GL, class GH, class G>
void sampler_log_softmax_backward(strided_view<LT, 2> logits, strided_view<IT, 1> ids,
                                  strided_view<GL, 1> grad_logp, strided_view<GH, 1> grad_entropy,
                                  strided_view<G, 2> grad_logits, const sampler_options& opt = {}) {
  using T = std::remove_const_t<LT>;
  static_assert(
      std::is_same_v<T, float> || std::is_same_v<T, bfloat16> || std::is_same_v<T, float16>,
      "sampler_log_softmax_backward: logits must be float, bfloat16 or float16");
  namespace lp = detail::lp;
  detail::validate(opt);
  const index_t N = logits.extent(0), V = logits.extent(1);
  expect_host(logits, "logits");
  expect_host(grad_logits, "grad_logits");
  expect_extents(ids, {N}, "ids");
  expect_extents(grad_logp, {N}, "grad_logp");
  const bool has_gh = lp::requested(grad_entropy);
  if (has_gh) expect_extents(grad_entropy, {N}, "grad_entropy");
  expect_extents(grad_logits, {N, V}, "grad_logits");
  const float beta = lp::inverse_temperature(opt.temperature);
  lp::check_ids(ids, V, opt.ignore_index, "sampler_log_softmax_backward: ids");
  lp::parallel_rows(N, opt.num_threads, [&](index_t i) {
    const auto y = static_cast<std::int64_t>(ids(i));
    G* out = &grad_logits(i, 0);
    const index_t os = grad_logits.stride(1);
    auto zero = [&] {
      for (index_t j = 0; j < V; ++j) out[j * os] = G{};
    };
    if (y == opt.ignore_index) return zero();
    thread_local std::vector<float> buf, tmp;
    lp::scratch w;
    lp::row_status status;
    const online_lse st = detail::sampler_support_row(&logits(i, 0), logits.stride(1), V, beta, opt,
                                                      buf, tmp, w, status);
    if (status != lp::row_status::ok) {
      lp::raise_row_status("sampler_log_softmax_backward", i, status);
    }
    const float x_y = buf[static_cast<std::size_t>(y)];
    if (!(x_y > -math::infinity<float>())) return zero();
    const float gh = has_gh ? static_cast<float>(grad_entropy(i)) : 0.0f;
    // The masked row (support only) is the "logits" of the gradient pass: -inf entries get 0.
    lp::row_grad(buf.data(), 1, V, beta, lp::summarise(st), static_cast<index_t>(y), x_y,
                 static_cast<float>(grad_logp(i)), gh, out, os, w);
  });
}

}  // namespace GRPO_LOGPROB_ABI
}  // namespace grpo
