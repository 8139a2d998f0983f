// SPDX-License-Identifier: MIT
//
// Types and conversions for run-time compiled kernels.  NVRTC gets no
// toolkit headers from us (a machine may have only the driver and
// libnvrtc), so fixed-width integers and the fp16/bf16 conversions are
// spelled out here, the conversions as inline PTX.
#pragma once

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef int s32;
typedef long long s64;

// Storage dtypes, numbered as the specs' DTYPE define.
#define ASAM_DT_F32  0
#define ASAM_DT_F16  1
#define ASAM_DT_BF16 2

static __device__ __forceinline__ float asam_f16_to_f32(u16 h)
{
	float f;

	asm("{ .reg .f16 t; mov.b16 t, %1; cvt.f32.f16 %0, t; }"
	    : "=f"(f) : "h"(h));
	return f;
}

static __device__ __forceinline__ u16 asam_f32_to_f16(float f)
{
	u16 h;

	asm("{ .reg .f16 t; cvt.rn.f16.f32 t, %1; mov.b16 %0, t; }"
	    : "=h"(h) : "f"(f));
	return h;
}

// bf16 is the top half of an fp32: widening is a shift, narrowing rounds
// to nearest even (NaN kept quiet), which works on every arch >= sm_50.
static __device__ __forceinline__ float asam_bf16_to_f32(u16 h)
{
	return __uint_as_float((u32)h << 16);
}

static __device__ __forceinline__ u16 asam_f32_to_bf16(float f)
{
	u32 u = __float_as_uint(f);

	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (u16)((u >> 16) | 0x40);
	return (u16)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

template <int DT> struct asam_dtype;
template <> struct asam_dtype<ASAM_DT_F32> {
	typedef float storage;
	static __device__ __forceinline__ float load(float v) { return v; }
	static __device__ __forceinline__ float store(float v) { return v; }
};
template <> struct asam_dtype<ASAM_DT_F16> {
	typedef u16 storage;
	static __device__ __forceinline__ float load(u16 v)
	{ return asam_f16_to_f32(v); }
	static __device__ __forceinline__ u16 store(float v)
	{ return asam_f32_to_f16(v); }
};
template <> struct asam_dtype<ASAM_DT_BF16> {
	typedef u16 storage;
	static __device__ __forceinline__ float load(u16 v)
	{ return asam_bf16_to_f32(v); }
	static __device__ __forceinline__ u16 store(float v)
	{ return asam_f32_to_bf16(v); }
};
