/*
 * C surface of the libtorch binding. Every function that can fail returns a
 * heap-allocated error message (free with mt_free_string) or NULL on success,
 * so no C++ exception ever crosses into Go. Tensors are opaque handles owned
 * by the Go side and released with mt_free.
 */
#ifndef MADDR_TORCH_SHIM_H
#define MADDR_TORCH_SHIM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mt_tensor_s *mt_tensor;
typedef struct mt_generator_s *mt_generator;
typedef char *mt_err;

enum mt_dtype { MT_FLOAT32 = 0, MT_FLOAT64 = 1, MT_INT64 = 2, MT_BOOL = 3, MT_UINT8 = 4, MT_INT32 = 5, MT_FLOAT16 = 6, MT_BFLOAT16 = 7 };

void mt_free_string(char *s);
void mt_free(mt_tensor t);

/* library and threads */
const char *mt_version(void);
char *mt_config(void);
int mt_cuda_available(void);
int mt_cuda_device_count(void);
void mt_set_num_threads(int n);
int mt_get_num_threads(void);
void mt_set_grad_enabled(int on);
int mt_is_grad_enabled(void);
mt_err mt_manual_seed(uint64_t seed);

/* thread-local modes of the calling OS thread */
typedef struct mt_inference_mode_s *mt_inference_mode;
mt_err mt_inference_mode_enter(mt_inference_mode *out); /* as c10::InferenceMode: no autograd, no version counters */
void mt_inference_mode_exit(mt_inference_mode m);      /* exits must nest inside enters on the same thread */
mt_err mt_set_autocast_cpu(int on, int dtype);         /* CPU autocast (torch.autocast("cpu")) to dtype */
int mt_autocast_cpu_enabled(void);
int mt_autocast_cpu_dtype(void);                       /* the dtype code autocast computes in */
void mt_autocast_clear_cache(void);

/* oneDNN convolution with a fused ReLU (mkldnn_prepacked::conv2d_prepack with
 * the "relu" post-op, then conv2d_run): weights reordered once, output
 * written once. No autograd. */
typedef struct mt_conv_relu_s *mt_conv_relu;
mt_err mt_conv_relu_prepack(mt_tensor w, mt_tensor b, const int64_t *stride, const int64_t *padding, const int64_t *dilation, int64_t groups, const int64_t *input_size, mt_conv_relu *out);
mt_err mt_conv_relu_run(mt_tensor x, mt_conv_relu c, mt_tensor *out);
void mt_conv_relu_free(mt_conv_relu c);

/* generators */
mt_err mt_generator_new(uint64_t seed, mt_generator *out);
void mt_generator_free(mt_generator g);
mt_err mt_generator_get_state(mt_generator g, mt_tensor *out);
mt_err mt_generator_set_state(mt_generator g, mt_tensor state);

/* creation and data movement */
mt_err mt_from_data(const void *data, int dtype, const int64_t *shape, int ndim, int device, int device_index, mt_tensor *out);
mt_err mt_copy_to(mt_tensor t, void *dst, int64_t nbytes, int dtype);
mt_err mt_full(const int64_t *shape, int ndim, double value, int dtype, int device, int device_index, mt_tensor *out);
mt_err mt_randn(const int64_t *shape, int ndim, mt_generator g, mt_tensor *out);
mt_err mt_rand(const int64_t *shape, int ndim, mt_generator g, mt_tensor *out);
mt_err mt_bernoulli(mt_tensor probs, mt_generator g, mt_tensor *out);
mt_err mt_randperm(int64_t n, mt_generator g, mt_tensor *out);
mt_err mt_arange(int64_t n, int dtype, mt_tensor *out);
mt_err mt_normal_(mt_tensor t, double mean, double std, mt_generator g);
mt_err mt_uniform_(mt_tensor t, double lo, double hi, mt_generator g);

/* metadata */
int mt_ndim(mt_tensor t);
void mt_shape(mt_tensor t, int64_t *out);
int mt_dtype(mt_tensor t);
int mt_device_type(mt_tensor t);
int mt_device_index(mt_tensor t);
int mt_requires_grad(mt_tensor t);
mt_err mt_item(mt_tensor t, double *out);

