// SPDX-License-Identifier: Apache-2.0
// The packet operations that test_vmath512.cpp checks, written once over the arch tag `A` and
// included once per ISA inside that ISA's target region and namespace (no include guard: the
// file is meant to be included more than once). Whole packets, then a masked tail.

inline int lanes() { return A::lanes; }

/// op(x) element-wise: 0 exp, 1 exp_fast, 2 exp_full, 3 log.
inline void apply(int op, const float* x, float* out, std::ptrdiff_t n) {
  const auto f = [op](typename A::vf v) {
    switch (op) {
      case 0: return A::exp(v);
      case 1: return A::exp_fast(v);
      case 2: return A::exp_full(v);
      default: return A::log(v);
    }
  };
  std::ptrdiff_t i = 0;
  for (; i + A::lanes <= n; i += A::lanes) A::store(out + i, f(A::load(x + i)));
  if (i < n) A::store_tail(out + i, f(A::load_tail(x + i, n - i, 1.0f)), n - i);
}

/// Widening of n 16-bit values (H = bfloat16 / float16) into floats.
template <class H>
void widen(const H* x, float* out, std::ptrdiff_t n) {
  std::ptrdiff_t i = 0;
  for (; i + A::lanes <= n; i += A::lanes) A::store(out + i, A::load(x + i));
  if (i < n) A::store_tail(out + i, A::load_tail(x + i, n - i), n - i);
}

/// Narrowing of n floats into 16-bit storage (plain or non-temporal stores for whole packets;
/// `stream` needs out aligned to A::lanes elements).
template <class H>
void narrow(const float* x, H* out, std::ptrdiff_t n, bool stream) {
  std::ptrdiff_t i = 0;
  for (; i + A::lanes <= n; i += A::lanes) {
    if (stream)
      A::stream(out + i, A::load(x + i));
    else
      A::store(out + i, A::load(x + i));
  }
  if (stream) A::sfence();
  if (i < n) A::store_tail(out + i, A::load(x + i), n - i);  // x holds a whole packet here
}

/// One packet of the first n elements at x (the rest `fill`) stored whole into out[0, lanes).
template <class T>
void tail_packet(const T* x, std::ptrdiff_t n, float fill, float* out) {
  A::store(out, A::load_tail(x, n, fill));
}
/// The first n lanes of the packet x[0, lanes) stored into out of type T.
template <class T>
void tail_store(const float* x, std::ptrdiff_t n, T* out) {
  A::store_tail(out, A::load(x), n);
}

/// Horizontal sum and max of the packet x[0, lanes).
inline float hsum(const float* x) { return A::hsum(A::load(x)); }
inline float hmax(const float* x) { return A::hmax(A::load(x)); }

/// select / keep / count / cmp_nle on one packet: out = cmp_nle(a, b) ? a : 0, returns the count.
inline int keep_nle(const float* a, const float* b, float* out) {
  const auto m = A::cmp_nle(A::load(a), A::load(b));
  A::store(out, A::keep(m, A::load(a)));
  return A::count(m);
}
