// SPDX-License-Identifier: MIT
/*
 * DLTensor decoding.  Everything a backend later indexes is checked here,
 * so that no stride or shape can make a kernel read out of bounds.
 */
#include <inttypes.h>

#include <internal/err.h>
#include <internal/tensor.h>

const char *asam_dtype_name(enum asam_dtype dt)
{
	switch (dt) {
	case ASAM_DT_F16:
		return "float16";
	case ASAM_DT_BF16:
		return "bfloat16";
	case ASAM_DT_F32:
		return "float32";
	case ASAM_DT_F64:
		return "float64";
	case ASAM_DT_I32:
		return "int32";
	default:
		return "none";
	}
}

size_t asam_dtype_size(enum asam_dtype dt)
{
	switch (dt) {
	case ASAM_DT_F16:
	case ASAM_DT_BF16:
		return 2;
	case ASAM_DT_F32:
	case ASAM_DT_I32:
		return 4;
	case ASAM_DT_F64:
		return 8;
	default:
		return 0;
	}
}

static enum asam_dtype decode_dtype(DLDataType t)
{
	if (t.lanes != 1)
		return ASAM_DT_NONE;
	if (t.code == kDLFloat && t.bits == 16)
		return ASAM_DT_F16;
	if (t.code == kDLBfloat && t.bits == 16)
		return ASAM_DT_BF16;
	if (t.code == kDLFloat && t.bits == 32)
		return ASAM_DT_F32;
	if (t.code == kDLFloat && t.bits == 64)
		return ASAM_DT_F64;
	if (t.code == kDLInt && t.bits == 32)
		return ASAM_DT_I32;
	return ASAM_DT_NONE;
}

/* Largest extent we index with int64 offsets times element sizes. */
#define TV_MAX_ELEMS ((int64_t)1 << 56)

int asam_tv_from(struct asam_tv *tv, const char *name, const DLTensor *t,
		 int ndim)
{
	int64_t span = 1;
	int i;

	memset(tv, 0, sizeof(*tv));
	if (!t)
		return 0;
	if (!t->data)
		return asam_err(-EINVAL, "%s: data is NULL", name);
	if (t->ndim != ndim)
		return asam_err(-EINVAL, "%s: has %d dimensions, expected %d",
				name, t->ndim, ndim);
	if (!t->shape)
		return asam_err(-EINVAL, "%s: shape is NULL", name);
	tv->dt = decode_dtype(t->dtype);
	if (tv->dt == ASAM_DT_NONE)
		return asam_err(-EINVAL,
				"%s: dtype (code %u, bits %u, lanes %u) is not one of float16, bfloat16, float32, float64, int32",
				name, t->dtype.code, t->dtype.bits,
				t->dtype.lanes);
	if (t->byte_offset % asam_dtype_size(tv->dt))
		return asam_err(-EINVAL,
				"%s: byte_offset %" PRIu64 " is not a multiple of the element size",
				name, t->byte_offset);
	tv->ndim = ndim;
	tv->dev = t->device;
	for (i = ndim - 1; i >= 0; i--) {
		int64_t n = t->shape[i];
		int64_t s = t->strides ? t->strides[i] : span;

		if (n <= 0)
			return asam_err(-EINVAL,
					"%s: shape[%d] = %" PRId64 " must be positive",
					name, i, n);
		if (n > INT32_MAX)
			return asam_err(-EOVERFLOW,
					"%s: shape[%d] = %" PRId64 " exceeds 2^31-1",
					name, i, n);
		if (s < 0)
			return asam_err(-EINVAL,
					"%s: strides[%d] = %" PRId64 " is negative",
					name, i, s);
		if (i == ndim - 1 && ndim > 1 && s != 1 && n > 1)
			return asam_err(-EINVAL,
					"%s: strides[%d] = %" PRId64 ", the last dimension must be contiguous (stride 1)",
					name, i, s);
		if (n > 1 && s > TV_MAX_ELEMS / n)
			return asam_err(-EOVERFLOW,
					"%s: strides[%d] * shape[%d] overflows",
					name, i, i);
		tv->shape[i] = n;
		tv->stride[i] = s;
		if (!t->strides) {
			if (span > TV_MAX_ELEMS / n)
				return asam_err(-EOVERFLOW,
						"%s: the tensor's size overflows",
						name);
			span *= n;
		}
	}
	tv->data = (char *)t->data + t->byte_offset;
	return 0;
}
