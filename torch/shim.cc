// The only C++ in maddr: it forwards single ATen ops and converts every C++
// exception into an error string. No model logic belongs here.
#include "shim.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/InferenceMode.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/version.h>

#include <dlfcn.h>
#include <malloc.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

struct mt_tensor_s {
  at::Tensor t;
};
struct mt_generator_s {
  at::Generator g;
};
struct mt_conv_relu_s {
  c10::IValue context;  // the operator's own ConvOpContext object
};
struct mt_inference_mode_s {
  c10::InferenceMode guard;
};

namespace {

char *dup_string(const std::string &s) {
  char *p = static_cast<char *>(malloc(s.size() + 1));
  if (p != nullptr) memcpy(p, s.c_str(), s.size() + 1);
  return p;
}

// c10::Error's what() carries a C++ backtrace that means nothing to a Go user.
#define MT_TRY(...)                                       \
  try {                                                   \
    sync_threads();                                       \
    __VA_ARGS__;                                               \
    return nullptr;                                       \
  } catch (const c10::Error &e) {                         \
    return dup_string(e.what_without_backtrace());        \
  } catch (const std::exception &e) {                     \
    return dup_string(e.what());                          \
  } catch (...) {                                         \
    return dup_string("unknown C++ exception in libtorch"); \
  }

// The requested intra-op thread count. OpenMP keeps the count per OS
// thread and Go runs cgo calls on whichever thread holds the goroutine, so
// every op first makes its thread agree with the request (a cheap read when
// it already does).
std::atomic<int> wanted_threads{0};

inline void sync_threads() {
  int w = wanted_threads.load(std::memory_order_relaxed);
  if (w > 0 && at::get_num_threads() != w) at::set_num_threads(w);
}

mt_tensor wrap(at::Tensor t) { return new mt_tensor_s{std::move(t)}; }

at::ScalarType scalar_type(int dtype) {
  switch (dtype) {
    case MT_FLOAT32: return at::kFloat;
    case MT_FLOAT64: return at::kDouble;
    case MT_INT64: return at::kLong;
    case MT_BOOL: return at::kBool;
    case MT_UINT8: return at::kByte;
    case MT_INT32: return at::kInt;
    case MT_FLOAT16: return at::kHalf;
    case MT_BFLOAT16: return at::kBFloat16;
  }
  throw std::invalid_argument("unsupported dtype code " + std::to_string(dtype));
}

int dtype_code(at::ScalarType s) {
  switch (s) {
    case at::kFloat: return MT_FLOAT32;
    case at::kDouble: return MT_FLOAT64;
    case at::kLong: return MT_INT64;
    case at::kBool: return MT_BOOL;
    case at::kByte: return MT_UINT8;
    case at::kInt: return MT_INT32;
    case at::kHalf: return MT_FLOAT16;
    case at::kBFloat16: return MT_BFLOAT16;
    default: return -1;
  }
}

at::Device device_of(int device, int index) {
  if (device == 0) return at::Device(at::kCPU);
  return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
}

c10::optional<at::Tensor> opt(mt_tensor t) {
  if (t == nullptr) return c10::nullopt;
  return t->t;
}

c10::optional<at::Generator> gen(mt_generator g) {
  if (g == nullptr) return c10::nullopt;
  return g->g;
}

at::IntArrayRef ints(const int64_t *p, int n) { return at::IntArrayRef(p, static_cast<size_t>(n)); }

at::MemoryFormat memory_format(int f) {
  switch (f) {
    case MT_CONTIGUOUS_FORMAT: return at::MemoryFormat::Contiguous;
    case MT_CHANNELS_LAST: return at::MemoryFormat::ChannelsLast;
  }
  throw std::invalid_argument("unknown memory format code " + std::to_string(f));
}

}  // namespace

