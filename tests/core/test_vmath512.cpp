// SPDX-License-Identifier: Apache-2.0
// AVX-512 exp / log / bf16 / fp16 conversions of core/vmath512.hpp against double-precision libm and
// the scalar storage types. Built with -march=native on an AVX-512 machine only (tests/CMakeLists).
#include <grpo/core/half.hpp>
#include <grpo/core/vmath512.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#if !GRPO_HAS_AVX512
#error "test_vmath512 must be compiled for AVX-512F + DQ"
#endif

namespace v = grpo::math::v512;

namespace {
constexpr float inf = std::numeric_limits<float>::infinity();
constexpr float qnan = std::numeric_limits<float>::quiet_NaN();

double ulp_error(float a, double r) {
  const float rf = static_cast<float>(r);
  if (rf == 0.0f) return a == 0.0f ? 0.0 : std::fabs(double(a)) / double(std::numeric_limits<float>::denorm_min());
  const float up = std::nextafter(std::fabs(rf), inf);
  const double spacing = static_cast<double>(up - std::fabs(rf));
  return std::fabs(static_cast<double>(a) - r) / spacing;
}

template <class F>
std::vector<float> apply(F f, const std::vector<float>& x) {
  std::vector<float> out(x.size());
  std::size_t i = 0;
  for (; i + 16 <= x.size(); i += 16) _mm512_storeu_ps(out.data() + i, f(v::load(x.data() + i)));
  if (i < x.size()) {
    alignas(64) float tmp[16];
    _mm512_storeu_ps(tmp, f(v::load_tail(x.data() + i, static_cast<int>(x.size() - i))));
    for (std::size_t k = 0; i + k < x.size(); ++k) out[i + k] = tmp[k];
  }
  return out;
}
}  // namespace

TEST_CASE("v512::exp within 2 ulp of double exp on [-87.3, 88.3]") {
  std::vector<float> xs;
  // a uniform grid of 4 million points over the range, plus every 64th float of magnitude
  // below 2^-10 (where the reduction is exact and the result is 1 + x)
  constexpr int grid = 1 << 22;
  for (int i = 0; i <= grid; ++i) xs.push_back(-87.3f + 175.6f * static_cast<float>(i) / grid);
  for (std::uint32_t b = 0; b < 0x3a800000u; b += 64u * 4099u) {
    float f;
    std::memcpy(&f, &b, 4);
    xs.push_back(f);
    xs.push_back(-f);
  }
  xs.push_back(0.0f);
  xs.push_back(-0.0f);
  const auto e = apply([](v::vf x) { return v::exp(x); }, xs);
  double worst = 0.0;
  for (std::size_t i = 0; i < xs.size(); ++i)
    worst = std::max(worst, ulp_error(e[i], std::exp(double(xs[i]))));
  MESSAGE("worst ulp over " << xs.size() << " points: " << worst);
  CHECK(worst < 2.0);
  CHECK(e[xs.size() - 1] == 1.0f);
}

TEST_CASE("v512::exp_fast: relative error <= 3e-7 + 1e-7 |x| on [-87.3, 88.3]; e^0 = 1; edges") {
  std::vector<float> xs;
  constexpr int grid = 1 << 22;
  for (int i = 0; i <= grid; ++i) xs.push_back(-87.3f + 175.6f * static_cast<float>(i) / grid);
  // dense near 0, where softmax sums live, and both sides of every integer t = x log2 e (the
  // reduction's switch points, where a polynomial error shows up as a jump)
  for (int i = -20000; i <= 20000; ++i) xs.push_back(static_cast<float>(i) * 1e-4f);
  for (int k = -125; k <= 127; ++k) {
    const float xk = static_cast<float>((k + 0.5) * 0.69314718055994531);
    xs.push_back(std::nextafter(xk, -inf));
    xs.push_back(xk);
    xs.push_back(std::nextafter(xk, inf));
  }
  const auto e = apply([](v::vf x) { return v::exp_fast(x); }, xs);
  double worst_excess = -1.0, worst_near0 = 0.0;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const double r = std::exp(double(xs[i]));
    if (r < 1.2e-38 || r > 3.4e38) continue;  // subnormal / overflow: checked below
    const double rel = std::fabs(double(e[i]) - r) / r;
    worst_excess = std::max(worst_excess, rel - (3e-7 + 1e-7 * std::fabs(double(xs[i]))));
    if (std::fabs(xs[i]) <= 1.0f) worst_near0 = std::max(worst_near0, rel);
  }
  MESSAGE("worst relative error near 0: " << worst_near0);
  CHECK(worst_excess <= 0.0);
  CHECK(worst_near0 < 2.5e-7);
  // e^0 = 1 exactly (the block maximum of a softmax contributes exactly 1); -inf is left to the
  // callers, which clamp first as for exp
  const std::vector<float> edges = {0.0f, -0.0f, -104.0f, qnan, 88.8f, 88.5f, -87.0f};
  const auto ee = apply([](v::vf x) { return v::exp_fast(x); }, edges);
  CHECK(ee[0] == 1.0f);
  CHECK(ee[1] == 1.0f);
  CHECK(ee[2] == 0.0f);                     // below the subnormal range
  CHECK(std::isnan(ee[3]));
  CHECK(ee[4] == inf);
  CHECK(std::fabs(ee[5] / std::exp(88.5) - 1.0) < 3e-7 + 1e-7 * 88.5);  // just below FLT_MAX
  CHECK(std::fabs(ee[6] / std::exp(-87.0) - 1.0) < 3e-7 + 1e-7 * 87.0);
}

