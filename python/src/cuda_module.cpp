// SPDX-License-Identifier: Apache-2.0
/// @file cuda_module.cpp
/// @brief grpo._cuda (built with -DGRPO_PY_CUDA=ON): the CUDA routes of grpo.ops. Takes the same
///        (pointer, shape, strides, dtype) descriptors as grpo._C plus torch's current stream and
///        a workspace the Python side allocated, and calls the launchers of cuda_kernels.cu with
///        the GIL released. Loss options are built from the same dict specs as grpo._C
///        (options.hpp). A separate extension module, so that the nvcc translation unit and the
///        CPU kernels of grpo._C (xsimd paths) never share inline definitions.
#include "common.hpp"
#include "cuda_api.hpp"
#include "options.hpp"

#include <unordered_map>

namespace grpo::py {

namespace {

namespace pc = grpo::pycuda;

/// A descriptor as the launchers take it; None -> absent.
pc::darr dev_of(const opt_arr& a, const char* what) {
  pc::darr d;
  if (!a) return d;
  const auto& shape = std::get<1>(*a);
  const auto& strides = std::get<2>(*a);
  GRPO_EXPECTS(shape.size() <= 3 && shape.size() == strides.size(), shape_mismatch,
               std::string(what) + ": rank must be <= 3");
  d.data = std::get<0>(*a);
  d.rank = static_cast<int>(shape.size());
  for (std::size_t k = 0; k < shape.size(); ++k) {
    d.shape[k] = shape[k];
    d.stride[k] = strides[k];
  }
  d.dtype = std::get<3>(*a);
  return d;
}

pc::loss_inputs inputs_of(const opt_arr& old_logp, const opt_arr& ref_logp, const arr_t& adv,
                          const arr_t& mask, const opt_arr& sampler) {
  pc::loss_inputs in;
  in.old_logp = dev_of(old_logp, "old_logp");
  in.ref_logp = dev_of(ref_logp, "ref_logp");
  in.advantages = dev_of(adv, "advantages");
  in.mask = dev_of(mask, "mask");
  in.sampler_logp = dev_of(sampler, "sampler_logp");
  return in;
}

/// The loss_options of a spec, cached by the spec string (built once per distinct options).
const loss_options& options_of(const std::string& spec, const std::string& kind,
                               const std::string& name, const nb::dict& args,
                               const nb::dict& overrides) {
  static std::unordered_map<std::string, loss_options> cache;  // guarded by the GIL
  auto it = cache.find(spec);
  if (it == cache.end()) it = cache.emplace(spec, make_options(kind, name, args, overrides)).first;
  return it->second;
}

void compute_loss_cu(const std::string& spec, const std::string& kind, const std::string& name,
                     const nb::dict& args, const nb::dict& overrides, const arr_t& logp,
                     const opt_arr& entropy, const opt_arr& old_logp, const opt_arr& ref_logp,
                     const arr_t& adv, const arr_t& mask, const opt_arr& sampler, const arr_t& grad,
                     const arr_t& grad_h, std::uintptr_t scalars, std::uintptr_t workspace,
                     std::uintptr_t stream) {
  const loss_options& o = options_of(spec, kind, name, args, overrides);
  const pc::loss_inputs in = inputs_of(old_logp, ref_logp, adv, mask, sampler);
  const pc::darr lp = dev_of(logp, "logp"), h = dev_of(entropy, "entropy");
  const pc::darr g = dev_of(grad, "grad_logp"), gh = dev_of(grad_h, "grad_entropy");
  nb::gil_scoped_release nogil;
  pc::compute_loss(o, lp, h, in, g, gh, scalars, workspace, stream);
}

void fused_cu(const std::string& spec, const std::string& kind, const std::string& name,
              const nb::dict& args, const nb::dict& overrides, const arr_t& logits,
              const arr_t& ids, const opt_arr& old_logp, const opt_arr& ref_logp, const arr_t& adv,
              const arr_t& mask, const opt_arr& sampler, const arr_t& grad, const arr_t& logp,
              const arr_t& entropy, std::uintptr_t scalars, double temperature,
              std::uintptr_t workspace, std::uintptr_t stream) {
  const loss_options& o = options_of(spec, kind, name, args, overrides);
  const pc::loss_inputs in = inputs_of(old_logp, ref_logp, adv, mask, sampler);
  const pc::darr x = dev_of(logits, "logits"), y = dev_of(ids, "ids"), g = dev_of(grad, "grad");
  const pc::darr lp = dev_of(logp, "logp"), h = dev_of(entropy, "entropy");
  nb::gil_scoped_release nogil;
  pc::fused_grpo_step(o, x, y, in, g, lp, h, scalars, temperature, workspace, stream);
}

void logprob_fwd_cu(const arr_t& logits, const arr_t& ids, const arr_t& logp, const arr_t& entropy,
                    double temperature, long long ignore_index, std::uintptr_t workspace,
                    std::uintptr_t stream) {
  const pc::darr x = dev_of(logits, "logits"), y = dev_of(ids, "ids");
  const pc::darr lp = dev_of(logp, "logp"), h = dev_of(entropy, "entropy");
  nb::gil_scoped_release nogil;
  pc::logprob_forward(x, y, lp, h, temperature, ignore_index, workspace, stream);
}

void logprob_bwd_cu(const arr_t& logits, const arr_t& ids, const arr_t& g_logp, const arr_t& g_ent,
                    const arr_t& grad, double temperature, long long ignore_index,
                    std::uintptr_t workspace, std::uintptr_t stream) {
  const pc::darr x = dev_of(logits, "logits"), y = dev_of(ids, "ids");
  const pc::darr gl = dev_of(g_logp, "grad_logp"), gh = dev_of(g_ent, "grad_entropy");
  const pc::darr g = dev_of(grad, "grad");
  nb::gil_scoped_release nogil;
  pc::logprob_backward(x, y, gl, gh, g, temperature, ignore_index, workspace, stream);
}

}  // namespace

}  // namespace grpo::py

NB_MODULE(_cuda, m) {
  using namespace grpo::py;
  m.doc() = "grpo CUDA routes (internal: grpo.ops calls them for CUDA tensors)";
  nb::set_leak_warnings(false);
  // grpo::error thrown here becomes grpo._C.GrpoError, the one exception type of the package.
  nb::object err = nb::module_::import_("grpo._C").attr("GrpoError");
  nb::register_exception_translator(
      [](const std::exception_ptr& p, void* payload) {
        try {
          std::rethrow_exception(p);
        } catch (const grpo::error& e) {
          PyErr_SetString(static_cast<PyObject*>(payload), e.what());
        }
      },
      err.release().ptr());
  m.def("logprob_workspace_bytes", &grpo::pycuda::logprob_workspace_bytes);
  m.def("loss_workspace_bytes", &grpo::pycuda::loss_workspace_bytes);
  m.def("logprob_forward", &logprob_fwd_cu);
  m.def("logprob_backward", &logprob_bwd_cu);
  m.def("compute_loss", &compute_loss_cu);
  m.def("fused_grpo_step", &fused_cu);
}
