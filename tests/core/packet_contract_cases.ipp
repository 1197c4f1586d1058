// SPDX-License-Identifier: Apache-2.0
/// @file packet_contract_cases.ipp
/// @brief The packet contract (exp / exp_fast / exp_full / log accuracy and edges, bf16 / fp16
///        conversions, masked tails, reductions and masks) as doctest cases over available():
///        one text for every ISA packet (test_vmath512.cpp, test_neon_packet.cpp).

TEST_CASE("exp within 2 ulp of double exp on [-87.3, 88.3], e^0 = 1") {
  std::vector<float> xs;
  constexpr int grid = 1 << 21;
  for (int i = 0; i <= grid; ++i) xs.push_back(-87.3f + 175.6f * static_cast<float>(i) / grid);
  for (std::uint32_t b = 0; b < 0x3a800000u; b += 64u * 4099u) {  // tiny |x|: e^x = 1 + x
    float f;
    std::memcpy(&f, &b, 4);
    xs.push_back(f);
    xs.push_back(-f);
  }
  xs.push_back(0.0f);
  xs.push_back(-0.0f);
  xs.push_back(1.0f);  // an odd count: the last packet is a masked tail
  for (const ops& o : available()) {
    const std::string name = o.name;
    CAPTURE(name);
    const auto e = apply(o, 0, xs);
    double worst = 0.0;
    for (std::size_t i = 0; i < xs.size(); ++i)
      worst = std::max(worst, ulp_error(e[i], std::exp(double(xs[i]))));
    MESSAGE(name << " exp: worst ulp over " << xs.size() << " points: " << worst);
    CHECK(worst < 2.0);
    CHECK(e[xs.size() - 2] == 1.0f);
    CHECK(e[xs.size() - 3] == 1.0f);
  }
}

TEST_CASE("exp_fast: relative error <= 3e-7 + 1e-7 |x| on [-87.3, 88.3]; e^0 = 1; edges") {
  std::vector<float> xs;
  constexpr int grid = 1 << 21;
  for (int i = 0; i <= grid; ++i) xs.push_back(-87.3f + 175.6f * static_cast<float>(i) / grid);
  // dense near 0, where softmax sums live, and both sides of every switch point of the
  // reduction (t = x log2 e a half-integer), where a polynomial error would show as a jump
  for (int i = -20000; i <= 20000; ++i) xs.push_back(static_cast<float>(i) * 1e-4f);
  for (int k = -125; k <= 126; ++k) {
    const float xk = static_cast<float>((k + 0.5) * 0.69314718055994531);
    xs.push_back(std::nextafter(xk, -inf));
    xs.push_back(xk);
    xs.push_back(std::nextafter(xk, inf));
  }
  for (const ops& o : available()) {
    const std::string name = o.name;
    CAPTURE(name);
    const auto e = apply(o, 1, xs);
    double worst_excess = -1.0, worst_near0 = 0.0;
    for (std::size_t i = 0; i < xs.size(); ++i) {
      const double r = std::exp(double(xs[i]));
      if (r < 1.2e-38 || r > 3.4e38) continue;
      const double rel = std::fabs(double(e[i]) - r) / r;
      worst_excess = std::max(worst_excess, rel - (3e-7 + 1e-7 * std::fabs(double(xs[i]))));
      if (std::fabs(xs[i]) <= 1.0f) worst_near0 = std::max(worst_near0, rel);
    }
    MESSAGE(name << " exp_fast: worst relative error near 0: " << worst_near0);
    CHECK(worst_excess <= 0.0);
    CHECK(worst_near0 < 2.5e-7);
    const std::vector<float> edges = {0.0f, -0.0f, qnan, 88.5f, -87.0f, -104.0f, 88.8f};
    const auto ee = apply(o, 1, edges);
    CHECK(ee[0] == 1.0f);
    CHECK(ee[1] == 1.0f);
    CHECK(std::isnan(ee[2]));
    CHECK(std::fabs(ee[4] / std::exp(-87.0) - 1.0) < 3e-7 + 1e-7 * 87.0);
    if (o.level == grpo::isa::avx512) {  // vscalefps: defined outside the range too
      CHECK(std::fabs(ee[3] / std::exp(88.5) - 1.0) < 3e-7 + 1e-7 * 88.5);  // near FLT_MAX
      CHECK(ee[5] == 0.0f);
      CHECK(ee[6] == inf);
    }
  }
}