TEST_CASE("v512::exp_full edges: -inf -> 0, overflow -> inf, NaN -> NaN, subnormal range") {
  const std::vector<float> xs = {-inf, -1e30f, -104.0f, -103.0f, -95.0f, -88.0f, 88.7f, 88.8f,
                                 100.0f, inf, qnan, -0.5f, 3.0f};
  const auto e = apply([](v::vf x) { return v::exp_full(x); }, xs);
  CHECK(e[0] == 0.0f);
  CHECK(e[1] == 0.0f);
  CHECK(e[2] == 0.0f);  // e^-104 = 6.8e-46 rounds to 0 in float
  // subnormal results: within one subnormal step of the correctly rounded value
  for (int i : {3, 4, 5}) {
    const double r = std::exp(double(xs[i]));
    CHECK(std::fabs(double(e[i]) - r) <= 1.5 * double(std::numeric_limits<float>::denorm_min()) +
                                             2e-7 * r);
  }
  CHECK(ulp_error(e[6], std::exp(double(xs[6]))) < 2.0);
  CHECK(e[7] == inf);
  CHECK(e[8] == inf);
  CHECK(e[9] == inf);
  CHECK(std::isnan(e[10]));
  CHECK(ulp_error(e[11], std::exp(-0.5)) < 2.0);
  CHECK(ulp_error(e[12], std::exp(3.0)) < 2.0);
}

TEST_CASE("v512::log within 2 ulp of double log; edges") {
  std::vector<float> xs;
  // positive normals over the whole exponent range, and subnormals
  for (std::uint32_t b = 0x00800000u; b < 0x7f800000u; b += 4099u) {
    float f;
    std::memcpy(&f, &b, 4);
    xs.push_back(f);
  }
  for (float f : {1.0f, 0.75f, 1.41421354f, 1.41421366f, 1.5f, 2.0f, 0.5f, 1e-40f, 1e-45f})
    xs.push_back(f);
  const auto l = apply([](v::vf x) { return v::log(x); }, xs);
  double worst = 0.0;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const double r = std::log(double(xs[i]));
    worst = std::max(worst, r == 0.0 ? std::fabs(double(l[i])) * 1e8 : ulp_error(l[i], r));
  }
  MESSAGE("worst ulp over " << xs.size() << " points: " << worst);
  CHECK(worst < 2.0);
  const std::vector<float> edges = {0.0f, -0.0f, inf, -1.0f, qnan, -inf};
  const auto le = apply([](v::vf x) { return v::log(x); }, edges);
  CHECK(le[0] == -inf);
  CHECK(le[1] == -inf);
  CHECK(le[2] == inf);
  CHECK(std::isnan(le[3]));
  CHECK(std::isnan(le[4]));
  CHECK(std::isnan(le[5]));
}

TEST_CASE("v512 bf16 / fp16 loads and stores equal the scalar storage types on every pattern") {
  std::vector<std::uint16_t> bits(65536);
  for (std::uint32_t i = 0; i < 65536; ++i) bits[i] = static_cast<std::uint16_t>(i);
  long bad_bf = 0, bad_h = 0;
  for (std::size_t i = 0; i < bits.size(); i += 16) {
    alignas(64) float wb[16], wh[16];
    _mm512_storeu_ps(wb, v::load_bf16(bits.data() + i));
    _mm512_storeu_ps(wh, v::load_fp16(bits.data() + i));
    for (int k = 0; k < 16; ++k) {
      const float rb = static_cast<float>(grpo::bfloat16::from_bits(bits[i + k]));
      const float rh = static_cast<float>(grpo::float16::from_bits(bits[i + k]));
      bad_bf += std::memcmp(&wb[k], &rb, 4) != 0;
      // vcvtph2ps quiets the 1022 signalling-NaN patterns; a NaN must stay a NaN of the same sign
      const bool same_nan = std::isnan(rh) && std::isnan(wh[k]) &&
                            std::signbit(rh) == std::signbit(wh[k]);
      bad_h += std::memcmp(&wh[k], &rh, 4) != 0 && !same_nan;
    }
  }
  CHECK(bad_bf == 0);
  CHECK(bad_h == 0);
  // Narrowing: floats around every rounding boundary, ties, NaN, inf, overflow.
  std::vector<float> fs;
  for (std::uint32_t b = 0; b < 0xffffffffu - 3001u; b += 3001u) {
    float f;
    std::memcpy(&f, &b, 4);
    fs.push_back(f);
  }
  for (float f : {qnan, -qnan, inf, -inf, 65504.0f, 65520.0f, 1e-8f, 1.00390625f, 1.01171875f})
    fs.push_back(f);
  while (fs.size() % 16) fs.push_back(0.0f);
  long bad_nb = 0, bad_nh = 0;
  for (std::size_t i = 0; i < fs.size(); i += 16) {
    alignas(64) std::uint16_t ob[16], oh[16];
    v::store_bf16(ob, v::load(fs.data() + i));
    v::store_fp16(oh, v::load(fs.data() + i));
    for (int k = 0; k < 16; ++k) {
      bad_nb += ob[k] != grpo::bfloat16(fs[i + k]).bits;
      const auto h = grpo::float16(fs[i + k]).bits;
      const bool both_nan = std::isnan(fs[i + k]) && (oh[k] & 0x7c00u) == 0x7c00u && (oh[k] & 0x3ffu);
      if (!(oh[k] == h || both_nan) && bad_nh < 5)
        MESSAGE(fs[i + k] << " vcvtps2ph " << oh[k] << " scalar " << h);
      bad_nh += !(oh[k] == h || both_nan);
    }
  }
  CHECK(bad_nb == 0);
  CHECK(bad_nh == 0);
}
