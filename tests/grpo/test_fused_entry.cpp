// SPDX-License-Identifier: Apache-2.0
// Tests of grpo/loss/entry.hpp, the loss engine's entry points for the fused paths:
// - loss_chunk_plan::coefficients equals, bit for bit, compute_loss_into on the [1, n] micro-batch
//   of the chunk under token_sum aggregation scaled by the row's factor (what fused_grpo_step and
//   fused_linear_grpo_step computed per chunk before), for every single-pass option family, fp32
//   and fp64 values, every chunk length; and it equals the full batch's gradient (independent
//   oracle: compute_loss_into on [B, T]) to rounding;
// - compute_loss_metrics equals the scalars and metrics of compute_loss_into bit for bit, for every
//   option family (two-phase ones included), threaded batch sizes too.
#include <grpo/core/isa.hpp>
#include <grpo/loss.hpp>
#include <grpo/presets.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

using grpo::index_t;
using plan_f = grpo::loss_chunk_plan<float, float>;
using plan_d = grpo::loss_chunk_plan<double, float>;

template <class T>
struct batch_data {
  index_t B, Tn;
  std::vector<T> lp, lo, lr, ls, adv, isw, ent;
  std::vector<float> mask;
  std::vector<unsigned char> trunc;
  bool adv_row = false, use_isw = false, use_smp = true;
  batch_data(index_t b, index_t t, std::uint32_t seed) : B(b), Tn(t) {
    std::mt19937 rng(seed);
    std::normal_distribution<double> n01(0.0, 1.0);
    for (index_t k = 0; k < B * Tn; ++k) {
      lp.push_back(T(-2.0 + 0.5 * n01(rng)));
      lo.push_back(T(static_cast<double>(lp.back()) + 0.3 * n01(rng)));
      lr.push_back(T(static_cast<double>(lp.back()) + 0.4 * n01(rng)));
      ls.push_back(T(static_cast<double>(lo.back()) + 0.1 * n01(rng)));
      adv.push_back(T(n01(rng)));
      isw.push_back(T(0.5 + 0.25 * std::abs(n01(rng))));
      ent.push_back(T(1.0 + 0.5 * std::abs(n01(rng))));
      mask.push_back(k % 7 == 6 ? 0.0f : (k % 5 == 2 ? 0.5f : 1.0f));
    }
    if (B > 1)
      for (index_t t = 0; t < Tn; ++t) mask[static_cast<std::size_t>(Tn + t)] = 0.0f;  // empty row
    trunc.assign(static_cast<std::size_t>(B), 0);
    if (B > 2) trunc[2] = 1;
  }
  grpo::loss_batch<T, float> batch(bool with_entropy) const {
    grpo::loss_batch<T, float> b;
    b.logp = grpo::make_view(lp.data(), {B, Tn});
    b.old_logp = grpo::make_view(lo.data(), {B, Tn});
    b.ref_logp = grpo::make_view(lr.data(), {B, Tn});
    b.advantages = adv_row ? grpo::broadcast_rows(adv.data(), B, Tn, Tn)
                           : grpo::make_view(adv.data(), {B, Tn});
    b.mask = grpo::make_view(mask.data(), {B, Tn});
    if (use_smp) b.sampler_logp = grpo::make_view(ls.data(), {B, Tn});
    if (use_isw) b.is_weights = grpo::make_view(isw.data(), {B, Tn});
    if (with_entropy) b.entropy = grpo::make_view(ent.data(), {B, Tn});
    b.truncated = std::span<const unsigned char>(trunc);
    return b;
  }
};

struct family {
  std::string name;
  grpo::loss_options o;
  bool adv_row = false, isw = false;
};