TEST_CASE("exp_full edges: -inf -> 0, overflow -> inf, NaN -> NaN, subnormal range") {
  const std::vector<float> xs = {-inf, -1e30f, -104.0f, -103.0f, -95.0f, -88.0f, 88.7f, 88.8f,
                                 100.0f, inf, qnan, -0.5f, 3.0f, 1e30f, -100.5f};
  for (const ops& o : available()) {
    const std::string name = o.name;
    CAPTURE(name);
    const auto e = apply(o, 2, xs);
    CHECK(e[0] == 0.0f);
    CHECK(e[1] == 0.0f);
    CHECK(e[2] == 0.0f);  // e^-104 = 6.8e-46 rounds to 0 in float
    for (int i : {3, 4, 5, 14}) {  // within one subnormal step of the exact value
      const double r = std::exp(double(xs[i]));
      CHECK(std::fabs(double(e[i]) - r) <=
            1.5 * double(std::numeric_limits<float>::denorm_min()) + 2e-7 * r);
    }
    CHECK(ulp_error(e[6], std::exp(double(xs[6]))) < 2.0);
    CHECK(e[7] == inf);
    CHECK(e[8] == inf);
    CHECK(e[9] == inf);
    CHECK(std::isnan(e[10]));
    CHECK(ulp_error(e[11], std::exp(-0.5)) < 2.0);
    CHECK(ulp_error(e[12], std::exp(3.0)) < 2.0);
    CHECK(e[13] == inf);
  }
}

TEST_CASE("log within 2 ulp of double log over normals and subnormals; edges") {
  std::vector<float> xs;
  for (std::uint32_t b = 1u; b < 0x7f800000u; b += 4099u) {  // subnormals, then every binade
    float f;
    std::memcpy(&f, &b, 4);
    xs.push_back(f);
  }
  for (float f : {1.0f, 0.75f, 1.41421354f, 1.41421366f, 1.5f, 2.0f, 0.5f, 1e-40f, 1e-45f})
    xs.push_back(f);
  for (const ops& o : available()) {
    const std::string name = o.name;
    CAPTURE(name);
    const auto l = apply(o, 3, xs);
    double worst = 0.0;
    for (std::size_t i = 0; i < xs.size(); ++i) {
      const double r = std::log(double(xs[i]));
      worst = std::max(worst, r == 0.0 ? std::fabs(double(l[i])) * 1e8 : ulp_error(l[i], r));
    }
    MESSAGE(name << " log: worst ulp over " << xs.size() << " points: " << worst);
    CHECK(worst < 2.0);
    const std::vector<float> edges = {0.0f, -0.0f, inf, -1.0f, qnan, -inf, -1e-40f};
    const auto le = apply(o, 3, edges);
    CHECK(le[0] == -inf);
    CHECK(le[1] == -inf);
    CHECK(le[2] == inf);
    CHECK(std::isnan(le[3]));
    CHECK(std::isnan(le[4]));
    CHECK(std::isnan(le[5]));
    CHECK(std::isnan(le[6]));
  }
}

TEST_CASE("bf16 / fp16 widening and narrowing equal the scalar storage types on every pattern") {
  std::vector<bfloat16> bb(65536 + 5);  // + 5: the last packet is a masked tail
  std::vector<float16> hh(65536 + 5);
  for (std::uint32_t i = 0; i < bb.size(); ++i) {
    bb[i] = bfloat16::from_bits(static_cast<std::uint16_t>(i));
    hh[i] = float16::from_bits(static_cast<std::uint16_t>(i));
  }
  // Narrowing inputs: floats spread over all patterns, rounding ties, NaN, inf, overflow,
  // subnormals of both formats.
  std::vector<float> fs;
  for (std::uint32_t b = 0; b < 0xffffffffu - 3001u; b += 3001u) {
    float f;
    std::memcpy(&f, &b, 4);
    fs.push_back(f);
  }
  for (float f : {qnan, -qnan, inf, -inf, 65504.0f, 65520.0f, 1e-8f, 1.00390625f, 1.01171875f,
                  1e-39f, -3e-39f, 5.9604645e-8f})
    fs.push_back(f);
  for (const ops& o : available()) {
    const std::string name = o.name;
    CAPTURE(name);
    std::vector<float> wb(bb.size()), wh(hh.size());
    o.widen_bf(bb.data(), wb.data(), static_cast<std::ptrdiff_t>(bb.size()));
    o.widen_h(hh.data(), wh.data(), static_cast<std::ptrdiff_t>(hh.size()));
    long bad_bf = 0, bad_h = 0;
    for (std::size_t i = 0; i < bb.size(); ++i) {
      const float rb = static_cast<float>(bb[i]);
      const float rh = static_cast<float>(hh[i]);
      bad_bf += std::memcmp(&wb[i], &rb, 4) != 0;
      // vcvtph2ps quiets signalling NaNs: a NaN must stay a NaN of the same sign
      const bool same_nan =
          std::isnan(rh) && std::isnan(wh[i]) && std::signbit(rh) == std::signbit(wh[i]);
      bad_h += std::memcmp(&wh[i], &rh, 4) != 0 && !same_nan;
    }
    CHECK(bad_bf == 0);
    CHECK(bad_h == 0);
    for (bool stream : {false, true}) {
      CAPTURE(stream);
      // aligned outputs for the non-temporal stores; fs padded to whole packets for the tail read
      std::vector<float> in(fs);
      const auto n = static_cast<std::ptrdiff_t>(in.size());
      in.resize(in.size() + 16, 0.0f);
      struct alignas(64) blk16 {
        std::uint16_t v[32];
      };
      std::vector<blk16> ob(in.size() / 32 + 2), oh(in.size() / 32 + 2);
      auto* pb = reinterpret_cast<bfloat16*>(ob.data());
      auto* ph = reinterpret_cast<float16*>(oh.data());
      o.narrow_bf(in.data(), pb, n, stream);
      o.narrow_h(in.data(), ph, n, stream);
      long bad_nb = 0, bad_nh = 0;
      for (std::ptrdiff_t i = 0; i < n; ++i) {
        bad_nb += pb[i].bits != bfloat16(fs[i]).bits;
        const auto h = float16(fs[i]).bits;
        const bool both_nan =
            std::isnan(fs[i]) && (ph[i].bits & 0x7c00u) == 0x7c00u && (ph[i].bits & 0x3ffu);
        bad_nh += !(ph[i].bits == h || both_nan);
      }
      CHECK(bad_nb == 0);
      CHECK(bad_nh == 0);
    }
  }
}

