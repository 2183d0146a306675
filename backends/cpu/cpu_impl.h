/* Internals shared by the CPU backend's files: cpu.c (device, buffers, the MLP kernels and the
 * backend table) and transformer.c (the kernels a GPT adds). */
#ifndef SL_CPU_IMPL_H
#define SL_CPU_IMPL_H

#include "backends/backend_impl.h"

#define F(buf) ((float *)(buf)->impl)

int sl__cpu_sum_squares(sl_device *dev, size_t n, sl_buffer *x, sl_buffer *out);
int sl__cpu_layernorm_forward(sl_device *dev, size_t rows, size_t cols, sl_buffer *x,
                              sl_buffer *weight, sl_buffer *bias, sl_buffer *y, sl_buffer *mean,
                              sl_buffer *rstd);
int sl__cpu_layernorm_backward(sl_device *dev, size_t rows, size_t cols, sl_buffer *dy,
                               sl_buffer *x, sl_buffer *mean, sl_buffer *rstd, sl_buffer *weight,
                               sl_buffer *dx, sl_buffer *dweight, sl_buffer *dbias);
int sl__cpu_embedding_forward(sl_device *dev, size_t batch, size_t seq, size_t cols, size_t vocab,
                              sl_buffer *tokens, sl_buffer *wte, sl_buffer *wpe, sl_buffer *out);
int sl__cpu_embedding_backward(sl_device *dev, size_t batch, size_t seq, size_t cols, size_t vocab,
                               sl_buffer *tokens, sl_buffer *dout, sl_buffer *dwte,
                               sl_buffer *dwpe);
int sl__cpu_causal_softmax_forward(sl_device *dev, size_t heads, size_t seq, float scale,
                                   sl_buffer *s, sl_buffer *p);
int sl__cpu_causal_softmax_backward(sl_device *dev, size_t heads, size_t seq, float scale,
                                    sl_buffer *p, sl_buffer *dp, sl_buffer *ds);
int sl__cpu_copy_strided(sl_device *dev, const size_t shape[4], sl_buffer *src, size_t src_offset,
                         const size_t src_strides[4], sl_buffer *dst, size_t dst_offset,
                         const size_t dst_strides[4]);
int sl__cpu_gemm_strided_batched(sl_device *dev, bool trans_a, bool trans_b, size_t m, size_t n,
                                 size_t k, float alpha, sl_buffer *a, size_t stride_a, sl_buffer *b,
                                 size_t stride_b, float beta, sl_buffer *c, size_t stride_c,
                                 size_t batch);

#endif
