// SPDX-License-Identifier: Apache-2.0
/// @file numeric.hpp
/// @brief Rigorous numerics of the math verifier: expression trees evaluated in complex ball
///        arithmetic (Arb, LGPL-2.1+) at growing precision, and a zero test whose "zero" is never
///        a fixed-tolerance accident: a ball that excludes 0 proves a difference non-zero; a ball
///        that contains 0 counts as zero only once its radius is below 2^-(128 + M), where M is
///        the largest |log2| of any intermediate value (so e^{10000} + 1 - e^{10000} is resolved
///        at ~29 000 bits and reported non-zero, as is sin(10^{9999}) - sin(10^{9999} + 1)).
#pragma once

#include <rewards/math/expr.hpp>
#include <rewards/math/options.hpp>

#include <acb.h>
#include <arb.h>
#include <flint/fmpq.h>
#include <gmpxx.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <string>

namespace grpo::rewards::math::detail {

/// Owning complex ball (RAII over acb_t). Arb objects are plain values: no global state beyond
/// thread-local constant caches, so evaluation needs no lock (unlike GiNaC's shared flyweights).
struct ball {
  acb_t v;
  ball() { acb_init(v); }
  ~ball() { acb_clear(v); }
  ball(const ball& o) {
    acb_init(v);
    acb_set(v, o.v);
  }
  ball& operator=(const ball& o) {
    if (this != &o) acb_set(v, o.v);
    return *this;
  }
  ball(ball&& o) noexcept {
    acb_init(v);
    acb_swap(v, o.v);
  }
  ball& operator=(ball&& o) noexcept {
    acb_swap(v, o.v);
    return *this;
  }
};

/// Point of evaluation: value of each free variable (symbols and `text:` words) as a rational.
using point_map = std::map<std::string, mpq_class>;

/// Precision schedule limits. 2^17 bits (~39 000 digits) resolves e^{10000} and sin(10^{9999});
/// magnitudes beyond `max_log2_magnitude` are not decided numerically at all.
inline constexpr slong min_precision = 128;
inline constexpr slong max_precision = 1 << 17;
inline constexpr double max_log2_magnitude = (max_precision - 256) / 2.0;

/// Why an evaluation gave no ball.
enum class eval_status : std::uint8_t {
  ok,
  undefined,    ///< an exact pole or domain error (1/0, log 0): skip this point
  unsupported,  ///< a construct without numeric meaning here (sets, infinity, huge magnitudes)
  imprecise,    ///< a non-finite ball: more precision may help
};

/// One evaluation at a fixed precision. Tracks `log2mag`, the largest |log2 |z|| over all
/// non-zero intermediates: the scale that the zero threshold and the next precision follow.
struct ball_eval {
  slong prec;
  const point_map* at;
  budget& b;
  double log2mag = 0;
  eval_status status = eval_status::ok;

  /// Records the magnitude of `z`; false (and `unsupported`) when it exceeds the numeric range.
  bool track(const ball& z) {
    if (!acb_is_finite(z.v)) {
      status = eval_status::imprecise;
      return false;
    }
    if (acb_contains_zero(z.v)) return true;
    mag_t m;
    mag_init(m);
    acb_get_mag(m, z.v);
    const double hi = mag_get_d_log2_approx(m);
    acb_get_mag_lower(m, z.v);
    const double lo = mag_get_d_log2_approx(m);
    mag_clear(m);
    log2mag = std::max({log2mag, std::fabs(hi), std::fabs(lo)});
    if (!(log2mag <= max_log2_magnitude)) {
      status = eval_status::unsupported;
      return false;
    }
    return true;
  }

  bool fail(eval_status s) {
    status = s;
    return false;
  }

  static void set_rational(ball& out, const mpq_class& q, slong prec) {
    fmpq_t f;
    fmpq_init(f);
    fmpq_set_mpq(f, q.get_mpq_t());
    acb_set_fmpq(out.v, f, prec);
    fmpq_clear(f);
  }

  /// True when `z` is exactly zero (a pole when used as a divisor, a domain error for log).
  static bool exact_zero(const ball& z) { return acb_is_zero(z.v) != 0; }