/* conversions */
mt_err mt_to(mt_tensor t, int dtype, int device, int device_index, mt_tensor *out);
mt_err mt_clone(mt_tensor t, mt_tensor *out);
mt_err mt_contiguous(mt_tensor t, mt_tensor *out);
mt_err mt_detach(mt_tensor t, mt_tensor *out);
mt_err mt_alias(mt_tensor t, mt_tensor *out);

/* memory layout: MT_CHANNELS_LAST is NHWC strides for a 4-d tensor (oneDNN's
   convolutions run faster on it than on NCHW) */
enum mt_memory_format { MT_CONTIGUOUS_FORMAT = 0, MT_CHANNELS_LAST = 1 };
mt_err mt_contiguous_as(mt_tensor t, int format, mt_tensor *out);
int mt_is_contiguous_as(mt_tensor t, int format);
mt_err mt_relayout_(mt_tensor t, int format); /* a leaf without gradient (frozen weights) changes its strides in place */

/* glibc malloc settings (mallopt); each returns 0 when glibc refused the value */
int mt_limit_malloc_arenas(int n);
int mt_set_malloc_mmap_threshold(long bytes);
int mt_set_malloc_trim_threshold(long bytes);
/* OpenBLAS thread pool size, found by symbol (0 when the BLAS is not OpenBLAS) */
int mt_set_blas_threads(int n);
int mt_get_blas_threads(void);

/* elementwise */
enum mt_binary_op { MT_ADD, MT_SUB, MT_MUL, MT_DIV, MT_POW, MT_MAXIMUM, MT_MINIMUM, MT_EQ, MT_NE, MT_GT, MT_GE, MT_LT, MT_LE, MT_RSUB };
mt_err mt_binary(int op, mt_tensor a, mt_tensor b, mt_tensor *out);
mt_err mt_binary_scalar(int op, mt_tensor a, double s, mt_tensor *out);
enum mt_unary_op { MT_NEG, MT_ABS, MT_SQRT, MT_RSQRT, MT_EXP, MT_LOG, MT_LOG1P, MT_RELU, MT_TANH, MT_SIGMOID, MT_SIGN, MT_SQUARE, MT_FLOOR, MT_ROUND, MT_ISNAN, MT_ISFINITE };
mt_err mt_unary(int op, mt_tensor a, mt_tensor *out);
mt_err mt_leaky_relu(mt_tensor a, double slope, mt_tensor *out);
mt_err mt_clamp(mt_tensor a, int has_min, double min, int has_max, double max, mt_tensor *out);
mt_err mt_where(mt_tensor cond, mt_tensor a, mt_tensor b, mt_tensor *out);
mt_err mt_softmax(mt_tensor a, int64_t dim, int log, mt_tensor *out);

/* reductions: dims == NULL / ndims == 0 means over all elements */
enum mt_reduce_op { MT_SUM, MT_MEAN, MT_AMAX, MT_AMIN, MT_ARGMAX, MT_ARGMIN, MT_VAR, MT_STD, MT_NORM };
mt_err mt_reduce(int op, mt_tensor a, const int64_t *dims, int ndims, int keepdim, int unbiased, mt_tensor *out);

