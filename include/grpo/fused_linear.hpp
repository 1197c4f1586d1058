// SPDX-License-Identifier: Apache-2.0
/// @file fused_linear.hpp
/// @brief Fused output projection + selective log-softmax + GRPO loss on the CPU: from hidden
/// states
///        [tokens, H] and the projection W [V, H], the per-token log-probabilities, the loss and
///        the gradients into the hidden states and W, chunked over tokens and vocabulary with Eigen
///        GEMM, never materialising the [tokens, V] logits (workspace independent of the token
///        count). Needs Eigen (link grpo::eigen).
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/strided_view.hpp>
#include <grpo/fused_grpo.hpp>
#include <grpo/logprob.hpp>
#include <grpo/loss.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace grpo {

/// Chunking of the fused linear path. Workspace: chunk_tokens x (H + vocab_chunk) floats plus
/// O(tokens) per-token values; it does not grow with tokens x V.
struct fused_linear_options {
  /// Temperature (applied to the logits h . w_v, gradient includes 1/T) and thread count.
  logprob_options logprob{};
  /// Token rows per GEMM chunk (only valid tokens are projected: masked ones are skipped). 0
  /// (default) sizes the [chunk, vocab block] fp32 logits workspace to `workspace_bytes`: large
  /// chunks keep the GEMMs efficient, small ones keep the workspace in the last-level cache.
  index_t chunk_tokens = 0;
  /// Budget of the logits workspace used when chunk_tokens = 0 (chunk = clamp(budget / (4 Vc),
  /// 16, 8192) tokens). 32 MiB (256 tokens at V = 32768) ran as fast as 128 MiB (1024 tokens)
  /// on one Zen 5 core at N = 4096, H = 256 (1.73 s vs 1.81 s CPU, the GEMMs alone 1.84 s);
  /// 8 MiB (64 tokens) was 15% slower (bench_fused_linear, workspace variants).
  std::size_t workspace_bytes = std::size_t(32) << 20;
  /// Vocabulary rows per GEMM block; 0 or >= V keeps the whole [chunk, V] logits block, so the
  /// single-pass schedule needs no recomputation (3 GEMMs of 2 N H V flops); smaller blocks bound
  /// the workspace further at the price of recomputing the logits in the gradient pass (4 GEMMs).
  index_t vocab_chunk = 0;
  /// As fused_grpo_options::schedule: single pass when the loss options are token-local.
  fused_schedule schedule = fused_schedule::automatic;
};

/// The token chunk fused_linear_* use for a vocabulary of V rows under `opt` (see chunk_tokens).
inline index_t fused_linear_chunk_tokens(const fused_linear_options& opt, index_t V) noexcept {
  if (opt.chunk_tokens > 0) return opt.chunk_tokens;
  const index_t vc = opt.vocab_chunk > 0 && opt.vocab_chunk < V ? opt.vocab_chunk : V;
  const auto c = static_cast<index_t>(opt.workspace_bytes / (4 * static_cast<std::size_t>(vc)));
  return std::clamp<index_t>(c, 16, 8192);
}