  /// Evaluates `e` into `out`. @return false with `status` set when no ball results.
  bool eval(const expr& e, ball& out) {
    b.spend(1 + static_cast<std::size_t>(prec / 256));
    switch (e.k) {
      case kind::number:
        if (bits_of_q(e.value) > 4 * static_cast<std::size_t>(max_precision))
          return fail(eval_status::unsupported);
        set_rational(out, e.value, prec);
        return track(out);
      case kind::symbol:
      case kind::text: {
        if (at == nullptr) return fail(eval_status::unsupported);
        const auto it = at->find(e.k == kind::text ? "text:" + e.name : e.name);
        if (it == at->end()) return fail(eval_status::unsupported);
        set_rational(out, it->second, prec);
        return track(out);
      }
      case kind::constant:
        if (e.name == "pi") {
          acb_const_pi(out.v, prec);
        } else if (e.name == "e") {
          acb_one(out.v);
          acb_exp(out.v, out.v, prec);
        } else if (e.name == "i") {
          acb_onei(out.v);
        } else {
          return fail(eval_status::unsupported);  // infinity: decided structurally
        }
        return track(out);
      case kind::add:
      case kind::mul: {
        if (e.args.empty()) return fail(eval_status::unsupported);
        if (!eval(e.args[0], out)) return false;
        ball x;
        for (std::size_t i = 1; i < e.args.size(); ++i) {
          if (!eval(e.args[i], x)) return false;
          if (e.k == kind::add)
            acb_add(out.v, out.v, x.v, prec);
          else
            acb_mul(out.v, out.v, x.v, prec);
          if (!track(out)) return false;
        }
        return true;
      }
      case kind::neg:
        if (!eval(e.args[0], out)) return false;
        acb_neg(out.v, out.v);
        return true;
      case kind::percent:
        if (!eval(e.args[0], out)) return false;
        acb_div_ui(out.v, out.v, 100, prec);
        return track(out);
      case kind::pow:
        return eval_pow(e, out);
      case kind::factorial: {
        if (!eval(e.args[0], out)) return false;
        acb_add_ui(out.v, out.v, 1, prec);
        // n! = Gamma(n + 1); poles at the negative integers are exact zeros of 1/Gamma.
        if (acb_is_int(out.v) && arb_is_nonpositive(acb_realref(out.v)))
          return fail(eval_status::undefined);
        acb_gamma(out.v, out.v, prec);
        return track(out);
      }
      case kind::func:
        return eval_func(e, out);
      default:
        return fail(eval_status::unsupported);
    }
  }

  static std::size_t bits_of_q(const mpq_class& v) {
    return mpz_sizeinbase(v.get_num_mpz_t(), 2) + mpz_sizeinbase(v.get_den_mpz_t(), 2);
  }

  bool eval_pow(const expr& e, ball& out) {
    ball base, ex;
    if (!eval(e.args[0], base) || !eval(e.args[1], ex)) return false;
    // Bound |exponent| * log2|base| before Arb builds the power: 2^{10^{100}} has no numeric
    // decision in range, and refusing it here keeps every call cheap.
    if (acb_is_int(ex.v)) {
      fmpz_t n;
      fmpz_init(n);
      arf_get_fmpz(n, arb_midref(acb_realref(ex.v)), ARF_RND_NEAR);
      const bool big = fmpz_bits(n) > 24;
      if (!big && exact_zero(base) && fmpz_sgn(n) <= 0) {
        fmpz_clear(n);
        return fail(eval_status::undefined);  // 0^0 and 0^{-k}
      }
      if (!big) acb_pow_fmpz(out.v, base.v, n, prec);
      fmpz_clear(n);
      if (big) return fail(eval_status::unsupported);
      return track(out);
    }
    mag_t m;
    mag_init(m);
    acb_get_mag(m, ex.v);
    const double ex_log2 = mag_get_d_log2_approx(m);
    mag_clear(m);
    if (!(ex_log2 < 24)) return fail(eval_status::unsupported);
    if (exact_zero(base)) return fail(eval_status::undefined);
    // x^{p/q} with q odd and x < 0 is the real root to the p (`(x^2-2)^{5/3}` =
    // `(x^2-2)\sqrt[3]{x^2-2}^2` at every point, and the exact path's `(-8)^{1/3}` = -2), not the
    // principal complex power: one branch for `^{p/q}` and `\sqrt[q]{}`.
    if (const auto pq = small_rational(e.args[1], 0);
        pq && pq->get_den() % 2 == 1 && mpz_fits_slong_p(pq->get_num_mpz_t()) &&
        pq->get_den() <= 64 && arb_is_zero(acb_imagref(base.v)) &&
        arb_is_negative(acb_realref(base.v))) {
      root(out, base, static_cast<ulong>(pq->get_den().get_ui()));
      acb_pow_si(out.v, out.v, pq->get_num().get_si(), prec);
      return track(out);
    }
    acb_pow(out.v, base.v, ex.v, prec);
    return track(out);
  }

