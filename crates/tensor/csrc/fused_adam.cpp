// One call of LibTorch's multi-tensor fused Adam (`at::_fused_adam_`, what
// `torch.optim.Adam(fused=True)` runs) over every parameter of a model: tch 0.24 does not expose
// tensor-list ops. The tensors are tch's `at::Tensor*` handles; `max_exp_avg_sqs` holds `n_max`
// entries: `n` with amsgrad, 0 without (the kernel insists).
#include <ATen/core/Tensor.h>
#include <ATen/ops/_fused_adam.h>

#include <vector>

#include "shim.h"

namespace {
std::vector<at::Tensor> list(at::Tensor* const* tensors, size_t n) {
    std::vector<at::Tensor> out;
    out.reserve(n);
    for (size_t i = 0; i < n; ++i) out.push_back(*tensors[i]);
    return out;
}
}  // namespace

extern "C" int brainpipe_fused_adam(at::Tensor* const* params, at::Tensor* const* grads,
                                    at::Tensor* const* exp_avgs, at::Tensor* const* exp_avg_sqs,
                                    at::Tensor* const* max_exp_avg_sqs, size_t n_max,
                                    at::Tensor* const* steps, size_t n, double lr, double beta1,
                                    double beta2, double weight_decay, double eps, bool amsgrad,
                                    char* error, size_t error_len) {
    return brainpipe::guarded(error, error_len, [&] {
        at::_fused_adam_(list(params, n), list(grads, n), list(exp_avgs, n),
                         list(exp_avg_sqs, n), list(max_exp_avg_sqs, n_max), list(steps, n), lr,
                         beta1, beta2, weight_decay, eps, amsgrad, /*maximize=*/false);
    });
}

extern "C" void brainpipe_clear_grads(at::Tensor* const* tensors, size_t n) {
    for (size_t i = 0; i < n; ++i) tensors[i]->mutable_grad() = at::Tensor();
}
