// SPDX-License-Identifier: Apache-2.0
// Body of the link test's two translation units (test_vocab_link.cpp, portable, and
// link_native.cpp, -march=native): defines GRPO_LINK_FN (a different name in each TU), which runs
// the public entry points on fixed inputs under the path `k` and reports the ABI namespace of the
// engine types this TU instantiated. No include guard: included once per TU.

link_result GRPO_LINK_FN(grpo::isa k) {
  grpo::scoped_isa_limit pin(k);
  link_result r;
  r.abi = GRPO_LINK_STR(GRPO_ISA_ABI);
  r.type_name = typeid(grpo::vocab::scratch).name();
  constexpr grpo::index_t N = 4, V = 2063;  // a tail for 8 and 16 lanes
  std::vector<grpo::bfloat16> x(static_cast<std::size_t>(N * V));
  for (grpo::index_t i = 0; i < N; ++i)
    for (grpo::index_t j = 0; j < V; ++j)
      x[static_cast<std::size_t>(i * V + j)] = grpo::bfloat16(
          j % 11 == 4 ? -1e30f : 4.0f * std::sin(0.37f * static_cast<float>(j * (i + 1))));
  std::vector<std::int64_t> ids = {5, 17, -100, V - 1};
  r.logp.resize(N);
  r.lse.resize(N);
  r.ent.resize(N);
  grpo::logprob_options opt;
  opt.temperature = 0.8f;
  r.path = static_cast<int>(
      grpo::selective_log_softmax(grpo::make_view(static_cast<const grpo::bfloat16*>(x.data()),
                                                  {N, V}),
                                  grpo::make_view(static_cast<const std::int64_t*>(ids.data()), {N}),
                                  grpo::make_view(r.logp.data(), {N}),
                                  grpo::make_view(r.lse.data(), {N}),
                                  grpo::make_view(r.ent.data(), {N}), opt)
          .path);
  std::vector<float> gl = {1.0f, -0.5f, 0.0f, 0.25f}, ge = {0.0f, 0.1f, 0.0f, -0.3f};
  r.grad.resize(x.size());
  grpo::selective_log_softmax_backward(
      grpo::make_view(static_cast<const grpo::bfloat16*>(x.data()), {N, V}),
      grpo::make_view(static_cast<const std::int64_t*>(ids.data()), {N}),
      grpo::make_view(static_cast<const float*>(gl.data()), {N}),
      grpo::make_view(static_cast<const float*>(ge.data()), {N}),
      grpo::make_view(r.grad.data(), {N, V}), opt);
  return r;
}
