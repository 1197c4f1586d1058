// SPDX-License-Identifier: Apache-2.0
/// @file parse_lexicon.hpp
/// @brief The maths parser's vocabulary: function names, Greek letters, the commands that start an
///        operand, and the parser's internal failure type (see parse.hpp).
#pragma once

#include <array>
#include <string_view>

namespace grpo::rewards::math {
namespace detail {

// Failure is signalled by throwing this empty type rather than by optional<> at every level: the
// grammar has ~20 mutually recursive productions and the happy path must stay cheap. parse()
// converts it to nullopt; it never crosses the public API.
/// Internal: the input is not a well-formed answer. Never escapes parse().
struct syntax_error {};

/// Function names recognised with or without a backslash (`\sin x`, `sin(x)`). "deg" and "det" are
/// listed only so that they are not mistaken for products of letters; they are not applied.
inline constexpr std::array<std::string_view, 27> function_names{
    "sin",  "cos",  "tan",  "cot", "sec",   "csc",  "arcsin", "arccos", "arctan",
    "sinh", "cosh", "tanh", "log", "ln",    "lg",   "exp",    "gcd",    "lcm",
    "max",  "min",  "sqrt", "abs", "floor", "ceil", "arccot", "deg",    "det"};

inline bool is_function_name(std::string_view w) noexcept {
  for (std::string_view f : function_names)
    if (w == f) return w != "deg" && w != "det";
  return false;
}

/// Greek letters and a few letter-like symbols: each is one variable named after the command.
inline constexpr std::array<std::string_view, 40> greek_letters{
    "alpha",   "beta",     "gamma", "delta", "epsilon", "varepsilon", "zeta",   "eta",
    "theta",   "vartheta", "iota",  "kappa", "lambda",  "mu",         "nu",     "xi",
    "rho",     "varrho",   "sigma", "tau",   "upsilon", "phi",        "varphi", "chi",
    "psi",     "omega",    "Gamma", "Delta", "Theta",   "Lambda",     "Xi",     "Sigma",
    "Upsilon", "Phi",      "Psi",   "Omega", "ell",     "aleph",      "nabla",  "hbar"};

inline bool is_greek(std::string_view w) noexcept {
  for (std::string_view g : greek_letters)
    if (w == g) return true;
  return false;
}

/// Commands that can start an operand (so that juxtaposition means multiplication).
inline bool command_starts_operand(std::string_view name) noexcept {
  static constexpr std::array<std::string_view, 25> starters{
      "frac",     "sqrt",      "binom",   "text",  "operatorname", "mathbb",   "pi",
      "infty",    "lfloor",    "lceil",   "lvert", "vert",         "begin",    "boxed",
      "overline", "hat",       "vec",     "bar",   "tilde",        "emptyset", "ldots",
      "langle",   "underline", "widehat", "choose"};
  for (std::string_view s : starters)
    if (name == s) return name != "choose";
  return is_function_name(name) || is_greek(name);
}

}  // namespace detail
}  // namespace grpo::rewards::math
