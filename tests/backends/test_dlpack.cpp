// SPDX-License-Identifier: Apache-2.0
// DLPack backend: hand-built DLTensors (compact, strided, transposed, negative strides, byte
// offsets; f32, f64, bf16, f16) give views whose every element sits where DLPack's own addressing
// rule puts it: (char*)data + byte_offset + sizeof(elem) * sum_d i_d * strides[d].
#include <grpo/backends/dlpack.hpp>

#include <support/compare.hpp>

#include <dlpack/dlpack.h>
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace {

using grpo::index_t;

template <class T>
DLDataType dl_type_of() {
  if constexpr (std::is_same_v<T, float>)
    return {kDLFloat, 32, 1};
  else if constexpr (std::is_same_v<T, double>)
    return {kDLFloat, 64, 1};
  else if constexpr (std::is_same_v<T, grpo::bfloat16>)
    return {kDLBfloat, 16, 1};
  else
    return {kDLFloat, 16, 1};  // grpo::float16
}

/// A DLTensor over `buf` with the given shape/strides (strides empty -> NULL).
struct dl_holder {
  std::vector<std::int64_t> shape, strides;
  DLTensor t{};
  template <class T>
  dl_holder(std::vector<T>& buf, std::vector<std::int64_t> sh, std::vector<std::int64_t> st,
            std::uint64_t byte_offset = 0, DLDeviceType dev = kDLCPU)
      : shape(std::move(sh)), strides(std::move(st)) {
    t.data = buf.data();
    t.device = {dev, 0};
    t.ndim = static_cast<int>(shape.size());
    t.dtype = dl_type_of<T>();
    t.shape = shape.data();
    t.strides = strides.empty() ? nullptr : strides.data();
    t.byte_offset = byte_offset;
  }
};

/// DLPack's addressing rule written out independently of the traits: the address of element
/// (i, j) of a rank-2 DLTensor with explicit strides `st` (compact row-major when empty).
const char* dl_address(const DLTensor& t, std::size_t elem, index_t i, index_t j) {
  const std::int64_t s0 = t.strides ? t.strides[0] : t.shape[1];
  const std::int64_t s1 = t.strides ? t.strides[1] : 1;
  return static_cast<const char*>(t.data) + t.byte_offset +
         static_cast<std::int64_t>(elem) * (i * s0 + j * s1);
}

/// Every element of the view is at DLPack's address for it and has the value value_at(i, j).
template <class T, class F>
void check_dl2(const DLTensor& t, F&& value_at) {
  auto v = grpo::as_view_as<T, 2>(t);
  REQUIRE(v.extent(0) == t.shape[0]);
  REQUIRE(v.extent(1) == t.shape[1]);
  for (index_t i = 0; i < v.extent(0); ++i)
    for (index_t j = 0; j < v.extent(1); ++j) {
      CHECK(reinterpret_cast<const char*>(&v(i, j)) == dl_address(t, sizeof(T), i, j));
      CHECK(static_cast<double>(v(i, j)) == value_at(i, j));
    }
}

template <class T>
T make_value(double x) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>)
    return static_cast<T>(x);
  else
    return T(static_cast<float>(x));
}

}  // namespace