/// Option families the single-pass schedule accepts (chunk_coefficients_ok).
std::vector<family> chunk_families() {
  using grpo::kl_estimator;
  std::vector<family> f;
  auto add = [&](std::string n, grpo::loss_options o, bool adv_row = false, bool isw = false) {
    f.push_back({std::move(n), o, adv_row, isw});
  };
  for (const char* p : {"trl_grpo", "trl_bnpo", "trl_dr_grpo", "trl_dapo", "trl_cispo", "trl_sapo",
                        "verl_vanilla", "verl_sapo", "verl_cispo", "openrlhf"})
    add(p, grpo::preset(p));
  for (auto e : {kl_estimator::k1, kl_estimator::abs, kl_estimator::k2, kl_estimator::k3}) {
    auto o = grpo::preset("trl_grpo");
    o.kl_coef = 0.05;
    o.kl.estimator = e;
    add("kl" + std::to_string(static_cast<int>(e)), o);
  }
  auto o = grpo::preset("trl_dapo");
  o.kl_coef = 0.1;
  o.kl_bias_correction = true;
  add("kl bias correction", o);
  o = grpo::loss_options{};
  o.policy.kind = grpo::policy_loss_kind::reinforce;
  o.kl_coef = 0.02;
  add("reinforce", o);
  o = grpo::preset("trl_grpo");
  o.entropy_coef = 0.01;
  o.kl_coef = 0.03;
  add("entropy coef (token rows: the entropy sweep)", o);
  o = grpo::preset("trl_dapo");
  o.agg.global_tokens = 61.0;
  o.kl_coef = 0.05;
  o.kl_agg = grpo::agg_options{};
  o.kl_agg->mode = grpo::agg_mode::seq_mean_token_mean;
  o.kl_agg->global_seqs = 9.0;
  add("global denominators, separate KL aggregation", o);
  o = grpo::preset("verl_vanilla");
  o.agg.mode = grpo::agg_mode::seq_mean_token_sum_norm;
  o.agg.norm_length = 12.0;
  add("seq_mean_token_sum_norm, per-row advantages", o, true);
  o = grpo::preset("trl_grpo");
  o.policy.dual_clip_c = 3.0;
  o.policy.log_ratio_max = 1000.0;
  add("dual clip, no clamp", o);
  o = grpo::preset("trl_dapo");
  o.tis.enabled = true;
  o.tis.c_max = 2.0;
  add("token TIS", o);
  o = grpo::preset("trl_dapo");
  add("is_weights", o, false, true);
  o = grpo::preset("trl_dapo");
  o.ratio_base_sampler = true;
  add("ratio_base_sampler", o);
  o = grpo::preset("trl_grpo");
  o.approx_kl_unclamped = true;
  o.policy.log_ratio_max = 5.0;
  add("approx_kl_unclamped with a clamp (scalar rows)", o);
  return f;
}

/// The oracle: compute_loss_into on the [1, n] micro-batch with token_sum aggregation scaled by
/// the full batch's row factors (the pre-entry-point fused code, written out here).
template <class T>
void micro_call(const grpo::loss_options& o, const grpo::loss_batch<T, float>& in, index_t i,
                index_t t0, index_t n, std::vector<T>& g, std::vector<T>& h) {
  const index_t B = in.logp.extent(0), Tn = in.logp.extent(1);
  std::vector<double> n_row(static_cast<std::size_t>(B), 0.0);
  for (index_t r = 0; r < B; ++r)
    for (index_t t = 0; t < Tn; ++t)
      if (!in.truncated[static_cast<std::size_t>(r)])
        n_row[static_cast<std::size_t>(r)] += static_cast<double>(in.mask(r, t));
  const auto sp = grpo::aggregation_row_scales(n_row, Tn, o.agg);
  const auto sk = o.kl_agg ? grpo::aggregation_row_scales(n_row, Tn, *o.kl_agg) : sp;
  const auto se = grpo::aggregation_row_scales(n_row, Tn, o.entropy_agg);
  grpo::loss_options lo = o;
  const auto si = static_cast<std::size_t>(i);
  lo.agg = grpo::agg_options{};
  lo.agg.mode = grpo::agg_mode::token_sum;
  lo.agg.scale = sp[si];
  grpo::agg_options ka{};
  ka.mode = grpo::agg_mode::token_sum;
  ka.scale = sk[si];
  lo.kl_agg = ka;
  lo.entropy_agg = grpo::agg_options{};
  lo.entropy_agg.mode = grpo::agg_mode::token_sum;
  lo.entropy_agg.scale = se[si];
  auto slice = [&](auto v) {
    using V = decltype(v);
    return v.data_handle() == nullptr ? v : V(&v(i, t0), {1, n}, {v.stride(0), v.stride(1)});
  };
  grpo::loss_batch<T, float> b = in;
  b.logp = slice(in.logp);
  b.old_logp = slice(in.old_logp);
  b.ref_logp = slice(in.ref_logp);
  b.advantages = slice(in.advantages);
  b.mask = slice(in.mask);
  b.sampler_logp = slice(in.sampler_logp);
  b.is_weights = slice(in.is_weights);
  b.entropy = slice(in.entropy);
  b.truncated = in.truncated.subspan(si, 1);
  g.assign(static_cast<std::size_t>(n), T(-9));
  h.assign(static_cast<std::size_t>(n), T(-9));
  grpo::loss_outputs<T> out;
  out.grad_logp = grpo::make_view(g.data(), {1, n});
  out.grad_entropy = grpo::make_view(h.data(), {1, n});
  grpo::compute_loss_into(lo, b, out);
}

