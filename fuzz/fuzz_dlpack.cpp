// SPDX-License-Identifier: Apache-2.0
/// @file fuzz_dlpack.cpp
/// @brief DLPack input validation (grpo::as_view_as over a DLTensor whose header fields come from
///        the input: ndim, shape, strides, dtype, byte_offset, device, null pointers): either a
///        grpo::error or a view whose extents and strides are the tensor's; never a crash or UB.
///        The data is never read (a DLTensor cannot say how large its buffer is).
#include <grpo/backends/dlpack.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace {
struct reader {
  const std::uint8_t* p;
  std::size_t n;
  template <class T>
  T take() {
    T v{};
    const std::size_t k = n < sizeof(T) ? n : sizeof(T);
    std::memcpy(&v, p, k);
    p += k;
    n -= k;
    return v;
  }
};
alignas(64) std::array<std::uint8_t, 256> storage{};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  reader r{data, size};
  const auto flags = r.take<std::uint8_t>();
  std::array<std::int64_t, 4> shape{}, strides{};
  DLTensor t{};
  t.ndim = static_cast<int>(static_cast<std::int8_t>(r.take<std::uint8_t>()) % 5);  // -4 .. 4
  for (auto& s : shape) s = static_cast<std::int64_t>(r.take<std::int16_t>());
  for (auto& s : strides) s = static_cast<std::int64_t>(r.take<std::int16_t>());
  t.dtype.code = r.take<std::uint8_t>() % 8;
  t.dtype.bits = r.take<std::uint8_t>();
  t.dtype.lanes = static_cast<std::uint16_t>(1 + (flags & 0x40 ? r.take<std::uint8_t>() % 4 : 0));
  t.byte_offset = r.take<std::uint8_t>();
  t.device.device_type = static_cast<DLDeviceType>(1 + r.take<std::uint8_t>() % 16);
  t.data = (flags & 1) ? nullptr : storage.data();
  t.shape = (flags & 2) ? nullptr : shape.data();
  t.strides = (flags & 4) ? strides.data() : nullptr;
  auto check = [&](const auto& v) {
    for (std::size_t d = 0; d < v.rank(); ++d) {
      if (v.extent(d) != shape[d]) __builtin_trap();
      if (t.strides != nullptr && v.stride(d) != strides[d]) __builtin_trap();
    }
  };
  try {
    check(grpo::as_view_as<const float, 2>(t));
  } catch (const grpo::error&) {
  }
  try {
    check(grpo::as_view_as<const double, 1>(t));
  } catch (const grpo::error&) {
  }
  try {
    check(grpo::as_view_as<const std::int64_t, 3>(t));
  } catch (const grpo::error&) {
  }
  return 0;
}