TEST_CASE_TEMPLATE("dlpack: compact, strided, transposed and offset tensors" *
                       doctest::test_suite("backends"),
                   T, float, double, grpo::bfloat16, grpo::float16) {
  // Logical matrix M(i, j) = 8 i + j (exactly representable in bf16/f16 for i < 3, j < 8), laid out
  // four ways in a 64-element buffer.
  auto m = [](index_t i, index_t j) { return static_cast<double>(8 * i + j); };
  std::vector<T> buf(64, make_value<T>(-1.0));

  SUBCASE("compact row-major, strides NULL") {
    for (index_t i = 0; i < 3; ++i)
      for (index_t j = 0; j < 5; ++j)
        buf[static_cast<std::size_t>(5 * i + j)] = make_value<T>(m(i, j));
    dl_holder h(buf, {3, 5}, {});
    check_dl2<T>(h.t, m);
    auto v = grpo::as_view_as<T, 2>(h.t);
    CHECK(v.stride(0) == 5);
    CHECK(v.stride(1) == 1);
    CHECK(v.is_contiguous());
  }
  SUBCASE("column-major (a transposed tensor) with explicit strides") {
    for (index_t i = 0; i < 3; ++i)
      for (index_t j = 0; j < 5; ++j)
        buf[static_cast<std::size_t>(i + 3 * j)] = make_value<T>(m(i, j));
    dl_holder h(buf, {3, 5}, {1, 3});
    check_dl2<T>(h.t, m);
    CHECK_FALSE(grpo::as_view_as<T, 2>(h.t).is_contiguous());
  }
  SUBCASE("padded rows and a byte offset") {
    // Row pitch 8, starting at element 6 (byte_offset = 6 * sizeof(T)).
    for (index_t i = 0; i < 3; ++i)
      for (index_t j = 0; j < 5; ++j)
        buf[static_cast<std::size_t>(6 + 8 * i + j)] = make_value<T>(m(i, j));
    dl_holder h(buf, {3, 5}, {8, 1}, 6 * sizeof(T));
    check_dl2<T>(h.t, m);
    CHECK(grpo::as_view_as<T, 2>(h.t).data_handle() == buf.data() + 6);
  }
  SUBCASE("negative row stride (flipped rows) from a byte offset") {
    // Row i stored at element 40 - 10 i, columns every 2nd element.
    for (index_t i = 0; i < 3; ++i)
      for (index_t j = 0; j < 5; ++j)
        buf[static_cast<std::size_t>(40 - 10 * i + 2 * j)] = make_value<T>(m(i, j));
    dl_holder h(buf, {3, 5}, {-10, 2}, 40 * sizeof(T));
    check_dl2<T>(h.t, m);
  }
  SUBCASE("the buffer's own padding values never leak into the view") {
    dl_holder h(buf, {4, 4}, {16, 2}, 0);
    for (index_t i = 0; i < 4; ++i)
      for (index_t j = 0; j < 4; ++j)
        buf[static_cast<std::size_t>(16 * i + 2 * j)] = make_value<T>(m(i, j));
    for (double x : grpo_test::to_vector(grpo::as_view_as<const T, 2>(h.t))) CHECK(x != -1.0);
  }
}

TEST_CASE("dlpack: dtype and device mapping tables" * doctest::test_suite("backends")) {
  using grpo::dtype;
  CHECK(grpo::dtype_from_dlpack({kDLFloat, 32, 1}) == dtype::f32);
  CHECK(grpo::dtype_from_dlpack({kDLFloat, 64, 1}) == dtype::f64);
  CHECK(grpo::dtype_from_dlpack({kDLFloat, 16, 1}) == dtype::f16);
  CHECK(grpo::dtype_from_dlpack({kDLBfloat, 16, 1}) == dtype::bf16);
  CHECK(grpo::dtype_from_dlpack({kDLInt, 32, 1}) == dtype::i32);
  CHECK(grpo::dtype_from_dlpack({kDLInt, 64, 1}) == dtype::i64);
  CHECK(grpo::dtype_from_dlpack({kDLInt, 8, 1}) == dtype::i8);
  CHECK(grpo::dtype_from_dlpack({kDLUInt, 8, 1}) == dtype::u8);
  CHECK(grpo::dtype_from_dlpack({kDLUInt, 1, 1}) == dtype::boolean);
  CHECK(grpo::dtype_from_dlpack({grpo::dlpack_bool_code, 8, 1}) == dtype::boolean);
  CHECK(grpo::dtype_from_dlpack({kDLFloat, 32, 4}) == dtype::unknown);
  CHECK(grpo::dtype_from_dlpack({kDLFloat, 8, 1}) == dtype::unknown);
  CHECK(grpo::dtype_from_dlpack({kDLBfloat, 32, 1}) == dtype::unknown);
  CHECK(grpo::dtype_from_dlpack({kDLInt, 16, 1}) == dtype::unknown);
  CHECK(grpo::dtype_from_dlpack({kDLComplex, 64, 1}) == dtype::unknown);
  CHECK(grpo::dtype_from_dlpack({kDLOpaqueHandle, 64, 1}) == dtype::unknown);
  CHECK(grpo::dlpack_element_bytes({kDLUInt, 1, 1}) == 1u);
  CHECK(grpo::dlpack_element_bytes({kDLBfloat, 16, 1}) == 2u);
  CHECK(grpo::dlpack_element_bytes({kDLFloat, 64, 1}) == 8u);

  using grpo::memory_space;
  CHECK(grpo::memory_space_from_dlpack({kDLCPU, 0}) == memory_space::host);
  CHECK(grpo::memory_space_from_dlpack({kDLCUDA, 3}) == memory_space::cuda);
  CHECK(grpo::memory_space_from_dlpack({kDLCUDAHost, 0}) == memory_space::cuda_host);
  CHECK(grpo::memory_space_from_dlpack({kDLCUDAManaged, 0}) == memory_space::cuda_managed);
  CHECK(grpo::memory_space_from_dlpack({kDLROCM, 0}) == memory_space::other);
  CHECK(grpo::memory_space_from_dlpack({kDLOpenCL, 0}) == memory_space::other);
}