template <class T>
void check_family(const family& f, index_t B, index_t Tn) {
  batch_data<T> d(B, Tn, 17);
  d.adv_row = f.adv_row;
  d.use_isw = f.isw;
  d.use_smp = !f.isw;
  const bool with_ent = f.o.entropy_coef != 0.0;
  const auto in = d.batch(with_ent);
  REQUIRE(grpo::chunk_coefficients_ok(f.o));
  const grpo::loss_chunk_plan<T, float> cp(f.o, in);
  // Independent oracle: the gradient of the full batch (same formulas, other row segmentation).
  const auto full = grpo::compute_loss(f.o, in);
  // The full batch with outputs of type T: on the token rows (vectorised or scalar) a token's bits
  // do not depend on its position in the row, so every chunk equals it bit for bit.
  std::vector<T> fg(static_cast<std::size_t>(B * Tn)), fh(fg.size());
  grpo::loss_outputs<T> fo;
  fo.grad_logp = grpo::make_view(fg.data(), {B, Tn});
  fo.grad_entropy = grpo::make_view(fh.data(), {B, Tn});
  const auto fe = grpo::compute_loss_into(f.o, in, fo).engine_used;
  const bool token_rows =
      fe == grpo::loss_engine::token_rows_simd || fe == grpo::loss_engine::token_rows;
  double gmax = 0, err = 0, hmax = 0, herr = 0;
  int mismatches = 0, chunks = 0, full_mismatches = 0;
  for (index_t C : {index_t(1), index_t(3), index_t(8), Tn}) {
    for (index_t i = 0; i < B; ++i)
      for (index_t t0 = 0; t0 < Tn; t0 += C) {
        const index_t n = std::min(C, Tn - t0);
        std::vector<T> g(static_cast<std::size_t>(n), T(7)), h(g), gm, hm;
        cp.coefficients(i, t0, n, g.data(), h.data());
        micro_call(f.o, in, i, t0, n, gm, hm);
        ++chunks;
        mismatches += std::memcmp(g.data(), gm.data(), g.size() * sizeof(T)) != 0;
        mismatches += std::memcmp(h.data(), hm.data(), h.size() * sizeof(T)) != 0;
        const auto at = static_cast<std::size_t>(i * Tn + t0);
        full_mismatches += std::memcmp(g.data(), &fg[at], g.size() * sizeof(T)) != 0;
        full_mismatches += std::memcmp(h.data(), &fh[at], h.size() * sizeof(T)) != 0;
        for (index_t k = 0; k < n; ++k) {
          const double a = static_cast<double>(g[static_cast<std::size_t>(k)]);
          const double b = full.at(full.grad_logp, i, t0 + k);
          gmax = std::max(gmax, std::abs(b));
          err = std::max(err, std::abs(a - b));
          const double ah = static_cast<double>(h[static_cast<std::size_t>(k)]);
          const double bh = full.at(full.grad_entropy, i, t0 + k);
          hmax = std::max(hmax, std::abs(bh));
          herr = std::max(herr, std::abs(ah - bh));
        }
      }
  }
  INFO(f.name << (sizeof(T) == 4 ? " fp32" : " fp64") << " B " << B << " T " << Tn << " path "
              << std::string(grpo::isa_name(grpo::active_isa())) << " engine "
              << static_cast<int>(fe));
  CHECK(chunks > 0);
  CHECK(mismatches == 0);                       // bitwise the micro-batch call
  if (token_rows) CHECK(full_mismatches == 0);  // and bitwise the full call's rows
  CHECK(gmax > 0);
  const double tol = sizeof(T) == 4 ? 2e-6 : 1e-13;  // float lanes vs the full call's rows
  CHECK(err <= tol * gmax);
  CHECK(herr <= tol * (hmax > 0 ? hmax : 1.0));
  CHECK((with_ent ? hmax > 0 : hmax == 0));
}

bool same_scalars(const grpo::loss_scalars& a, const grpo::loss_scalars& b) {
  return std::memcmp(&a.loss, &b.loss, sizeof(double)) == 0 &&
         std::memcmp(&a.policy_loss, &b.policy_loss, sizeof(double)) == 0 &&
         std::memcmp(&a.kl_loss, &b.kl_loss, sizeof(double)) == 0 &&
         std::memcmp(&a.entropy_loss, &b.entropy_loss, sizeof(double)) == 0 &&
         std::memcmp(&a.metrics, &b.metrics, sizeof(grpo::loss_metrics)) == 0 &&
         a.engine_used == b.engine_used;
}

