// SPDX-License-Identifier: Apache-2.0
/// @file packet_contract_ops.ipp
/// @brief The packet test harness shared by test_vmath512.cpp (AVX2 / AVX-512) and
///        test_neon_packet.cpp (NEON): ulp error, the operations of one packet as function
///        pointers (struct ops, GRPO_TEST_OPS over a namespace instantiating packet_cases.ipp),
///        apply(). Included inside an anonymous namespace; the includer defines available().
constexpr float inf = std::numeric_limits<float>::infinity();
constexpr float qnan = std::numeric_limits<float>::quiet_NaN();

double ulp_error(float a, double r) {
  const float rf = static_cast<float>(r);
  if (rf == 0.0f)
    return a == 0.0f ? 0.0
                     : std::fabs(double(a)) / double(std::numeric_limits<float>::denorm_min());
  const float up = std::nextafter(std::fabs(rf), inf);
  const double spacing = static_cast<double>(up - std::fabs(rf));
  return std::fabs(static_cast<double>(a) - r) / spacing;
}

/// The operations of one packet, reached through plain function pointers (the callers are
/// outside any target region).
struct ops {
  const char* name;
  grpo::isa level;
  int (*lanes)();
  void (*apply)(int, const float*, float*, std::ptrdiff_t);
  void (*widen_bf)(const bfloat16*, float*, std::ptrdiff_t);
  void (*widen_h)(const float16*, float*, std::ptrdiff_t);
  void (*narrow_bf)(const float*, bfloat16*, std::ptrdiff_t, bool);
  void (*narrow_h)(const float*, float16*, std::ptrdiff_t, bool);
  void (*tail_f)(const float*, std::ptrdiff_t, float, float*);
  void (*tail_bf)(const bfloat16*, std::ptrdiff_t, float, float*);
  void (*tail_h)(const float16*, std::ptrdiff_t, float, float*);
  void (*store_f)(const float*, std::ptrdiff_t, float*);
  void (*store_bf)(const float*, std::ptrdiff_t, bfloat16*);
  void (*store_h)(const float*, std::ptrdiff_t, float16*);
  float (*hsum)(const float*);
  float (*hmax)(const float*);
  int (*keep_nle)(const float*, const float*, float*);
};

#define GRPO_TEST_OPS(ns, lvl)                                                                 \
  ops {                                                                                        \
#ns, lvl, ns::lanes, ns::apply, ns::widen<bfloat16>, ns::widen<float16>,                   \
        ns::narrow<bfloat16>, ns::narrow<float16>, ns::tail_packet<float>,                     \
        ns::tail_packet<bfloat16>, ns::tail_packet<float16>, ns::tail_store<float>,            \
        ns::tail_store<bfloat16>, ns::tail_store<float16>, ns::hsum, ns::hmax, ns::keep_nle    \
  }

std::vector<float> apply(const ops& o, int op, const std::vector<float>& x) {
  std::vector<float> out(x.size());
  o.apply(op, x.data(), out.data(), static_cast<std::ptrdiff_t>(x.size()));
  return out;
}
