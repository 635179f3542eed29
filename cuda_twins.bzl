"""Every CUDA twin library: what the plugin (//:libcolossal_cuda.so) and the GPU benches link."""

CUDA_TWINS = [
    "//kernels/common:cuda_backend",
    "//kernels/common:cuda_blas",
    "//kernels/attention:attention_cuda",
    "//kernels/attention:block_attention_cuda",
    "//kernels/convert:convert_cuda",
    "//kernels/elementwise:elementwise_cuda",
    "//kernels/elementwise:mean_cuda",
    "//kernels/embedding:embedding_cuda",
    "//kernels/gelu:gelu_cuda",
    "//kernels/layer_norm:layer_norm_cuda",
    "//kernels/matmul:matmul_cuda",
    "//kernels/optim:optim_cuda",
    "//kernels/softmax_xent:softmax_xent_cuda",
    "//memory:cuda_allocator",
]