template <class T>
void check_metrics(const family& f, index_t B, index_t Tn) {
  batch_data<T> d(B, Tn, 29);
  d.adv_row = f.adv_row;
  d.use_isw = f.isw;
  d.use_smp = !f.isw;
  const bool with_ent = f.o.entropy_coef != 0.0 || f.o.top_entropy_quantile < 1.0;
  const auto in = d.batch(with_ent);
  std::vector<T> g(static_cast<std::size_t>(B * Tn));
  grpo::loss_outputs<T> out;
  out.grad_logp = grpo::make_view(g.data(), {B, Tn});
  const auto ref = grpo::compute_loss_into(f.o, in, out);  // threaded from B T >= 2^15
  const auto got = grpo::compute_loss_metrics(f.o, in);
  INFO(f.name << (sizeof(T) == 4 ? " fp32" : " fp64") << " B " << B << " T " << Tn);
  CHECK(same_scalars(ref, got));
  CHECK(std::isfinite(got.loss));
}

}  // namespace

TEST_CASE("loss_chunk_plan: coefficients bitwise equal to the [1, n] micro-batch call" *
          doctest::test_suite("grpo")) {
  // On this CPU's path and on baseline (the lane-generic rows for float inputs too).
  std::vector<grpo::isa> paths = {grpo::active_isa()};
  if (paths[0] != grpo::isa::baseline) paths.push_back(grpo::isa::baseline);
  for (const grpo::isa path : paths) {
    const grpo::scoped_isa_limit pin(path);
    const auto fams = chunk_families();
    for (const auto& f : fams) {
      check_family<float>(f, 4, 19);
      check_family<double>(f, 4, 19);
    }
    // Long rows: the vectorised rows' full batches and flushes inside one chunk (with the entropy
    // term: its sweep's too).
    check_family<float>(fams[3], 2, 300);
    check_family<double>(fams[3], 2, 300);
    for (const auto& f : fams)
      if (f.name.rfind("entropy coef", 0) == 0) {
        check_family<float>(f, 3, 301);
        check_family<double>(f, 3, 301);
      }
  }
}

TEST_CASE("loss_chunk_plan: overflow rule, bad values and unsupported options" *
          doctest::test_suite("grpo")) {
  batch_data<double> d(3, 10, 5);
  d.lp[4] = d.lo[4] + 800.0;  // r = exp(800) overflows double on a valid token (row 0)
  const auto in = d.batch(false);
  auto dual = grpo::preset("trl_grpo");
  dual.policy.dual_clip_c = 3.0;
  dual.policy.log_ratio_max = 1000.0;
  {  // dual clip: the clamped rerun, as compute_loss_into does on the micro-batch
    const grpo::loss_chunk_plan<double, float> cp(dual, in);
    std::vector<double> g(5), h(5), gm, hm;
    cp.coefficients(0, 2, 5, g.data(), h.data());
    micro_call(dual, in, 0, 2, 5, gm, hm);
    CHECK(g == gm);
    for (double x : g) CHECK(std::isfinite(x));
  }
  auto plain = dual;
  plain.policy.dual_clip_c = 0.0;
  {
    const grpo::loss_chunk_plan<double, float> cp(plain, in);
    std::vector<double> g(5), h(5);
    CHECK_THROWS_WITH_AS(cp.coefficients(0, 2, 5, g.data(), h.data()),
                         doctest::Contains("log_ratio_max"), grpo::error);
    cp.coefficients(0, 5, 5, g.data(), h.data());  // the chunk without the token is fine
  }
  batch_data<float> e(2, 8, 6);
  e.lo[3] = std::numeric_limits<float>::quiet_NaN();
  const auto ine = e.batch(false);
  const grpo::loss_chunk_plan<float, float> cpe(grpo::preset("trl_dapo"), ine);
  std::vector<float> g(8), h(8);
  CHECK_THROWS_WITH_AS(cpe.coefficients(0, 0, 8, g.data(), h.data()),
                       doctest::Contains("old_logp: non-finite"), grpo::error);
  e.mask[9] = -1.0f;  // a negative mask entry: named with its position at construction
  CHECK_THROWS_WITH_AS(plan_f(grpo::preset("trl_dapo"), e.batch(false)),
                       doctest::Contains("row 1, column 1"), grpo::error);
  // Row- or batch-wide options are refused with a named error.
  auto seqmask = grpo::preset("trl_dapo");
  seqmask.tis.enabled = true;
  seqmask.tis.seq_mask = true;
  seqmask.tis.c_max = 2.0;
  auto f32kl = grpo::from_openrlhf([] {
    grpo::openrlhf_args a;
    a.algo.kl.use_loss = true;
    a.algo.kl.estimator = "k3";
    a.emulate_float32 = true;
    return a;
  }());
  f32kl.kl_coef = 0.01;
  for (const auto& o : {grpo::preset("trl_gspo"), grpo::preset("verl_geo_mean"),
                        grpo::preset("trl_vespo"), seqmask, f32kl}) {
    CHECK_FALSE(grpo::chunk_coefficients_ok(o));
    CHECK_THROWS_WITH_AS(plan_d(o, in), doctest::Contains("[grpo.bad_option]"), grpo::error);
  }
}