  /// A literal rational exponent (`5/3`, `\frac{5}{3}`, `-\frac{2}{3}`: numbers, negations,
  /// products and integer powers of them), or nullopt. Depth-bounded.
  static std::optional<mpq_class> small_rational(const expr& e, int depth) {
    if (depth > 6) return std::nullopt;
    switch (e.k) {
      case kind::number:
        return e.value;
      case kind::neg: {
        auto a = small_rational(e.args[0], depth + 1);
        if (a) *a = -*a;
        return a;
      }
      case kind::mul: {
        mpq_class acc = 1;
        for (const expr& a : e.args) {
          auto v = small_rational(a, depth + 1);
          if (!v) return std::nullopt;
          acc *= *v;
        }
        return acc;
      }
      case kind::pow: {
        auto b = small_rational(e.args[0], depth + 1);
        auto n = small_rational(e.args[1], depth + 1);
        if (!b || !n || n->get_den() != 1 || (*n != 1 && *n != -1) || *b == 0) return std::nullopt;
        return *n == 1 ? *b : mpq_class(1 / *b);
      }
      default:
        return std::nullopt;
    }
  }

  /// Real odd root of a real negative number (`\sqrt[3]{-2}` = -2^{1/3}, not the principal
  /// complex root), principal root otherwise.
  void root(ball& out, const ball& x, ulong n) {
    if (n % 2 == 1 && arb_is_zero(acb_imagref(x.v)) && arb_is_negative(acb_realref(x.v))) {
      ball y;
      acb_neg(y.v, x.v);
      acb_root_ui(out.v, y.v, n, prec);
      acb_neg(out.v, out.v);
      return;
    }
    acb_root_ui(out.v, x.v, n, prec);
  }

