// SPDX-License-Identifier: MIT
//
// The "selftest" family: small but real kernels that exercise everything
// the JIT promises the attention families (a shared header, the generated
// constexprs, dtype storage through our own conversions, a block-level
// reduction in shared memory, a compile-time sequence bucket), so the cache
// and the compile tests do not depend on the attention sources.
//
// Defines: BLOCK (threads per block), DTYPE (ASAM_DT_*), SEQ_BUCKET.
#include "jit_types.cuh"

typedef asam_dtype<DTYPE> dt;
typedef dt::storage T;

static_assert(BLOCK >= 32 && BLOCK <= 1024 && (BLOCK & (BLOCK - 1)) == 0,
	      "BLOCK must be a power of two in [32, 1024]");

// y[i] = a * x[i] + y[i], for i < n <= SEQ_BUCKET
extern "C" __global__ void __launch_bounds__(BLOCK)
asam_selftest_axpy(float a, const T *__restrict__ x, T *__restrict__ y,
		   s64 n)
{
	s64 i = (s64)blockIdx.x * BLOCK + threadIdx.x;

	if (n > SEQ_BUCKET)
		return;
	for (; i < n; i += (s64)gridDim.x * BLOCK)
		y[i] = dt::store(a * dt::load(x[i]) + dt::load(y[i]));
}

// out[row] = sum_j x[row * n + j] in fp32, one block per row
extern "C" __global__ void __launch_bounds__(BLOCK)
asam_selftest_rowsum(const T *__restrict__ x, float *__restrict__ out,
		     s64 n)
{
	__shared__ float part[BLOCK / 32];
	const T *row = x + (s64)blockIdx.x * n;
	float acc = 0.f;
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

	for (s64 j = threadIdx.x; j < n && j < SEQ_BUCKET; j += BLOCK)
		acc += dt::load(row[j]);
	for (int o = 16; o; o >>= 1)
		acc += __shfl_xor_sync(0xffffffffu, acc, o);
	if (!lane)
		part[warp] = acc;
	__syncthreads();
	if (!warp) {
		acc = lane < BLOCK / 32 ? part[lane] : 0.f;
		for (int o = 16; o; o >>= 1)
			acc += __shfl_xor_sync(0xffffffffu, acc, o);
		if (!lane)
			out[blockIdx.x] = acc;
	}
}