/* shapes */
mt_err mt_reshape(mt_tensor a, const int64_t *shape, int ndim, mt_tensor *out);
mt_err mt_permute(mt_tensor a, const int64_t *dims, int ndim, mt_tensor *out);
mt_err mt_transpose(mt_tensor a, int64_t d0, int64_t d1, mt_tensor *out);
mt_err mt_cat(const mt_tensor *ts, int n, int64_t dim, int stack, mt_tensor *out);
mt_err mt_narrow(mt_tensor a, int64_t dim, int64_t start, int64_t length, mt_tensor *out);
mt_err mt_select(mt_tensor a, int64_t dim, int64_t index, mt_tensor *out);
mt_err mt_index_select(mt_tensor a, int64_t dim, mt_tensor index, mt_tensor *out);
mt_err mt_gather(mt_tensor a, int64_t dim, mt_tensor index, mt_tensor *out);
mt_err mt_expand(mt_tensor a, const int64_t *shape, int ndim, mt_tensor *out);
mt_err mt_repeat(mt_tensor a, const int64_t *reps, int ndim, mt_tensor *out);
mt_err mt_unsqueeze(mt_tensor a, int64_t dim, mt_tensor *out);
mt_err mt_squeeze(mt_tensor a, int64_t dim, mt_tensor *out);
mt_err mt_flatten(mt_tensor a, int64_t start, int64_t end, mt_tensor *out);
mt_err mt_one_hot(mt_tensor a, int64_t classes, mt_tensor *out);

/* linear algebra and layers; optional tensors may be NULL */
mt_err mt_matmul(mt_tensor a, mt_tensor b, mt_tensor *out);
mt_err mt_linear(mt_tensor x, mt_tensor w, mt_tensor b, mt_tensor *out);
mt_err mt_conv2d(mt_tensor x, mt_tensor w, mt_tensor b, const int64_t *stride, const int64_t *padding, const int64_t *dilation, int64_t groups, mt_tensor *out);
mt_err mt_conv_transpose2d(mt_tensor x, mt_tensor w, mt_tensor b, const int64_t *stride, const int64_t *padding, const int64_t *output_padding, int64_t groups, const int64_t *dilation, mt_tensor *out);
mt_err mt_conv2d_input_grad(mt_tensor grad, mt_tensor w, const int64_t *input_shape, const int64_t *stride, const int64_t *padding, const int64_t *dilation, int64_t groups, mt_tensor *out);
mt_err mt_batch_norm(mt_tensor x, mt_tensor w, mt_tensor b, mt_tensor running_mean, mt_tensor running_var, int training, double momentum, double eps, mt_tensor *out);
mt_err mt_layer_norm(mt_tensor x, const int64_t *shape, int ndim, mt_tensor w, mt_tensor b, double eps, mt_tensor *out);
mt_err mt_avg_pool2d(mt_tensor x, const int64_t *kernel, const int64_t *stride, const int64_t *padding, mt_tensor *out);
mt_err mt_max_pool2d(mt_tensor x, const int64_t *kernel, const int64_t *stride, const int64_t *padding, const int64_t *dilation, mt_tensor *out);
mt_err mt_upsample_nearest2d(mt_tensor x, int64_t h, int64_t w, mt_tensor *out);
mt_err mt_upsample_bilinear2d(mt_tensor x, int64_t h, int64_t w, int align_corners, mt_tensor *out);
mt_err mt_dropout(mt_tensor x, double p, int train, mt_tensor *out);
mt_err mt_binary_cross_entropy(mt_tensor x, mt_tensor target, int reduction, mt_tensor *out);

/* autograd */
mt_err mt_set_requires_grad(mt_tensor t, int on);
mt_err mt_grad(mt_tensor t, mt_tensor *out); /* *out = NULL when no gradient is stored */
mt_err mt_zero_grad(mt_tensor t, int set_to_none);
mt_err mt_backward(mt_tensor t, mt_tensor grad, int retain_graph, int create_graph);
mt_err mt_autograd_grad(const mt_tensor *outputs, int nout, const mt_tensor *grad_outputs, const mt_tensor *inputs, int nin,
                        int retain_graph, int create_graph, int allow_unused, mt_tensor *out);

/* in-place updates (parameters, optimizer state); never recorded by autograd */
enum mt_inplace_op { MT_ADD_, MT_MUL_, MT_COPY_, MT_ADDCMUL_, MT_ADDCDIV_ };
mt_err mt_inplace(int op, mt_tensor a, mt_tensor b, mt_tensor c, double alpha);
mt_err mt_inplace_scalar(int op, mt_tensor a, double s);
mt_err mt_fill_(mt_tensor a, double v);

#ifdef __cplusplus
}
#endif
#endif