TEST_CASE("loss_chunk_plan: OpenRLHF seq-mask TIS is row-wide (why it is refused)" *
          doctest::test_suite("grpo")) {
  // The keep decision of seq-mask TIS is a mean over the whole row: a chunk evaluated alone as a
  // micro-batch (the fused step's single pass before) decides on its own tokens and can disagree
  // with the full batch. This input makes it disagree, so the refusal is needed.
  batch_data<double> d(1, 12, 3);
  for (index_t t = 0; t < 12; ++t) {
    d.mask[static_cast<std::size_t>(t)] = 1.0f;
    d.ls[static_cast<std::size_t>(t)] = d.lo[static_cast<std::size_t>(t)] - (t < 6 ? 1.5 : -1.5);
  }
  auto o = grpo::preset("trl_dapo");
  o.tis.enabled = true;
  o.tis.seq_mask = true;
  o.tis.c_min = 0.5;
  o.tis.c_max = 2.0;
  const auto in = d.batch(false);
  const auto full = grpo::compute_loss(o, in);  // row mean of lo - ls = 0: kept
  std::vector<double> gm, hm;
  micro_call(o, in, 0, 0, 6, gm, hm);  // chunk mean 1.5: exp(1.5) > 2, dropped
  double full_abs = 0, micro_abs = 0;
  for (index_t t = 0; t < 6; ++t) {
    full_abs += std::abs(full.at(full.grad_logp, 0, t));
    micro_abs += std::abs(gm[static_cast<std::size_t>(t)]);
  }
  CHECK(full_abs > 0);
  CHECK(micro_abs == 0);
}

TEST_CASE("compute_loss_metrics: scalars and metrics bitwise equal to compute_loss_into" *
          doctest::test_suite("grpo")) {
  auto fams = chunk_families();
  // Two-phase families too: sequence levels, GMPO, VESPO, OPSM, top-entropy mask, sequence and
  // seq-mask TIS, OpenRLHF float32 KL.
  for (const char* p : {"trl_gspo", "trl_luspo", "trl_vespo", "verl_gspo", "verl_geo_mean"}) {
    auto o = grpo::preset(p);
    o.kl_coef = 0.02;
    fams.push_back({p, o});
  }
  auto o = grpo::preset("trl_sapo");
  o.opsm_threshold = 0.05;
  o.top_entropy_quantile = 0.6;
  fams.push_back({"opsm + top-entropy mask", o});
  o = grpo::preset("trl_dapo");
  o.tis.enabled = true;
  o.tis.sequence = true;
  o.tis.c_max = 3.0;
  fams.push_back({"sequence TIS", o});
  o.tis.sequence = false;
  o.tis.seq_mask = true;
  fams.push_back({"seq-mask TIS", o});
  grpo::openrlhf_args a;
  a.algo.kl.use_loss = true;
  a.algo.kl.estimator = "k3";
  a.emulate_float32 = true;
  o = grpo::from_openrlhf(a);
  o.kl_coef = 0.01;
  fams.push_back({"openrlhf float32 KL", o});
  for (const auto& f : fams) {
    auto g = f;
    if (f.name == "openrlhf float32 KL") {
      // 0 / 1 masks only (OpenRLHF's bool mask)
      batch_data<float> d(4, 19, 29);
      for (auto& m : d.mask) m = m != 0.0f ? 1.0f : 0.0f;
      std::vector<float> gr(static_cast<std::size_t>(4 * 19));
      grpo::loss_outputs<float> out;
      out.grad_logp = grpo::make_view(gr.data(), {4, 19});
      const auto in = d.batch(false);
      CHECK(
          same_scalars(grpo::compute_loss_into(f.o, in, out), grpo::compute_loss_metrics(f.o, in)));
      continue;
    }
    check_metrics<float>(g, 4, 19);
    check_metrics<double>(g, 4, 19);
  }
  // Threaded sizes (B T >= 2^15): compute_loss_into splits rows over threads, the metrics entry
  // runs them on one; the row-order merge makes them equal.
  check_metrics<float>(fams[3], 64, 1024);
  check_metrics<double>(fams[0], 64, 600);
  check_metrics<float>({"gspo", grpo::preset("trl_gspo")}, 64, 700);
#if defined(_OPENMP)
  const int before = omp_get_max_threads();
  (void)grpo::compute_loss_metrics(fams[0].o, batch_data<float>(2, 5, 1).batch(false));
  CHECK(omp_get_max_threads() == before);  // the thread count is restored
#endif
  // An empty batch: zeros, no error.
  grpo::loss_batch<float, float> empty;
  const auto r = grpo::compute_loss_metrics(fams[0].o, empty);
  CHECK(r.loss == 0.0);
}

