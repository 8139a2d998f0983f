/* SPDX-License-Identifier: MIT */
/*
 * A checked view of a DLTensor: dtype decoded, byte offset applied, strides
 * in elements (DLPack's NULL strides made explicit).  Backends read tensors
 * only through views the runtime has validated.
 */
#ifndef ASAM_INTERNAL_TENSOR_H
#define ASAM_INTERNAL_TENSOR_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <dlpack/dlpack.h>

enum asam_dtype {
	ASAM_DT_NONE = 0,
	ASAM_DT_F16,
	ASAM_DT_BF16,
	ASAM_DT_F32,
	ASAM_DT_F64,
	ASAM_DT_I32,
};

#define ASAM_TV_MAXDIM 4

struct asam_tv {
	void *data;			/* NULL: the tensor was not given */
	enum asam_dtype dt;
	int ndim;
	int64_t shape[ASAM_TV_MAXDIM];
	int64_t stride[ASAM_TV_MAXDIM];	/* in elements */
	DLDevice dev;
};

const char *asam_dtype_name(enum asam_dtype dt);
size_t asam_dtype_size(enum asam_dtype dt);

/*
 * asam_tv_from() - decode and check @t into @tv
 * @name: the parameter's name for messages ("q", "lse_dense", ...)
 * @t: the tensor, or NULL (then @tv->data is NULL and 0 is returned)
 * @ndim: the rank it must have
 *
 * Checks: non-NULL data, the rank, non-negative shape and strides, a
 * contiguous last dimension when ndim > 1, no 32-bit-overflowing extent,
 * lanes == 1, and a dtype libasam knows.  Return: 0 or -EINVAL/-EOVERFLOW
 * with a message.
 */
int asam_tv_from(struct asam_tv *tv, const char *name, const DLTensor *t,
		 int ndim);

/* Element offset of index (i0, i1, i2, i3); unused trailing indices 0. */
static inline int64_t tv_off(const struct asam_tv *t, int64_t i0, int64_t i1,
			     int64_t i2, int64_t i3)
{
	return i0 * t->stride[0] + i1 * t->stride[1] + i2 * t->stride[2] +
	       i3 * t->stride[3];
}

static inline float asam_half_to_float(uint16_t h)
{
	uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f,
		 m = h & 0x3ff, u;
	float f;

	if (e == 0) {
		/* subnormal: m * 2^-24, exact in float */
		f = (float)m * 5.9604644775390625e-8f;
		return s ? -f : f;
	}
	if (e == 31)
		u = s | 0x7f800000u | (m << 13);
	else
		u = s | ((e + 112) << 23) | (m << 13);
	memcpy(&f, &u, 4);
	return f;
}

/* Round to nearest even; NaN stays NaN, overflow goes to infinity. */
static inline uint16_t asam_float_to_half(float f)
{
	uint32_t u, s, e, m;

	memcpy(&u, &f, 4);
	s = (u >> 16) & 0x8000;
	e = (u >> 23) & 0xff;
	m = u & 0x7fffff;
	if (e == 0xff)
		return s | 0x7c00 | (m ? 0x200 : 0);
	if (e > 142)			/* >= 2^16: overflow */
		return s | 0x7c00;
	if (e < 113) {			/* subnormal half or zero */
		uint32_t shift, mm, r;

		if (e < 102)
			return s;
		mm = m | 0x800000;
		shift = 126 - e;
		r = mm >> shift;
		if ((mm & ((1u << shift) - 1)) > (1u << (shift - 1)) ||
		    ((mm & ((1u << shift) - 1)) == (1u << (shift - 1)) &&
		     (r & 1)))
			r++;
		return s | r;
	}
	{
		uint32_t h = s | ((e - 112) << 10) | (m >> 13);
		uint32_t rem = m & 0x1fff;

		if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
			h++;
		return h;
	}
}

static inline float asam_bf16_to_float(uint16_t b)
{
	uint32_t u = (uint32_t)b << 16;
	float f;

	memcpy(&f, &u, 4);
	return f;
}

static inline uint16_t asam_float_to_bf16(float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	if ((u & 0x7fffffff) > 0x7f800000)
		return (u >> 16) | 0x40;	/* quiet NaN */
	u += 0x7fff + ((u >> 16) & 1);
	return u >> 16;
}

/* Read element @off of @t as a double (any floating dtype or int32). */
static inline double tv_get(const struct asam_tv *t, int64_t off)
{
	switch (t->dt) {
	case ASAM_DT_F16:
		return asam_half_to_float(((const uint16_t *)t->data)[off]);
	case ASAM_DT_BF16:
		return asam_bf16_to_float(((const uint16_t *)t->data)[off]);
	case ASAM_DT_F32:
		return ((const float *)t->data)[off];
	case ASAM_DT_F64:
		return ((const double *)t->data)[off];
	case ASAM_DT_I32:
		return ((const int32_t *)t->data)[off];
	default:
		return 0;
	}
}

/* Store @x at element @off of @t, rounding to its dtype. */
static inline void tv_set(const struct asam_tv *t, int64_t off, double x)
{
	switch (t->dt) {
	case ASAM_DT_F16:
		((uint16_t *)t->data)[off] = asam_float_to_half((float)x);
		break;
	case ASAM_DT_BF16:
		((uint16_t *)t->data)[off] = asam_float_to_bf16((float)x);
		break;
	case ASAM_DT_F32:
		((float *)t->data)[off] = (float)x;
		break;
	case ASAM_DT_F64:
		((double *)t->data)[off] = x;
		break;
	case ASAM_DT_I32:
		((int32_t *)t->data)[off] = (int32_t)x;
		break;
	default:
		break;
	}
}

#endif