TEST_CASE("dlpack: integer and bool tensors" * doctest::test_suite("backends")) {
  std::vector<std::int64_t> ids{5, 7, 11, 13, 17, 19};
  std::vector<std::int64_t> shape{2, 3};
  DLTensor t{ids.data(), {kDLCPU, 0}, 2, {kDLInt, 64, 1}, shape.data(), nullptr, 0};
  auto v = grpo::as_view_as<const std::int64_t, 2>(t);
  CHECK(v(1, 2) == 19);
  CHECK(v(0, 1) == 7);
  CHECK_THROWS_WITH_AS((grpo::as_view_as<std::int32_t, 2>(t)), doctest::Contains("int64"),
                       grpo::error);

  bool mask[4] = {true, false, false, true};
  std::vector<std::int64_t> s1{4};
  DLTensor b{mask, {kDLCPU, 0}, 1, {kDLUInt, 1, 1}, s1.data(), nullptr, 1};
  auto vb = grpo::as_view_as<bool, 1>(b);
  CHECK(vb.extent(0) == 4);
  CHECK(&vb(0) == &mask[1]);  // a one-byte offset is one bool element
  CHECK(vb(2) == true);
}

TEST_CASE("dlpack: wrong dtype, rank, device, offset and structure are rejected" *
          doctest::test_suite("backends")) {
  std::vector<float> buf(32, 1.0f);
  dl_holder h(buf, {4, 8}, {});

  CHECK_THROWS_WITH_AS((grpo::as_view_as<double, 2>(h.t)), doctest::Contains("[grpo.bad_dtype]"),
                       grpo::error);
  CHECK_THROWS_WITH_AS((grpo::as_view_as<grpo::bfloat16, 2>(h.t)), doctest::Contains("float32"),
                       grpo::error);
  CHECK_THROWS_WITH_AS((grpo::as_view_as<float, 1>(h.t)),
                       doctest::Contains("[grpo.shape_mismatch]"), grpo::error);
  CHECK_THROWS_WITH_AS((grpo::as_view_as<float, 3>(h.t)),
                       doctest::Contains("[grpo.shape_mismatch]"), grpo::error);
  auto ok = grpo::as_view_as<float, 2>(h.t);
  CHECK_NOTHROW(grpo::expect_host(ok, "logp"));
  CHECK_THROWS_WITH_AS(grpo::expect_extents(ok, {4, 7}, "logp"),
                       doctest::Contains("[grpo.shape_mismatch]"), grpo::error);

  SUBCASE("device memory is recognised and refused by host code") {
    h.t.device = {kDLCUDA, 1};
    auto v = grpo::as_view_as<float, 2>(h.t);  // making the view never touches the memory
    CHECK(v.space() == grpo::memory_space::cuda);
    CHECK_THROWS_WITH_AS(grpo::expect_host(v, "logp"), doctest::Contains("[grpo.bad_device]"),
                         grpo::error);
    h.t.device = {kDLROCM, 0};
    CHECK_THROWS_WITH_AS(grpo::expect_host(grpo::as_view_as<float, 2>(h.t), "logp"),
                         doctest::Contains("[grpo.bad_device]"), grpo::error);
    h.t.device = {kDLCUDAHost, 0};
    CHECK_NOTHROW(grpo::expect_host(grpo::as_view_as<float, 2>(h.t), "logp"));
    h.t.device = {kDLCUDAManaged, 0};
    CHECK_NOTHROW(grpo::expect_host(grpo::as_view_as<float, 2>(h.t), "logp"));
  }
  SUBCASE("byte_offset must be a multiple of the element size") {
    h.t.byte_offset = 2;
    CHECK_THROWS_WITH_AS((grpo::as_view_as<float, 2>(h.t)), doctest::Contains("[grpo.bad_value]"),
                         grpo::error);
    h.t.byte_offset = 8;
    CHECK(grpo::as_view_as<float, 2>(h.t).data_handle() == buf.data() + 2);
  }
  SUBCASE("vector lanes") {
    h.t.dtype = {kDLFloat, 32, 4};
    CHECK_THROWS_WITH_AS((grpo::as_view_as<float, 2>(h.t)), doctest::Contains("[grpo.bad_dtype]"),
                         grpo::error);
    CHECK_THROWS_WITH_AS((grpo::as_view_as<float, 2>(h.t)), doctest::Contains("lanes"),
                         grpo::error);
  }
  SUBCASE("unknown dtype") {
    h.t.dtype = {kDLComplex, 64, 1};
    CHECK_THROWS_WITH_AS((grpo::as_view_as<float, 2>(h.t)), doctest::Contains("[grpo.bad_dtype]"),
                         grpo::error);
  }
  SUBCASE("NULL shape, negative ndim or extent, NULL data") {
    h.t.shape = nullptr;
    CHECK_THROWS_WITH_AS((grpo::as_view_as<float, 2>(h.t)), doctest::Contains("[grpo.bad_value]"),
                         grpo::error);
    h.t.shape = h.shape.data();
    h.t.ndim = -1;
    CHECK_THROWS_WITH_AS((grpo::as_view_as<float, 2>(h.t)),
                         doctest::Contains("[grpo.shape_mismatch]"), grpo::error);
    h.t.ndim = 2;
    h.shape[1] = -3;
    CHECK_THROWS_WITH_AS((grpo::as_view_as<float, 2>(h.t)), doctest::Contains("[grpo.bad_value]"),
                         grpo::error);
    h.shape[1] = 8;
    h.t.data = nullptr;
    CHECK_THROWS_WITH_AS((grpo::as_view_as<float, 2>(h.t)), doctest::Contains("data is NULL"),
                         grpo::error);
    h.shape[0] = 0;  // an empty tensor may have no data
    auto e = grpo::as_view_as<float, 2>(h.t);
    CHECK(e.empty());
  }
}