TEST_CASE("token rows with the entropy term: bitwise the same for 1, 2 and 3 threads, every path" *
          doctest::test_suite("grpo")) {
  // B T >= 2^15: compute_loss_into threads its rows; the row parts merge in row order, so the
  // loss, every metric (the entropy metric included), the gradient and dL/dH are the same bits
  // for any thread count; on this CPU's path and on baseline (float: packet or lane-generic
  // rows; double: the lane-generic rows on both), with the entropy bonus and the metric alone.
  std::vector<grpo::isa> paths = {grpo::active_isa()};
  if (paths[0] != grpo::isa::baseline) paths.push_back(grpo::isa::baseline);
  auto check = [](auto tag, const grpo::loss_options& o) {
    using T = decltype(tag);
    batch_data<T> d(48, 701, 31);
    const auto in_f = d.batch(true);
    // (a mask of the value type: a float mask with double values takes the scalar rows)
    const std::vector<T> mk(d.mask.begin(), d.mask.end());
    grpo::loss_batch<T, T> in;
    in.logp = in_f.logp;
    in.old_logp = in_f.old_logp;
    in.ref_logp = in_f.ref_logp;
    in.advantages = in_f.advantages;
    in.entropy = in_f.entropy;
    in.truncated = in_f.truncated;
    in.mask = grpo::make_view(mk.data(), {48, 701});
    const auto n = static_cast<std::size_t>(48 * 701);
    std::vector<T> g1(n), h1(n);
    grpo::loss_scalars s1{};
    int compared = 0;
    for (int th : {1, 2, 3}) {
#if defined(_OPENMP)
      omp_set_num_threads(th);
#endif
      std::vector<T> g(n, T(-7)), h(n, T(-7));
      grpo::loss_outputs<T> out;
      out.grad_logp = grpo::make_view(g.data(), {48, 701});
      out.grad_entropy = grpo::make_view(h.data(), {48, 701});
      const auto s = grpo::compute_loss_into(o, in, out);
      CHECK(s.engine_used == grpo::loss_engine::token_rows_simd);
      CHECK(std::isfinite(s.entropy_loss));
      CHECK(s.metrics.entropy.weight > 0);
      if (th == 1) {
        s1 = s, g1 = g, h1 = h;
        continue;
      }
      INFO("threads " << th << (sizeof(T) == 4 ? " fp32" : " fp64"));
      CHECK(same_scalars(s, s1));
      CHECK(std::memcmp(g.data(), g1.data(), n * sizeof(T)) == 0);
      CHECK(std::memcmp(h.data(), h1.data(), n * sizeof(T)) == 0);
      ++compared;
    }
    CHECK(compared == 2);
  };
#if defined(_OPENMP)
  const int before = omp_get_max_threads();
#endif
  for (const grpo::isa path : paths) {
    const grpo::scoped_isa_limit pin(path);
    for (double ec : {0.0, 0.01}) {
      auto o = grpo::preset("trl_dapo");
      o.kl_coef = 0.04;
      o.entropy_coef = ec;
      INFO("path " << std::string(grpo::isa_name(path)) << " entropy_coef " << ec);
      check(float{}, o);
      check(double{}, o);
    }
  }
#if defined(_OPENMP)
  omp_set_num_threads(before);
#endif
}
