// SPDX-License-Identifier: MIT
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <internal/tensor.h>

#include "testutil.h"

const DLDataType TT_F16 = { kDLFloat, 16, 1 };
const DLDataType TT_BF16 = { kDLBfloat, 16, 1 };
const DLDataType TT_F32 = { kDLFloat, 32, 1 };
const DLDataType TT_F64 = { kDLFloat, 64, 1 };
const DLDataType TT_I32 = { kDLInt, 32, 1 };

static uint64_t rng_state, rng_seed;
static bool rng_ready;

void tt_seed(uint64_t seed)
{
	rng_seed = rng_state = seed ? seed : 1;
	rng_ready = true;
}

uint64_t tt_seed_used(void)
{
	return rng_seed;
}

static uint64_t rng_next(void)
{
	uint64_t z;

	if (!rng_ready) {
		const char *env = getenv("ASAM_TEST_SEED");

		tt_seed(env ? strtoull(env, NULL, 0) :
		       (uint64_t)time(NULL) ^ ((uint64_t)clock() << 20));
		printf("# random seed %llu (ASAM_TEST_SEED repeats it)\n",
		       (unsigned long long)rng_seed);
	}
	z = (rng_state += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

double tt_uniform(void)
{
	return (rng_next() >> 11) * (1.0 / 9007199254740992.0);
}

double tt_randn(void)
{
	double u1 = tt_uniform(), u2 = tt_uniform();

	return sqrt(-2 * log(u1 + 1e-300)) * cos(2 * M_PI * u2);
}

static size_t dt_size(DLDataType dt)
{
	return dt.bits / 8;
}

static struct tt *alloc_tt(DLDataType dt, int ndim, const int64_t *shape)
{
	struct tt *t = calloc(1, sizeof(*t));
	int64_t n = 1;
	int i;

	for (i = 0; i < ndim; i++) {
		t->shape[i] = shape[i];
		n *= shape[i];
	}
	t->bytes = n * dt_size(dt);
	t->buf = calloc(1, t->bytes ? t->bytes : 1);
	t->dl.data = t->buf;
	t->dl.device = (DLDevice){ kDLCPU, 0 };
	t->dl.ndim = ndim;
	t->dl.dtype = dt;
	t->dl.shape = t->shape;
	t->dl.strides = t->strides;
	return t;
}

struct tt *tt_new(DLDataType dt, int ndim, const int64_t *shape)
{
	struct tt *t = alloc_tt(dt, ndim, shape);
	int64_t s = 1;
	int i;

	for (i = ndim - 1; i >= 0; i--) {
		t->strides[i] = s;
		s *= shape[i];
	}
	return t;
}

struct tt *tt_new4(DLDataType dt, int64_t B, int64_t H, int64_t N, int64_t d)
{
	int64_t shape[4] = { B, H, N, d };

	return tt_new(dt, 4, shape);
}

struct tt *tt_new_bshd(DLDataType dt, int64_t B, int64_t H, int64_t N,
		       int64_t d)
{
	int64_t shape[4] = { B, H, N, d };
	struct tt *t = alloc_tt(dt, 4, shape);

	t->strides[3] = 1;
	t->strides[1] = d;
	t->strides[2] = H * d;
	t->strides[0] = N * H * d;
	return t;
}

void tt_free(struct tt *t)
{
	if (!t)
		return;
	free(t->buf);
	free(t);
}

int64_t tt_numel(const struct tt *t)
{
	int64_t n = 1;
	int i;

	for (i = 0; i < t->dl.ndim; i++)
		n *= t->shape[i];
	return n;
}

static int64_t phys(const struct tt *t, int64_t idx)
{
	int64_t off = 0;
	int i;

	for (i = t->dl.ndim - 1; i >= 0; i--) {
		off += (idx % t->shape[i]) * t->strides[i];
		idx /= t->shape[i];
	}
	return off;
}

static enum asam_dtype to_asam(DLDataType dt)
{
	if (dt.code == kDLBfloat)
		return ASAM_DT_BF16;
	if (dt.code == kDLInt)
		return ASAM_DT_I32;
	return dt.bits == 16 ? ASAM_DT_F16 : dt.bits == 32 ? ASAM_DT_F32
							    : ASAM_DT_F64;
}

double tt_get(const struct tt *t, int64_t idx)
{
	struct asam_tv v = { .data = t->buf, .dt = to_asam(t->dl.dtype) };

	return tv_get(&v, phys(t, idx));
}

void tt_set(struct tt *t, int64_t idx, double x)
{
	struct asam_tv v = { .data = t->buf, .dt = to_asam(t->dl.dtype) };

	tv_set(&v, phys(t, idx), x);
}

void tt_fill_randn(struct tt *t, double scale)
{
	int64_t i, n = tt_numel(t);

	for (i = 0; i < n; i++)
		tt_set(t, i, scale * tt_randn());
}

void tt_fill_uniform(struct tt *t, double lo, double hi)
{
	int64_t i, n = tt_numel(t);

	for (i = 0; i < n; i++)
		tt_set(t, i, lo + (hi - lo) * tt_uniform());
}

void tt_fill(struct tt *t, double x)
{
	int64_t i, n = tt_numel(t);

	for (i = 0; i < n; i++)
		tt_set(t, i, x);
}

void tt_copy(struct tt *dst, const struct tt *src)
{
	int64_t i, n = tt_numel(src);

	for (i = 0; i < n; i++)
		tt_set(dst, i, tt_get(src, i));
}

double tt_rel_err(const struct tt *a, const struct tt *ref)
{
	double num = 0, den = 0;
	int64_t i, n = tt_numel(ref);

	for (i = 0; i < n; i++) {
		double x = tt_get(a, i), r = tt_get(ref, i);

		if (isnan(x) || isnan(r))
			return INFINITY;
		if (isinf(x) || isinf(r)) {
			if (x != r)
				return INFINITY;
			continue;
		}
		num += (x - r) * (x - r);
		den += r * r;
	}
	if (den == 0)
		return num == 0 ? 0 : INFINITY;
	return sqrt(num / den);
}

double tt_max_abs(const struct tt *t)
{
	double m = 0;
	int64_t i, n = tt_numel(t);

	for (i = 0; i < n; i++)
		m = fmax(m, fabs(tt_get(t, i)));
	return m;
}

bool tt_has_nan(const struct tt *t)
{
	int64_t i, n = tt_numel(t);

	for (i = 0; i < n; i++)
		if (isnan(tt_get(t, i)))
			return true;
	return false;
}

void tt_poison(struct tt *t)
{
	memset(t->buf, 0xA5, t->bytes);
}

bool tt_is_poisoned(const struct tt *t)
{
	const unsigned char *p = t->buf;
	size_t i;

	for (i = 0; i < t->bytes; i++)
		if (p[i] != 0xA5)
			return false;
	return true;
}

bool tt_random_block_chosen(uint64_t seed, int r, int h, int64_t I,
			    int64_t J, int64_t nblocks)
{
	uint64_t x = seed ^ (h * 0x9E3779B97F4A7C15ull) ^
		     ((uint64_t)(I + 1) * 0xC2B2AE3D27D4EB4Full);
	int64_t got[256], n = 0, want = (r + 63) / 64, t;

	if (want > nblocks)
		want = nblocks;
	if (want > 256)
		want = 256;
	while (n < want) {
		uint64_t z;

		x += 0x9E3779B97F4A7C15ull;
		z = x;
		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
		z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
		z ^= z >> 31;
		for (t = 0; t < n && got[t] != (int64_t)(z % nblocks); t++)
			;
		if (t == n)
			got[n++] = z % nblocks;
	}
	for (t = 0; t < n; t++)
		if (got[t] == J)
			return true;
	return false;
}