TEST_CASE("dlpack: rank-0 and managed tensors" * doctest::test_suite("backends")) {
  double scalar = 2.5;
  DLTensor s{&scalar, {kDLCPU, 0}, 0, {kDLFloat, 64, 1}, nullptr, nullptr, 0};
  auto v0 = grpo::as_view_as<double, 0>(s);
  CHECK(v0.size() == 1);
  CHECK(v0.data_handle() == &scalar);

  static int deleted = 0;
  std::vector<float> buf{1, 2, 3, 4, 5, 6};
  std::vector<std::int64_t> shape{3, 2}, strides{1, 3};  // column-major 3x2
  DLManagedTensor mt{};
  mt.dl_tensor = {buf.data(), {kDLCPU, 0}, 2, {kDLFloat, 32, 1}, shape.data(), strides.data(), 0};
  mt.manager_ctx = nullptr;
  mt.deleter = [](DLManagedTensor*) { ++deleted; };
  {
    auto v = grpo::as_view_as<const float, 2>(mt);
    CHECK(v(0, 0) == 1.0f);
    CHECK(v(2, 0) == 3.0f);
    CHECK(v(0, 1) == 4.0f);
    CHECK(v(2, 1) == 6.0f);
    CHECK(grpo_test::compare(v, grpo::as_view_as<const float, 2>(mt.dl_tensor)).max_abs == 0.0);
  }
  CHECK(deleted == 0);  // views borrow: grpo never calls the deleter
  mt.deleter(&mt);
  CHECK(deleted == 1);
  mt.dl_tensor.device = {kDLCUDA, 0};
  CHECK(grpo::as_view_as<float, 2>(mt).space() == grpo::memory_space::cuda);
  mt.dl_tensor.byte_offset = 3;
  CHECK_THROWS_WITH_AS((grpo::as_view_as<float, 2>(mt)), doctest::Contains("[grpo.bad_value]"),
                       grpo::error);
}