namespace detail {
inline namespace GRPO_ISA_ABI {  // bodies depend on the compile flags (core/isa.hpp)

using lin_rmat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
// The hidden dimension of W and dW must be contiguous (stride 1): Eigen's GEMM reads such maps in
// place, while any other inner stride would make it copy W at every product.
using lin_stride = Eigen::OuterStride<>;
using lin_cmap = Eigen::Map<const lin_rmat, 0, lin_stride>;
using lin_map = Eigen::Map<lin_rmat, 0, lin_stride>;

inline void expect_rows_contiguous(index_t inner_stride, index_t rows, const char* what) {
  GRPO_EXPECTS(inner_stride == 1 || rows <= 1, bad_option,
               std::string(what) +
                   ": the hidden dimension must have stride 1 (row-major [V, H]); "
                   "copy or transpose column-major storage first");
}

/// Per-token state of the vocabulary-blocked forward.
struct lin_token_state {
  online_lse st;
  float x_y = 0.0f;  ///< raw target logit h . w_y
};

/// The fused linear engine shared by the forward-only and the loss entry points. `coeffs(c, n,
/// tokens)` is called after the statistics of a chunk (single pass) and must fill g_lp / g_h of
/// those tokens; with two_phase every chunk's statistics come first, then `coeffs_all()`, then the
/// gradient pass recomputes the logits.
template <class IT>
struct linear_engine {
  strided_view<const float, 2> hidden;  // [N, H] (tokens flattened by the caller)
  strided_view<const float, 2> weight;  // [V, H]
  strided_view<IT, 1> ids;              // [N]
  std::vector<index_t> active;          // token indices to project
  float beta = 1.0f;
  index_t C = 256, Vc = 0, H = 0, V = 0;
  int threads = 0;
  std::vector<lin_token_state> state;  // per active token
  std::vector<float> logp, entropy;    // per token (N), 0 on inactive tokens
  std::vector<float> g_lp, g_h;        // per token coefficients
  lp::first_error err;
  lin_rmat hc, L, dh;  // workspaces [C, H], [C, Vc], [C, H]

  void gather(index_t c0, index_t n) {
    hc.resize(n, H);
    for (index_t r = 0; r < n; ++r) {
      const index_t k = active[static_cast<std::size_t>(c0 + r)];
      for (index_t h = 0; h < H; ++h) hc(r, h) = hidden(k, h);
    }
  }
  lin_cmap wblock(index_t v0, index_t nv) const {
    return lin_cmap(&weight(v0, 0), nv, H, lin_stride(weight.stride(0)));
  }
  /// L[:, :nv] = hc W[v0:v0+nv]^T (raw logits of the block).
  void logits_block(index_t n, index_t v0, index_t nv) {
    L.resize(n, nv);
    L.noalias() = hc * wblock(v0, nv).transpose();
  }
  /// Merges block statistics of the chunk's rows into their states.
  void stats_block(index_t c0, index_t n, index_t v0, index_t nv) {
    lp::parallel_rows(n, threads, [&](index_t r) {
      const index_t k = active[static_cast<std::size_t>(c0 + r)];
      lp::scratch w;
      lp::row_status s;
      const online_lse part = lp::row_stats(&L(r, 0), 1, nv, beta, w, s);
      if (s == lp::row_status::non_finite) err.set(k, s);
      auto& ts = state[static_cast<std::size_t>(c0 + r)];
      ts.st.merge(part);
      const auto y = static_cast<index_t>(ids(k));
      if (y >= v0 && y < v0 + nv) ts.x_y = L(r, y - v0);
    });
  }
  void finish_stats(index_t c0, index_t n) {
    for (index_t r = 0; r < n; ++r) {
      const index_t k = active[static_cast<std::size_t>(c0 + r)];
      const auto& ts = state[static_cast<std::size_t>(c0 + r)];
      if (ts.st.empty()) {
        err.set(k, lp::row_status::all_masked);
        continue;
      }
      logp[static_cast<std::size_t>(k)] = ops::log_softmax(ts.x_y, ts.st.m, ts.st.log_sum(), beta);
      entropy[static_cast<std::size_t>(k)] = ts.st.entropy();
    }
  }
  /// Forward statistics of chunk c0..c0+n (all vocabulary blocks). Leaves the last block in L.
  void forward_chunk(index_t c0, index_t n) {
    gather(c0, n);
    for (index_t r = 0; r < n; ++r) state[static_cast<std::size_t>(c0 + r)].st = online_lse(beta);
    for (index_t v0 = 0; v0 < V; v0 += Vc) {
      const index_t nv = std::min(Vc, V - v0);
      logits_block(n, v0, nv);
      stats_block(c0, n, v0, nv);
    }
    finish_stats(c0, n);
  }
  /// Gradient of chunk c0..c0+n into grad_hidden rows and grad_weight (accumulated). When the
  /// vocabulary is one block, L still holds the chunk's logits (no recomputation).
  template <class GH, class GW>
  void backward_chunk(index_t c0, index_t n, bool logits_in_L, GH& grad_hidden, GW& grad_weight) {
    if (!logits_in_L) gather(c0, n);
    dh.setZero(n, H);
    for (index_t v0 = 0; v0 < V; v0 += Vc) {
      const index_t nv = std::min(Vc, V - v0);
      if (!logits_in_L) logits_block(n, v0, nv);
      // dL/dlogits of the block, in place over L (ops::log_softmax_grad via lp::row_grad).
      lp::parallel_rows(n, threads, [&](index_t r) {
        const index_t k = active[static_cast<std::size_t>(c0 + r)];
        const auto& ts = state[static_cast<std::size_t>(c0 + r)];
        const auto y = static_cast<index_t>(ids(k));
        const bool here = y >= v0 && y < v0 + nv;
        lp::scratch w;
        lp::row_grad(&L(r, 0), 1, nv, beta, lp::summarise(ts.st), here ? y - v0 : index_t(-1),
                     ts.x_y, g_lp[static_cast<std::size_t>(k)], g_h[static_cast<std::size_t>(k)],
                     &L(r, 0), 1, w);
      });
      dh.noalias() += L * wblock(v0, nv);                              // [n, nv] x [nv, H]
      grad_weight.middleRows(v0, nv).noalias() += L.transpose() * hc;  // [nv, n] x [n, H]
    }
    for (index_t r = 0; r < n; ++r) {
      const index_t k = active[static_cast<std::size_t>(c0 + r)];
      for (index_t h = 0; h < H; ++h) grad_hidden(k, h) = dh(r, h);
    }
  }
};

}  // namespace GRPO_ISA_ABI
}  // namespace detail

