// SPDX-License-Identifier: Apache-2.0
/// @file error.hpp
/// @brief grpo::error (exception with a stable id), GRPO_EXPECTS and the no-exceptions GRPO_ABORT hook.
#pragma once

#include <grpo/core/config.hpp>

#include <cstdio>     // std::fputs in the default abort handler
#include <cstdlib>    // std::abort
#include <stdexcept>  // std::invalid_argument
#include <string>
#include <string_view>

namespace grpo {

/// Stable error identifiers; the message of a grpo::error always starts with "[grpo.<id>]" so callers
/// (and tests) can match on it, like nlohmann/json's exception ids.
enum class errc {
  shape_mismatch,  ///< extents of arguments disagree, or wrong rank
  bad_option,      ///< an option value or a combination of options is not allowed
  bad_value,       ///< NaN/Inf or an otherwise invalid number where it is not allowed
  out_of_range,    ///< an index (token id, group id) outside its valid range
  bad_dtype,       ///< element type of a foreign tensor (DLPack, torch) is not the expected one
  bad_device,      ///< tensor lives on a device this code path cannot read
  cuda,            ///< a CUDA runtime call failed (converted by grpo::cuda::throw_on_error)
  collective,      ///< a data-parallel collective failed
  sandbox_unavailable,  ///< the kernel refused an isolation step of the code sandbox (fail closed)
};

/// The textual id of an error code, e.g. "shape_mismatch".
constexpr std::string_view to_string(errc e) noexcept {
  switch (e) {
    case errc::shape_mismatch: return "shape_mismatch";
    case errc::bad_option: return "bad_option";
    case errc::bad_value: return "bad_value";
    case errc::out_of_range: return "out_of_range";
    case errc::bad_dtype: return "bad_dtype";
    case errc::bad_device: return "bad_device";
    case errc::cuda: return "cuda";
    case errc::collective: return "collective";
    case errc::sandbox_unavailable: return "sandbox_unavailable";
  }
  return "unknown";
}

/// Exception thrown on violated preconditions. Derives from std::invalid_argument because every id is
/// about an argument the caller passed; what() reads "[grpo.<id>] <message> (<file>:<line>)".
class error : public std::invalid_argument {
 public:
  error(errc code, const std::string& what_arg) : std::invalid_argument(what_arg), code_(code) {}
  /// @return the stable id of this error.
  [[nodiscard]] errc code() const noexcept { return code_; }

 private:
  errc code_;
};

namespace detail {
/// Builds "[grpo.<id>] msg (file:line)".
inline std::string format_error(errc code, std::string_view msg, const char* file, int line) {
  std::string s;
  s.reserve(msg.size() + 64);
  s += "[grpo.";
  s += to_string(code);
  s += "] ";
  s += msg;
  s += " (";
  s += file;
  s += ':';
  s += std::to_string(line);
  s += ')';
  return s;
}
}  // namespace detail
}  // namespace grpo

// GRPO_ABORT(msg): called instead of throwing when exceptions are disabled. The default writes the
// message to stderr and aborts; define it before including grpo to route it elsewhere. It must not
// return.
#ifndef GRPO_ABORT
#define GRPO_ABORT(msg)                  \
  do {                                   \
    std::fputs((msg), stderr);           \
    std::fputs("\n", stderr);            \
    std::abort();                        \
  } while (0)
#endif

#if GRPO_USE_EXCEPTIONS
/// Raise grpo::error with id `code` (an enumerator of grpo::errc, written bare: shape_mismatch).
#define GRPO_THROW(code, msg)                                                                  \
  throw ::grpo::error(::grpo::errc::code,                                                      \
                      ::grpo::detail::format_error(::grpo::errc::code, (msg), __FILE__, __LINE__))
#else
#define GRPO_THROW(code, msg) \
  GRPO_ABORT(::grpo::detail::format_error(::grpo::errc::code, (msg), __FILE__, __LINE__).c_str())
#endif

/// GRPO_EXPECTS(cond, id, msg): precondition check on host code. `id` is a bare grpo::errc enumerator,
/// `msg` anything convertible to std::string_view (built only on failure).
/// Example: GRPO_EXPECTS(a.extent(0) == b.extent(0), shape_mismatch, "advantages: rows != logp rows");
#ifndef GRPO_EXPECTS
#define GRPO_EXPECTS(cond, code, msg)           \
  do {                                          \
    if (!(cond)) [[unlikely]] {                 \
      GRPO_THROW(code, msg);                    \
    }                                           \
  } while (0)
#endif