TEST_CASE("masked tails: loads fill the missing lanes, stores write exactly n elements") {
  for (const ops& o : available()) {
    const std::string name = o.name;
    CAPTURE(name);
    const int L = o.lanes();
    std::vector<float> src(32), out(32);
    std::vector<bfloat16> sb(32);
    std::vector<float16> sh(32);
    for (int k = 0; k < 32; ++k) {
      src[k] = 0.5f * static_cast<float>(k) - 3.0f;
      sb[k] = bfloat16(src[k]);
      sh[k] = float16(src[k]);
    }
    for (int n = 0; n < L; ++n) {
      CAPTURE(n);
      std::vector<float> pf(32, 7.0f), pb(32, 7.0f), ph(32, 7.0f);
      o.tail_f(src.data(), n, -inf, pf.data());
      o.tail_bf(sb.data(), n, -inf, pb.data());
      o.tail_h(sh.data(), n, -inf, ph.data());
      for (int k = 0; k < L; ++k) {
        CHECK(pf[k] == (k < n ? src[k] : -inf));
        CHECK(pb[k] == (k < n ? src[k] : -inf));  // these values are exact in bf16 and fp16
        CHECK(ph[k] == (k < n ? src[k] : -inf));
      }
      for (int k = L; k < 32; ++k) CHECK(pf[k] == 7.0f);  // one packet, no more
      std::vector<float> df(32, 9.0f);
      std::vector<bfloat16> db(32, bfloat16(9.0f));
      std::vector<float16> dh(32, float16(9.0f));
      o.store_f(src.data(), n, df.data());
      o.store_bf(src.data(), n, db.data());
      o.store_h(src.data(), n, dh.data());
      for (int k = 0; k < 32; ++k) {
        CHECK(df[k] == (k < n ? src[k] : 9.0f));
        CHECK(static_cast<float>(db[k]) == (k < n ? src[k] : 9.0f));
        CHECK(static_cast<float>(dh[k]) == (k < n ? src[k] : 9.0f));
      }
    }
  }
}

TEST_CASE("horizontal sum / max and the mask operations") {
  for (const ops& o : available()) {
    const std::string name = o.name;
    CAPTURE(name);
    const int L = o.lanes();
    std::vector<float> a(16), b(16, 0.0f), out(16);
    double sum = 0.0;
    float mx = -inf;
    for (int k = 0; k < L; ++k) {
      a[k] = static_cast<float>((k * 7) % 11) - 4.25f;  // exact sums in float
      sum += a[k];
      mx = std::max(mx, a[k]);
    }
    CHECK(o.hsum(a.data()) == static_cast<float>(sum));
    CHECK(o.hmax(a.data()) == mx);
    a[1] = qnan;  // cmp_nle is true for NaN: the lane is kept
    const int c = o.keep_nle(a.data(), b.data(), out.data());
    int expect = 0;
    for (int k = 0; k < L; ++k) {
      const bool kept = !(a[k] <= b[k]);
      expect += kept;
      if (kept && k != 1) CHECK(out[k] == a[k]);
      if (!kept) CHECK(out[k] == 0.0f);
    }
    CHECK(std::isnan(out[1]));
    CHECK(c == expect);
  }
}