namespace detail {
inline namespace GRPO_ISA_ABI {

/// The state of one fused_linear_grpo_step call and its phases (checks, token flattening, the
/// single-pass and two-phase schedules), each a member function.
template <class IT, class P, class M>
struct linear_step {
  const loss_options& loss;
  strided_view<const float, 3> hidden;
  strided_view<const float, 2> weight;
  strided_view<IT, 2> ids;
  const loss_batch<P, M>& inputs;
  strided_view<float, 3> grad_hidden;
  strided_view<float, 2> grad_weight;
  const fused_linear_options& opt;
  index_t B = 0, Tn = 0, H = 0, V = 0;
  bool need_entropy = false;
  std::vector<float> hid_copy;       // [N, H] when hidden's tokens do not flatten
  std::vector<std::int64_t> idflat;  // [N]
  std::vector<P> logp_p, ent_p;      // [N] in the loss's value type
  linear_engine<std::int64_t> eng;

  linear_step(const loss_options& l, strided_view<const float, 3> h, strided_view<const float, 2> w,
              strided_view<IT, 2> y, const loss_batch<P, M>& in, strided_view<float, 3> gh,
              strided_view<float, 2> gw, const fused_linear_options& o)
      : loss(l),
        hidden(h),
        weight(w),
        ids(y),
        inputs(in),
        grad_hidden(gh),
        grad_weight(gw),
        opt(o) {}

  bool is_active(index_t i, index_t t) const {
    if (!inputs.truncated.empty() && inputs.truncated[static_cast<std::size_t>(i)]) return false;
    return static_cast<double>(inputs.mask(i, t)) != 0.0;
  }

  /// Every shape and alias check before anything is written.
  void check() {
    validate(loss);
    B = hidden.extent(0);
    Tn = hidden.extent(1);
    H = hidden.extent(2);
    V = weight.extent(0);
    expect_host(hidden, "hidden");
    expect_host(weight, "weight");
    expect_extents(weight, {V, H}, "weight");
    expect_extents(ids, {B, Tn}, "ids");
    expect_extents(grad_hidden, {B, Tn, H}, "grad_hidden");
    expect_extents(grad_weight, {V, H}, "grad_weight");
    GRPO_EXPECTS(V > 0, shape_mismatch, "weight: vocabulary extent must be > 0");
    expect_rows_contiguous(weight.stride(1), H, "weight");
    expect_rows_contiguous(grad_weight.stride(1), H, "grad_weight");
    GRPO_EXPECTS(inputs.mask.data_handle() != nullptr || B * Tn == 0, shape_mismatch,
                 "mask: required");
    expect_extents(inputs.mask, {B, Tn}, "mask");
    // Outputs: distinct elements, disjoint from every input and from each other.
    expect_distinct_elements(grad_hidden, "grad_hidden");
    expect_distinct_elements(grad_weight, "grad_weight");
    expect_disjoint(grad_hidden, hidden, "grad_hidden", "hidden");
    expect_disjoint(grad_hidden, weight, "grad_hidden", "weight");
    expect_disjoint(grad_weight, hidden, "grad_weight", "hidden");
    expect_disjoint(grad_weight, weight, "grad_weight", "weight");
    expect_disjoint(grad_hidden, grad_weight, "grad_hidden", "grad_weight");
    GRPO_EXPECTS(inputs.truncated.empty() || static_cast<index_t>(inputs.truncated.size()) == B,
                 shape_mismatch, "truncated: size must equal B");
    GRPO_EXPECTS(opt.chunk_tokens >= 0, bad_option,
                 "fused_linear_options::chunk_tokens must be >= 0");
  }

  /// The engine over the flattened tokens ([B, T, H] -> [B T, H] in place when the strides
  /// allow, else a copy), the active tokens (ids checked), the per-token buffers, zeroed outputs.
  void setup() {
    const index_t N = B * Tn;
    strided_view<const float, 2> hflat;
    if (hidden.stride(0) == Tn * hidden.stride(1) || Tn == 1) {
      hflat = strided_view<const float, 2>(hidden.data_handle(), {N, H},
                                           {hidden.stride(1), hidden.stride(2)});
    } else {
      hid_copy.resize(static_cast<std::size_t>(N * H));
      for (index_t i = 0; i < B; ++i)
        for (index_t t = 0; t < Tn; ++t)
          for (index_t h = 0; h < H; ++h)
            hid_copy[static_cast<std::size_t>((i * Tn + t) * H + h)] = hidden(i, t, h);
      hflat = make_view(static_cast<const float*>(hid_copy.data()), {N, H});
    }
    idflat.resize(static_cast<std::size_t>(N));
    for (index_t i = 0; i < B; ++i)
      for (index_t t = 0; t < Tn; ++t)
        idflat[static_cast<std::size_t>(i * Tn + t)] = static_cast<std::int64_t>(ids(i, t));
    eng.hidden = hflat;
    eng.weight = weight;
    eng.ids = make_view(idflat.data(), {N});
    eng.beta = lp::inverse_temperature(opt.logprob.temperature);
    eng.C = fused_linear_chunk_tokens(opt, V);
    eng.Vc = opt.vocab_chunk > 0 && opt.vocab_chunk < V ? opt.vocab_chunk : V;
    eng.H = H;
    eng.V = V;
    eng.threads = opt.logprob.num_threads;
    for (index_t i = 0; i < B; ++i)
      for (index_t t = 0; t < Tn; ++t)
        if (is_active(i, t)) {
          const auto y = idflat[static_cast<std::size_t>(i * Tn + t)];
          GRPO_EXPECTS(y >= 0 && y < V, out_of_range,
                       "fused_linear_grpo_step: ids(" + std::to_string(i) + ", " +
                           std::to_string(t) + ") = " + std::to_string(y) + " is outside [0, " +
                           std::to_string(V) + ")");
          eng.active.push_back(i * Tn + t);
        }
    eng.state.resize(eng.active.size());
    eng.logp.assign(static_cast<std::size_t>(N), 0.0f);
    eng.entropy.assign(static_cast<std::size_t>(N), 0.0f);
    eng.g_lp.assign(static_cast<std::size_t>(N), 0.0f);
    eng.g_h.assign(static_cast<std::size_t>(N), 0.0f);
    logp_p.assign(static_cast<std::size_t>(N), P(0));
    ent_p.assign(static_cast<std::size_t>(N), P(0));
    need_entropy = loss.entropy_coef != 0.0 || loss.top_entropy_quantile < 1.0;
    for (index_t i = 0; i < B; ++i)
      for (index_t t = 0; t < Tn; ++t)
        for (index_t h = 0; h < H; ++h) grad_hidden(i, t, h) = 0.0f;
    gw_map().setZero();
  }

  lin_map gw_map() const {
    return lin_map(grad_weight.data_handle(), V, H, lin_stride(grad_weight.stride(0)));
  }
  /// (k, h) -> grad_hidden(k / T, k % T, h): the engine's flat token index.
  struct gh_flat {
    strided_view<float, 3> g;
    index_t T;
    float& operator()(index_t k, index_t h) const { return g(k / T, k % T, h); }
  };
  /// log p and H of the chunk's tokens in the loss's value type.
  void to_p(index_t c0, index_t n) {
    for (index_t r = 0; r < n; ++r) {
      const auto k = static_cast<std::size_t>(eng.active[static_cast<std::size_t>(c0 + r)]);
      logp_p[k] = static_cast<P>(eng.logp[k]);
      ent_p[k] = static_cast<P>(eng.entropy[k]);
    }
  }
  loss_batch<P, M> batch() const {
    loss_batch<P, M> b = inputs;
    b.logp = make_view(static_cast<const P*>(logp_p.data()), {B, Tn});
    b.entropy = need_entropy ? make_view(static_cast<const P*>(ent_p.data()), {B, Tn})
                             : strided_view<const P, 2>{};
    return b;
  }

  /// Token-local options: per chunk of active tokens (of several sequences), the statistics,
  /// each token's coefficients (loss_chunk_plan over that one token, with its row's mask-only
  /// factors), then the gradient (3 GEMMs when one vocabulary block covers V).
  void single_pass(fused_grpo_result& res) {
    const loss_chunk_plan<P, M> cp(loss, batch());
    const auto na = static_cast<index_t>(eng.active.size());
    lin_map gw = gw_map();
    gh_flat ghf{grad_hidden, Tn};
    for (index_t c0 = 0; c0 < na; c0 += eng.C) {
      const index_t n = std::min(eng.C, na - c0);
      eng.forward_chunk(c0, n);
      eng.err.raise("fused_linear_grpo_step");
      to_p(c0, n);
      for (index_t r = 0; r < n; ++r) {
        const index_t k = eng.active[static_cast<std::size_t>(c0 + r)];
        P glp = 0, gh = 0;
        cp.coefficients(k / Tn, k % Tn, 1, &glp, &gh);
        eng.g_lp[static_cast<std::size_t>(k)] = static_cast<float>(glp);
        eng.g_h[static_cast<std::size_t>(k)] = static_cast<float>(gh);
      }
      eng.backward_chunk(c0, n, eng.Vc >= V, ghf, gw);
    }
    static_cast<loss_scalars&>(res) = compute_loss_metrics(loss, batch());
  }

  /// Statistics of every chunk, the loss on [B, T], then the gradient recomputing the logits
  /// (4 GEMMs).
  void two_phase(fused_grpo_result& res) {
    const auto na = static_cast<index_t>(eng.active.size());
    for (index_t c0 = 0; c0 < na; c0 += eng.C) {
      const index_t n = std::min(eng.C, na - c0);
      eng.forward_chunk(c0, n);
      to_p(c0, n);
    }
    eng.err.raise("fused_linear_grpo_step");
    const auto N = static_cast<std::size_t>(B * Tn);
    std::vector<P> glp(N), gh(N);
    loss_outputs<P> out;
    out.grad_logp = make_view(glp.data(), {B, Tn});
    out.grad_entropy = make_view(gh.data(), {B, Tn});
    static_cast<loss_scalars&>(res) = compute_loss_into(loss, batch(), out);
    for (std::size_t k = 0; k < N; ++k) {
      eng.g_lp[k] = static_cast<float>(glp[k]);
      eng.g_h[k] = static_cast<float>(gh[k]);
    }
    lin_map gw = gw_map();
    gh_flat ghf{grad_hidden, Tn};
    for (index_t c0 = 0; c0 < na; c0 += eng.C)
      eng.backward_chunk(c0, std::min(eng.C, na - c0), false, ghf, gw);
  }
};

}  // namespace GRPO_ISA_ABI
}  // namespace detail