  bool eval_func(const expr& e, ball& out) {
    const std::string& f = e.name;
    if (e.args.empty() || e.args.size() > 8) return fail(eval_status::unsupported);
    std::vector<ball> a(e.args.size());
    for (std::size_t i = 0; i < e.args.size(); ++i)
      if (!eval(e.args[i], a[i])) return false;
    auto inv = [&](ball& z) {
      if (exact_zero(z)) return false;
      acb_inv(z.v, z.v, prec);
      return true;
    };
    auto real = [](const ball& z) { return arb_is_zero(acb_imagref(z.v)) != 0; };
    if (a.size() == 1) {
      const acb_t& x = a[0].v;
      if (f == "sqrt") {
        acb_sqrt(out.v, x, prec);
      } else if (f == "sin") {
        acb_sin(out.v, x, prec);
      } else if (f == "cos") {
        acb_cos(out.v, x, prec);
      } else if (f == "tan" || f == "cot" || f == "sec" || f == "csc") {
        if (f == "tan" || f == "cot") {
          ball s, c;
          acb_sin_cos(s.v, c.v, x, prec);
          if (f == "cot") std::swap(s, c);
          if (!inv(c)) return fail(eval_status::undefined);
          acb_mul(out.v, s.v, c.v, prec);
        } else {
          if (f == "sec")
            acb_cos(out.v, x, prec);
          else
            acb_sin(out.v, x, prec);
          if (!inv(out)) return fail(eval_status::undefined);
        }
      } else if (f == "arcsin") {
        acb_asin(out.v, x, prec);
      } else if (f == "arccos") {
        acb_acos(out.v, x, prec);
      } else if (f == "arctan") {
        acb_atan(out.v, x, prec);
      } else if (f == "arccot") {
        if (!inv(a[0])) return fail(eval_status::undefined);
        acb_atan(out.v, a[0].v, prec);
      } else if (f == "sinh") {
        acb_sinh(out.v, x, prec);
      } else if (f == "cosh") {
        acb_cosh(out.v, x, prec);
      } else if (f == "tanh") {
        acb_tanh(out.v, x, prec);
      } else if (f == "log" || f == "ln") {
        if (exact_zero(a[0])) return fail(eval_status::undefined);
        acb_log(out.v, x, prec);
      } else if (f == "exp") {
        acb_exp(out.v, x, prec);
      } else if (f == "abs") {
        arb_t r;
        arb_init(r);
        acb_abs(r, x, prec);
        acb_set_arb(out.v, r);
        arb_clear(r);
      } else if ((f == "floor" || f == "ceil") && real(a[0])) {
        arb_t r;
        arb_init(r);
        if (f == "floor")
          arb_floor(r, acb_realref(x), prec);
        else
          arb_ceil(r, acb_realref(x), prec);
        acb_set_arb(out.v, r);
        arb_clear(r);
      } else {
        return fail(eval_status::unsupported);
      }
      return track(out);
    }
    if (a.size() == 2 && f == "root") {
      // Literal index only (`\sqrt[n]{x}`); odd roots of negative reals stay real.
      if (!acb_is_int(a[1].v) || !arb_is_positive(acb_realref(a[1].v)))
        return fail(eval_status::unsupported);
      const slong n = arf_get_si(arb_midref(acb_realref(a[1].v)), ARF_RND_NEAR);
      if (n < 1 || n > 64) return fail(eval_status::unsupported);
      root(out, a[0], static_cast<ulong>(n));
      return track(out);
    }
    if (a.size() == 2 && f == "log") {
      if (exact_zero(a[0]) || exact_zero(a[1])) return fail(eval_status::undefined);
      ball lb;
      acb_log(out.v, a[0].v, prec);
      acb_log(lb.v, a[1].v, prec);
      if (acb_is_zero(lb.v)) return fail(eval_status::undefined);  // log base 1
      acb_div(out.v, out.v, lb.v, prec);
      return track(out);
    }
    if (a.size() == 2 && f == "binom") {
      // C(n, k) = n (n-1) ... (n-k+1) / k! for a literal 0 <= k <= 64 (symbolic n allowed).
      if (!acb_is_int(a[1].v)) return fail(eval_status::unsupported);
      const slong k = arf_get_si(arb_midref(acb_realref(a[1].v)), ARF_RND_NEAR);
      if (k < 0 || k > 64) return fail(eval_status::unsupported);
      acb_one(out.v);
      ball t;
      for (slong j = 0; j < k; ++j) {
        acb_sub_ui(t.v, a[0].v, static_cast<ulong>(j), prec);
        acb_mul(out.v, out.v, t.v, prec);
        acb_div_ui(out.v, out.v, static_cast<ulong>(j + 1), prec);
      }
      return track(out);
    }
    if ((f == "max" || f == "min") && a.size() >= 2) {
      for (const ball& z : a)
        if (!real(z)) return fail(eval_status::unsupported);
      arb_t r;
      arb_init(r);
      arb_set(r, acb_realref(a[0].v));
      for (std::size_t i = 1; i < a.size(); ++i) {
        if (f == "max")
          arb_max(r, r, acb_realref(a[i].v), prec);
        else
          arb_min(r, r, acb_realref(a[i].v), prec);
      }
      acb_set_arb(out.v, r);
      arb_clear(r);
      return track(out);
    }
    return fail(eval_status::unsupported);
  }
};

/// Outcome of a numeric zero test.
enum class zero_result : std::uint8_t { zero, nonzero, undefined, unknown };

/// Evaluates `make(prec, ev, out)` (which fills `out` with the quantity to test) at growing
/// precision until it is decided:
///   - the ball excludes 0: `nonzero` (a proof, at this point);
///   - the ball contains 0 and its radius is below 2^-(128 + M) (M = largest |log2| of an
///     intermediate): `zero`;
///   - an exact pole / domain error: `undefined`; out of range or past max_precision: `unknown`.
/// The next precision is max(2 p, 2 M + 256): enough to resolve a unit difference next to
/// values of size 2^M, and to reduce arguments of that size.
template <class Make>
zero_result decide_zero(Make&& make, budget& b, const point_map* at = nullptr) {
  slong prec = min_precision;
  for (;;) {
    ball_eval ev{prec, at, b};
    ball d;
    if (!make(ev, d)) {
      if (ev.status == eval_status::undefined) return zero_result::undefined;
      if (ev.status == eval_status::unsupported) return zero_result::unknown;
      // A ball that stays non-finite far beyond the scale of its values sits on a pole
      // (tan(pi/2)): give up instead of climbing to max_precision.
      if (prec >= 2 * static_cast<slong>(ev.log2mag) + 4096) return zero_result::unknown;
    } else if (!acb_contains_zero(d.v)) {
      return zero_result::nonzero;
    } else {
      // 0 is in the ball, so |midpoint| <= radius: the radii bound the whole value.
      const slong threshold = -128 - static_cast<slong>(std::ceil(ev.log2mag));
      if (mag_cmp_2exp_si(arb_radref(acb_realref(d.v)), threshold) < 0 &&
          mag_cmp_2exp_si(arb_radref(acb_imagref(d.v)), threshold) < 0)
        return zero_result::zero;
    }
    const slong next = std::max<slong>(2 * prec, 2 * static_cast<slong>(ev.log2mag) + 256);
    if (prec >= max_precision) return zero_result::unknown;
    prec = std::min<slong>(next, max_precision);
  }
}

}  // namespace grpo::rewards::math::detail