extern "C" {

void mt_free_string(char *s) { free(s); }
void mt_free(mt_tensor t) { delete t; }

const char *mt_version(void) { return TORCH_VERSION; }
char *mt_config(void) {
  try {
    return dup_string(at::show_config());
  } catch (...) {
    return dup_string("");
  }
}
int mt_cuda_available(void) { return at::hasCUDA() ? 1 : 0; }
int mt_cuda_device_count(void) { return at::hasCUDA() ? static_cast<int>(at::getNumGPUs()) : 0; }
void mt_set_num_threads(int n) {
  wanted_threads.store(n, std::memory_order_relaxed);
  at::set_num_threads(n);
}
int mt_get_num_threads(void) {
  sync_threads();
  return at::get_num_threads();
}
void mt_set_grad_enabled(int on) { at::GradMode::set_enabled(on != 0); }
int mt_is_grad_enabled(void) { return at::GradMode::is_enabled() ? 1 : 0; }

mt_err mt_manual_seed(uint64_t seed) {
  MT_TRY({
    auto g = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(g.mutex());
    g.set_current_seed(seed);
  })
}

mt_err mt_generator_new(uint64_t seed, mt_generator *out) {
  MT_TRY(*out = new mt_generator_s{at::detail::createCPUGenerator(seed)})
}
void mt_generator_free(mt_generator g) { delete g; }
mt_err mt_generator_get_state(mt_generator g, mt_tensor *out) {
  MT_TRY({
    std::lock_guard<std::mutex> lock(g->g.mutex());
    *out = wrap(g->g.get_state());
  })
}
mt_err mt_generator_set_state(mt_generator g, mt_tensor state) {
  MT_TRY({
    std::lock_guard<std::mutex> lock(g->g.mutex());
    g->g.set_state(state->t);
  })
}

mt_err mt_from_data(const void *data, int dtype, const int64_t *shape, int ndim, int device, int device_index, mt_tensor *out) {
  MT_TRY({
    auto t = at::empty(ints(shape, ndim), at::TensorOptions().dtype(scalar_type(dtype)));
    if (t.numel() > 0) memcpy(t.data_ptr(), data, t.numel() * t.element_size());
    if (device != 0) t = t.to(device_of(device, device_index));
    *out = wrap(t);
  })
}

mt_err mt_copy_to(mt_tensor t, void *dst, int64_t nbytes, int dtype) {
  MT_TRY({
    auto c = t->t.detach().to(at::kCPU, scalar_type(dtype)).contiguous();
    int64_t need = c.numel() * static_cast<int64_t>(c.element_size());
    if (need != nbytes) throw std::invalid_argument("copy buffer holds " + std::to_string(nbytes) + " bytes, tensor needs " + std::to_string(need));
    if (need > 0) memcpy(dst, c.data_ptr(), need);
  })
}

mt_err mt_full(const int64_t *shape, int ndim, double value, int dtype, int device, int device_index, mt_tensor *out) {
  MT_TRY(*out = wrap(at::full(ints(shape, ndim), value, at::TensorOptions().dtype(scalar_type(dtype)).device(device_of(device, device_index)))))
}
mt_err mt_randn(const int64_t *shape, int ndim, mt_generator g, mt_tensor *out) {
  MT_TRY(*out = wrap(at::randn(ints(shape, ndim), gen(g), at::TensorOptions().dtype(at::kFloat))))
}
mt_err mt_rand(const int64_t *shape, int ndim, mt_generator g, mt_tensor *out) {
  MT_TRY(*out = wrap(at::rand(ints(shape, ndim), gen(g), at::TensorOptions().dtype(at::kFloat))))
}
mt_err mt_bernoulli(mt_tensor probs, mt_generator g, mt_tensor *out) { MT_TRY(*out = wrap(at::bernoulli(probs->t, gen(g)))) }
mt_err mt_randperm(int64_t n, mt_generator g, mt_tensor *out) {
  MT_TRY(*out = wrap(at::randperm(n, gen(g), at::TensorOptions().dtype(at::kLong))))
}
mt_err mt_arange(int64_t n, int dtype, mt_tensor *out) {
  MT_TRY(*out = wrap(at::arange(n, at::TensorOptions().dtype(scalar_type(dtype)))))
}
mt_err mt_normal_(mt_tensor t, double mean, double std, mt_generator g) {
  MT_TRY({
    at::NoGradGuard no_grad;
    t->t.normal_(mean, std, gen(g));
  })
}
mt_err mt_uniform_(mt_tensor t, double lo, double hi, mt_generator g) {
  MT_TRY({
    at::NoGradGuard no_grad;
    t->t.uniform_(lo, hi, gen(g));
  })
}

int mt_ndim(mt_tensor t) { return static_cast<int>(t->t.dim()); }
void mt_shape(mt_tensor t, int64_t *out) {
  for (int64_t i = 0; i < t->t.dim(); i++) out[i] = t->t.size(i);
}
int mt_dtype(mt_tensor t) { return dtype_code(t->t.scalar_type()); }
int mt_device_type(mt_tensor t) { return t->t.device().is_cpu() ? 0 : 1; }
int mt_device_index(mt_tensor t) { return t->t.device().has_index() ? t->t.device().index() : 0; }
int mt_requires_grad(mt_tensor t) { return t->t.requires_grad() ? 1 : 0; }
mt_err mt_item(mt_tensor t, double *out) { MT_TRY(*out = t->t.item<double>()) }

mt_err mt_to(mt_tensor t, int dtype, int device, int device_index, mt_tensor *out) {
  MT_TRY(*out = wrap(t->t.to(device_of(device, device_index), scalar_type(dtype))))
}
mt_err mt_clone(mt_tensor t, mt_tensor *out) { MT_TRY(*out = wrap(t->t.clone())) }
mt_err mt_contiguous(mt_tensor t, mt_tensor *out) { MT_TRY(*out = wrap(t->t.contiguous())) }
mt_err mt_detach(mt_tensor t, mt_tensor *out) { MT_TRY(*out = wrap(t->t.detach())) }
mt_err mt_alias(mt_tensor t, mt_tensor *out) { MT_TRY(*out = wrap(t->t)) }

mt_err mt_contiguous_as(mt_tensor t, int format, mt_tensor *out) { MT_TRY(*out = wrap(t->t.contiguous(memory_format(format)))) }
int mt_is_contiguous_as(mt_tensor t, int format) {
  try {
    return t->t.is_contiguous(memory_format(format)) ? 1 : 0;
  } catch (...) {
    return 0;
  }
}
mt_err mt_relayout_(mt_tensor t, int format) {
  MT_TRY({
    if (t->t.requires_grad()) throw std::invalid_argument("only a tensor without gradient can change its layout in place");
    at::NoGradGuard no_grad;
    t->t = t->t.contiguous(memory_format(format));
  })
}

// Every OS thread that calls into libtorch would otherwise get its own malloc
// arena (Go moves goroutines between threads), and freed activations then sit
// in many arenas at once: one arena halved a DPA step's RSS and made it faster.
int mt_limit_malloc_arenas(int n) { return mallopt(M_ARENA_MAX, n) == 1 ? 1 : 0; }

// Fixed thresholds instead of glibc's adaptive ones (see package torch,
// "Memory of libtorch"): a Scope frees a whole step's activations at once, so
// with the defaults the top of the heap went back to the kernel after every
// step and came back as fresh zero pages, and buffers above 32 MiB were mapped
// and unmapped on every use.
int mt_set_malloc_mmap_threshold(long bytes) { return mallopt(M_MMAP_THRESHOLD, static_cast<int>(bytes)) == 1 ? 1 : 0; }
int mt_set_malloc_trim_threshold(long bytes) { return mallopt(M_TRIM_THRESHOLD, static_cast<int>(bytes)) == 1 ? 1 : 0; }

// OpenBLAS's own thread pool (see package torch, Threads). Found by symbol so
// that a libtorch on another BLAS (MKL, BLIS, reference) links and runs
// unchanged; both return 0 when the BLAS is not OpenBLAS.
int mt_set_blas_threads(int n) {
  using setter = void (*)(int);
  auto set = reinterpret_cast<setter>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (set == nullptr) return 0;
  set(n);
  return 1;
}
int mt_get_blas_threads(void) {
  using getter = int (*)(void);
  auto get = reinterpret_cast<getter>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  return get == nullptr ? 0 : get();
}

mt_err mt_binary(int op, mt_tensor a, mt_tensor b, mt_tensor *out) {
  MT_TRY({
    const at::Tensor &x = a->t, &y = b->t;
    at::Tensor r;
    switch (op) {
      case MT_ADD: r = at::add(x, y); break;
      case MT_SUB: r = at::sub(x, y); break;
      case MT_MUL: r = at::mul(x, y); break;
      case MT_DIV: r = at::div(x, y); break;
      case MT_POW: r = at::pow(x, y); break;
      case MT_MAXIMUM: r = at::maximum(x, y); break;
      case MT_MINIMUM: r = at::minimum(x, y); break;
      case MT_EQ: r = at::eq(x, y); break;
      case MT_NE: r = at::ne(x, y); break;
      case MT_GT: r = at::gt(x, y); break;
      case MT_GE: r = at::ge(x, y); break;
      case MT_LT: r = at::lt(x, y); break;
      case MT_LE: r = at::le(x, y); break;
      case MT_RSUB: r = at::sub(y, x); break;
      default: throw std::invalid_argument("unknown binary op");
    }
    *out = wrap(r);
  })
}

mt_err mt_binary_scalar(int op, mt_tensor a, double s, mt_tensor *out) {
  MT_TRY({
    const at::Tensor &x = a->t;
    at::Tensor r;
    switch (op) {
      case MT_ADD: r = at::add(x, s); break;
      case MT_SUB: r = at::sub(x, s); break;
      case MT_MUL: r = at::mul(x, s); break;
      case MT_DIV: r = at::div(x, s); break;
      case MT_POW: r = at::pow(x, s); break;
      case MT_MAXIMUM: r = at::clamp_min(x, s); break;
      case MT_MINIMUM: r = at::clamp_max(x, s); break;
      case MT_EQ: r = at::eq(x, s); break;
      case MT_NE: r = at::ne(x, s); break;
      case MT_GT: r = at::gt(x, s); break;
      case MT_GE: r = at::ge(x, s); break;
      case MT_LT: r = at::lt(x, s); break;
      case MT_LE: r = at::le(x, s); break;
      case MT_RSUB: r = at::rsub(x, s); break;
      default: throw std::invalid_argument("unknown scalar op");
    }
    *out = wrap(r);
  })
}

mt_err mt_unary(int op, mt_tensor a, mt_tensor *out) {
  MT_TRY({
    const at::Tensor &x = a->t;
    at::Tensor r;
    switch (op) {
      case MT_NEG: r = at::neg(x); break;
      case MT_ABS: r = at::abs(x); break;
      case MT_SQRT: r = at::sqrt(x); break;
      case MT_RSQRT: r = at::rsqrt(x); break;
      case MT_EXP: r = at::exp(x); break;
      case MT_LOG: r = at::log(x); break;
      case MT_LOG1P: r = at::log1p(x); break;
      case MT_RELU: r = at::relu(x); break;
      case MT_TANH: r = at::tanh(x); break;
      case MT_SIGMOID: r = at::sigmoid(x); break;
      case MT_SIGN: r = at::sign(x); break;
      case MT_SQUARE: r = at::square(x); break;
      case MT_FLOOR: r = at::floor(x); break;
      case MT_ROUND: r = at::round(x); break;
      case MT_ISNAN: r = at::isnan(x); break;
      case MT_ISFINITE: r = at::isfinite(x); break;
      default: throw std::invalid_argument("unknown unary op");
    }
    *out = wrap(r);
  })
}

mt_err mt_leaky_relu(mt_tensor a, double slope, mt_tensor *out) { MT_TRY(*out = wrap(at::leaky_relu(a->t, slope))) }
mt_err mt_clamp(mt_tensor a, int has_min, double min, int has_max, double max, mt_tensor *out) {
  MT_TRY({
    c10::optional<at::Scalar> lo, hi;
    if (has_min) lo = min;
    if (has_max) hi = max;
    *out = wrap(at::clamp(a->t, lo, hi));
  })
}
mt_err mt_where(mt_tensor cond, mt_tensor a, mt_tensor b, mt_tensor *out) { MT_TRY(*out = wrap(at::where(cond->t, a->t, b->t))) }
mt_err mt_softmax(mt_tensor a, int64_t dim, int log, mt_tensor *out) {
  MT_TRY(*out = wrap(log ? at::log_softmax(a->t, dim) : at::softmax(a->t, dim)))
}

mt_err mt_reduce(int op, mt_tensor a, const int64_t *dims, int ndims, int keepdim, int unbiased, mt_tensor *out) {
  MT_TRY({
    const at::Tensor &x = a->t;
    bool all = ndims == 0;
    std::vector<int64_t> every(x.dim());
    for (int64_t i = 0; i < x.dim(); i++) every[i] = i;
    at::IntArrayRef d = all ? at::IntArrayRef(every) : ints(dims, ndims);
    bool k = keepdim != 0;
    at::Tensor r;
    switch (op) {
      case MT_SUM: r = all && !k ? at::sum(x) : at::sum(x, d, k); break;
      case MT_MEAN: r = all && !k ? at::mean(x) : at::mean(x, d, k); break;
      case MT_AMAX: r = at::amax(x, d, k); break;
      case MT_AMIN: r = at::amin(x, d, k); break;
      case MT_ARGMAX:
      case MT_ARGMIN: {
        if (ndims > 1) throw std::invalid_argument("argmax/argmin take at most one dim");
        c10::optional<int64_t> dim;
        if (!all) dim = dims[0];
        r = op == MT_ARGMAX ? at::argmax(x, dim, k) : at::argmin(x, dim, k);
        break;
      }
      case MT_VAR: r = all && !k ? at::var(x, unbiased != 0) : at::var(x, d, unbiased != 0, k); break;
      case MT_STD: r = all && !k ? at::std(x, unbiased != 0) : at::std(x, d, unbiased != 0, k); break;
      case MT_NORM: r = all && !k ? at::norm(x) : at::norm(x, 2, d, k); break;
      default: throw std::invalid_argument("unknown reduction");
    }
    *out = wrap(r);
  })
}

mt_err mt_reshape(mt_tensor a, const int64_t *shape, int ndim, mt_tensor *out) { MT_TRY(*out = wrap(at::reshape(a->t, ints(shape, ndim)))) }
mt_err mt_permute(mt_tensor a, const int64_t *dims, int ndim, mt_tensor *out) { MT_TRY(*out = wrap(a->t.permute(ints(dims, ndim)))) }
mt_err mt_transpose(mt_tensor a, int64_t d0, int64_t d1, mt_tensor *out) { MT_TRY(*out = wrap(at::transpose(a->t, d0, d1))) }
mt_err mt_cat(const mt_tensor *ts, int n, int64_t dim, int stack, mt_tensor *out) {
  MT_TRY({
    std::vector<at::Tensor> v;
    v.reserve(n);
    for (int i = 0; i < n; i++) v.push_back(ts[i]->t);
    *out = wrap(stack ? at::stack(v, dim) : at::cat(v, dim));
  })
}
mt_err mt_narrow(mt_tensor a, int64_t dim, int64_t start, int64_t length, mt_tensor *out) { MT_TRY(*out = wrap(a->t.narrow(dim, start, length))) }
mt_err mt_select(mt_tensor a, int64_t dim, int64_t index, mt_tensor *out) { MT_TRY(*out = wrap(a->t.select(dim, index))) }
mt_err mt_index_select(mt_tensor a, int64_t dim, mt_tensor index, mt_tensor *out) { MT_TRY(*out = wrap(at::index_select(a->t, dim, index->t))) }
mt_err mt_gather(mt_tensor a, int64_t dim, mt_tensor index, mt_tensor *out) { MT_TRY(*out = wrap(at::gather(a->t, dim, index->t))) }
mt_err mt_expand(mt_tensor a, const int64_t *shape, int ndim, mt_tensor *out) { MT_TRY(*out = wrap(a->t.expand(ints(shape, ndim)))) }
mt_err mt_repeat(mt_tensor a, const int64_t *reps, int ndim, mt_tensor *out) { MT_TRY(*out = wrap(a->t.repeat(ints(reps, ndim)))) }
mt_err mt_unsqueeze(mt_tensor a, int64_t dim, mt_tensor *out) { MT_TRY(*out = wrap(a->t.unsqueeze(dim))) }
mt_err mt_squeeze(mt_tensor a, int64_t dim, mt_tensor *out) { MT_TRY(*out = wrap(a->t.squeeze(dim))) }
mt_err mt_flatten(mt_tensor a, int64_t start, int64_t end, mt_tensor *out) { MT_TRY(*out = wrap(a->t.flatten(start, end))) }
mt_err mt_one_hot(mt_tensor a, int64_t classes, mt_tensor *out) { MT_TRY(*out = wrap(at::one_hot(a->t, classes))) }

mt_err mt_matmul(mt_tensor a, mt_tensor b, mt_tensor *out) { MT_TRY(*out = wrap(at::matmul(a->t, b->t))) }
mt_err mt_linear(mt_tensor x, mt_tensor w, mt_tensor b, mt_tensor *out) { MT_TRY(*out = wrap(at::linear(x->t, w->t, opt(b)))) }
mt_err mt_conv2d(mt_tensor x, mt_tensor w, mt_tensor b, const int64_t *stride, const int64_t *padding, const int64_t *dilation, int64_t groups, mt_tensor *out) {
  MT_TRY(*out = wrap(at::conv2d(x->t, w->t, opt(b), ints(stride, 2), ints(padding, 2), ints(dilation, 2), groups)))
}
mt_err mt_conv_transpose2d(mt_tensor x, mt_tensor w, mt_tensor b, const int64_t *stride, const int64_t *padding, const int64_t *output_padding, int64_t groups, const int64_t *dilation, mt_tensor *out) {
  MT_TRY(*out = wrap(at::conv_transpose2d(x->t, w->t, opt(b), ints(stride, 2), ints(padding, 2), ints(output_padding, 2), groups, ints(dilation, 2))))
}
// The gradient of conv2d with respect to an input of shape input_shape: the
// op a transposed convolution is defined as. The input itself is not read,
// so an uninitialised tensor of that shape stands for it.
mt_err mt_conv2d_input_grad(mt_tensor grad, mt_tensor w, const int64_t *input_shape, const int64_t *stride, const int64_t *padding, const int64_t *dilation, int64_t groups, mt_tensor *out) {
  MT_TRY({
    at::Tensor input = at::empty(ints(input_shape, 4), grad->t.options());
    auto grads = at::convolution_backward(grad->t, input, w->t, c10::nullopt, ints(stride, 2), ints(padding, 2), ints(dilation, 2),
                                          false, std::vector<int64_t>{0, 0}, groups, {true, false, false});
    *out = wrap(std::get<0>(grads));
  })
}
mt_err mt_batch_norm(mt_tensor x, mt_tensor w, mt_tensor b, mt_tensor running_mean, mt_tensor running_var, int training, double momentum, double eps, mt_tensor *out) {
  MT_TRY(*out = wrap(at::batch_norm(x->t, opt(w), opt(b), opt(running_mean), opt(running_var), training != 0, momentum, eps, true)))
}
mt_err mt_layer_norm(mt_tensor x, const int64_t *shape, int ndim, mt_tensor w, mt_tensor b, double eps, mt_tensor *out) {
  MT_TRY(*out = wrap(at::layer_norm(x->t, ints(shape, ndim), opt(w), opt(b), eps, true)))
}
mt_err mt_avg_pool2d(mt_tensor x, const int64_t *kernel, const int64_t *stride, const int64_t *padding, mt_tensor *out) {
  MT_TRY(*out = wrap(at::avg_pool2d(x->t, ints(kernel, 2), ints(stride, 2), ints(padding, 2))))
}
mt_err mt_max_pool2d(mt_tensor x, const int64_t *kernel, const int64_t *stride, const int64_t *padding, const int64_t *dilation, mt_tensor *out) {
  MT_TRY(*out = wrap(at::max_pool2d(x->t, ints(kernel, 2), ints(stride, 2), ints(padding, 2), ints(dilation, 2))))
}
mt_err mt_upsample_nearest2d(mt_tensor x, int64_t h, int64_t w, mt_tensor *out) {
  MT_TRY({
    int64_t size[2] = {h, w};
    *out = wrap(at::upsample_nearest2d(x->t, ints(size, 2)));
  })
}
mt_err mt_upsample_bilinear2d(mt_tensor x, int64_t h, int64_t w, int align_corners, mt_tensor *out) {
  MT_TRY({
    int64_t size[2] = {h, w};
    *out = wrap(at::upsample_bilinear2d(x->t, ints(size, 2), align_corners != 0));
  })
}
mt_err mt_dropout(mt_tensor x, double p, int train, mt_tensor *out) { MT_TRY(*out = wrap(at::dropout(x->t, p, train != 0))) }
mt_err mt_binary_cross_entropy(mt_tensor x, mt_tensor target, int reduction, mt_tensor *out) {
  MT_TRY(*out = wrap(at::binary_cross_entropy(x->t, target->t, {}, reduction)))
}

mt_err mt_set_requires_grad(mt_tensor t, int on) { MT_TRY(t->t.set_requires_grad(on != 0)) }
mt_err mt_grad(mt_tensor t, mt_tensor *out) {
  MT_TRY({
    const at::Tensor &g = t->t.grad();
    *out = g.defined() ? wrap(g) : nullptr;
  })
}
mt_err mt_zero_grad(mt_tensor t, int set_to_none) {
  MT_TRY({
    at::Tensor &g = t->t.mutable_grad();
    if (!g.defined()) return nullptr;
    if (set_to_none) {
      g = at::Tensor();
    } else {
      // A gradient produced with create_graph carries history; cut it before zeroing in place.
      if (g.grad_fn()) g = g.detach();
      g.zero_();
    }
  })
}
mt_err mt_backward(mt_tensor t, mt_tensor grad, int retain_graph, int create_graph) {
  MT_TRY(t->t.backward(grad ? grad->t : at::Tensor(), c10::optional<bool>(retain_graph != 0), create_graph != 0))
}
mt_err mt_autograd_grad(const mt_tensor *outputs, int nout, const mt_tensor *grad_outputs, const mt_tensor *inputs, int nin,
                        int retain_graph, int create_graph, int allow_unused, mt_tensor *out) {
  MT_TRY({
    std::vector<at::Tensor> outs, gouts, ins;
    for (int i = 0; i < nout; i++) {
      outs.push_back(outputs[i]->t);
      gouts.push_back(grad_outputs && grad_outputs[i] ? grad_outputs[i]->t : at::Tensor());
    }
    for (int i = 0; i < nin; i++) ins.push_back(inputs[i]->t);
    auto res = torch::autograd::grad(outs, ins, gouts, c10::optional<bool>(retain_graph != 0), create_graph != 0, allow_unused != 0);
    for (int i = 0; i < nin; i++) out[i] = res[i].defined() ? wrap(res[i]) : nullptr;
  })
}

mt_err mt_inplace(int op, mt_tensor a, mt_tensor b, mt_tensor c, double alpha) {
  MT_TRY({
    at::NoGradGuard no_grad;
    at::Tensor &x = a->t;
    switch (op) {
      case MT_ADD_: x.add_(b->t, alpha); break;
      case MT_MUL_: x.mul_(b->t); break;
      case MT_COPY_: x.copy_(b->t); break;
      case MT_ADDCMUL_: x.addcmul_(b->t, c->t, alpha); break;
      case MT_ADDCDIV_: x.addcdiv_(b->t, c->t, alpha); break;
      default: throw std::invalid_argument("unknown in-place op");
    }
  })
}
mt_err mt_inplace_scalar(int op, mt_tensor a, double s) {
  MT_TRY({
    at::NoGradGuard no_grad;
    switch (op) {
      // An integral tensor (a step counter) must get an integral scalar or ATen refuses the cast.
      case MT_ADD_: a->t.add_(a->t.is_floating_point() ? at::Scalar(s) : at::Scalar(static_cast<int64_t>(s))); break;
      case MT_MUL_: a->t.mul_(a->t.is_floating_point() ? at::Scalar(s) : at::Scalar(static_cast<int64_t>(s))); break;
      default: throw std::invalid_argument("unknown in-place scalar op");
    }
  })
}
mt_err mt_fill_(mt_tensor a, double v) {
  MT_TRY({
    at::NoGradGuard no_grad;
    a->t.fill_(v);
  })
}

mt_err mt_inference_mode_enter(mt_inference_mode *out) { MT_TRY(*out = new mt_inference_mode_s{}) }
void mt_inference_mode_exit(mt_inference_mode m) { delete m; }
mt_err mt_set_autocast_cpu(int on, int dtype) {
  MT_TRY({
    if (on) at::autocast::set_autocast_cpu_dtype(scalar_type(dtype));
    at::autocast::set_cpu_enabled(on != 0);
  })
}
int mt_autocast_cpu_enabled(void) { return at::autocast::is_cpu_enabled() ? 1 : 0; }
int mt_autocast_cpu_dtype(void) { return dtype_code(at::autocast::get_autocast_cpu_dtype()); }

// The prepacked convolution is a registered operator with a custom-class
// context, so it is called through the dispatcher, boxed: the context stays
// an IValue and no private ATen header is needed.
mt_err mt_conv_relu_prepack(mt_tensor w, mt_tensor b, const int64_t *stride, const int64_t *padding, const int64_t *dilation, int64_t groups, const int64_t *input_size, mt_conv_relu *out) {
  MT_TRY({
    static const c10::OperatorHandle op = c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn_prepacked::conv2d_prepack", "");
    std::vector<c10::IValue> stack;
    stack.emplace_back(w->t);
    stack.emplace_back(opt(b));
    stack.emplace_back(std::vector<int64_t>(stride, stride + 2));
    stack.emplace_back(std::vector<int64_t>(padding, padding + 2));
    stack.emplace_back(std::vector<int64_t>(dilation, dilation + 2));
    stack.emplace_back(groups);
    stack.emplace_back(std::vector<int64_t>(input_size, input_size + 4));
    stack.emplace_back(std::string("relu"));
    op.callBoxed(&stack);
    *out = new mt_conv_relu_s{std::move(stack.at(0))};
  })
}
mt_err mt_conv_relu_run(mt_tensor x, mt_conv_relu c, mt_tensor *out) {
  MT_TRY({
    static const c10::OperatorHandle op = c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn_prepacked::conv2d_run", "");
    std::vector<c10::IValue> stack{c10::IValue(x->t), c->context};
    op.callBoxed(&stack);
    *out = wrap(stack.at(0).toTensor());
  })
}
void mt_conv_relu_free(mt_conv_relu c) { delete c; }
void mt_autocast_clear_cache(void) { at::autocast::clear_cache(); }

}  // extern "C"