inline namespace GRPO_LOGPROB_ABI {

/// Forward only: per-token log p(y) (and entropy, lse) of softmax(hidden W^T / T) without the
/// logits (e.g. old / reference log-probs). Tokens with ids == ignore_index are skipped (outputs
/// 0).
/// @param hidden [N, H] float; weight [V, H] float; ids [N]; logp [N]; entropy / lse optional.
/// @pre host memory, ids in [0, V) or ignore_index, finite hidden and weight.
template <class IT>
void linear_log_softmax(strided_view<const float, 2> hidden, strided_view<const float, 2> weight,
                        strided_view<IT, 1> ids, strided_view<float, 1> logp,
                        strided_view<float, 1> entropy = {}, strided_view<float, 1> lse = {},
                        const fused_linear_options& opt = {}) {
  namespace lp = detail::lp;
  const index_t N = hidden.extent(0), H = hidden.extent(1), V = weight.extent(0);
  expect_host(hidden, "hidden");
  expect_host(weight, "weight");
  expect_extents(weight, {V, H}, "weight");
  expect_extents(ids, {N}, "ids");
  expect_extents(logp, {N}, "logp");
  if (lp::requested(entropy)) expect_extents(entropy, {N}, "entropy");
  if (lp::requested(lse)) expect_extents(lse, {N}, "lse");
  expect_distinct_elements(logp, "logp");
  expect_disjoint(logp, hidden, "logp", "hidden");
  expect_disjoint(logp, weight, "logp", "weight");
  GRPO_EXPECTS(V > 0, shape_mismatch, "weight: vocabulary extent must be > 0");
  detail::expect_rows_contiguous(weight.stride(1), H, "weight");
  GRPO_EXPECTS(opt.chunk_tokens >= 0, bad_option,
               "fused_linear_options::chunk_tokens must be >= 0");
  lp::check_ids(ids, V, opt.logprob.ignore_index, "linear_log_softmax: ids");
  detail::linear_engine<IT> eng;
  eng.hidden = hidden;
  eng.weight = weight;
  eng.ids = ids;
  eng.beta = lp::inverse_temperature(opt.logprob.temperature);
  eng.C = fused_linear_chunk_tokens(opt, V);
  eng.Vc = opt.vocab_chunk > 0 && opt.vocab_chunk < V ? opt.vocab_chunk : V;
  eng.H = H;
  eng.V = V;
  eng.threads = opt.logprob.num_threads;
  for (index_t k = 0; k < N; ++k)
    if (static_cast<std::int64_t>(ids(k)) != opt.logprob.ignore_index) eng.active.push_back(k);
  eng.state.resize(eng.active.size());
  eng.logp.assign(static_cast<std::size_t>(N), 0.0f);
  eng.entropy.assign(static_cast<std::size_t>(N), 0.0f);
  const auto na = static_cast<index_t>(eng.active.size());
  for (index_t c0 = 0; c0 < na; c0 += eng.C) eng.forward_chunk(c0, std::min(eng.C, na - c0));
  eng.err.raise("linear_log_softmax");
  for (index_t k = 0; k < N; ++k) logp(k) = eng.logp[static_cast<std::size_t>(k)];
  if (lp::requested(entropy))
    for (index_t k = 0; k < N; ++k) entropy(k) = eng.entropy[static_cast<std::size_t>(k)];
  if (lp::requested(lse)) {
    for (index_t k = 0; k < N; ++k) lse(k) = 0.0f;
    for (std::size_t a = 0; a < eng.active.size(); ++a) lse(eng.active[a]) = eng.state[a].st.lse();
  }
}

/// Fused linear GRPO step: hidden [B, T, H] and W [V, H] -> logits chunks -> log pi(y), H ->
/// the loss engine -> grad_hidden [B, T, H] and grad_weight [V, H] (both overwritten).
/// Only tokens with mask != 0 (and not truncated) are projected; the others get zero gradient rows.
/// Token-local loss options (fused_single_pass_ok) run in one pass per chunk (3 GEMMs when
/// vocab_chunk covers V), the coefficients from loss_chunk_plan and the scalars from
/// compute_loss_metrics (loss/entry.hpp); others (GSPO, OPSM, GMPO, VESPO, top-entropy quantile,
/// sequence or seq-mask TIS, OpenRLHF float32 KL) run statistics first, compute_loss_into on
/// [B, T], and recompute the logits chunks in the gradient pass (4 GEMMs).
/// @pre fp32 hidden / weight / gradients in host memory; ids of valid tokens in [0, V).
/// @post result as fused_grpo_step (loss, metrics, logp, entropy); gradients exact up to fp32
///       GEMM rounding.
template <class IT, class P, class M>
fused_grpo_result fused_linear_grpo_step(const loss_options& loss,
                                         strided_view<const float, 3> hidden,
                                         strided_view<const float, 2> weight,
                                         strided_view<IT, 2> ids, loss_batch<P, M> inputs,
                                         strided_view<float, 3> grad_hidden,
                                         strided_view<float, 2> grad_weight,
                                         const fused_linear_options& opt = {}) {
  detail::linear_step<IT, P, M> st(loss, hidden, weight, ids, inputs, grad_hidden, grad_weight,
                                   opt);
  st.check();
  const bool single = opt.schedule == fused_schedule::single_pass ||
                      (opt.schedule == fused_schedule::automatic && fused_single_pass_ok(loss));
  GRPO_EXPECTS(!single || single_pass_ok(loss), bad_option,
               "fused_linear_options::schedule = single_pass needs token-local loss options");
  GRPO_EXPECTS(!single || fused_single_pass_ok(loss), bad_option,
               "fused_linear_options::schedule = single_pass: OpenRLHF's seq-mask TIS and "
               "float32 in-loss KL need two_phase");
  st.setup();
  fused_grpo_result res;
  res.rows = st.B;
  res.cols = st.Tn;
  res.schedule_used = single ? fused_schedule::single_pass : fused_schedule::two_phase;
  if (single)
    st.single_pass(res);
  else
    st.two_phase(res);
  res.logp = std::move(st.eng.logp);
  res.entropy = std::move(st.eng.entropy);
  return res;
}

}  // namespace GRPO_LOGPROB_ABI
}  // namespace grpo
