/* SPDX-License-Identifier: MIT */
/*
 * Helpers for selftests: host tensors (BHSD or BSHD strides), random
 * inputs drawn fresh each run (ASAM_TEST_SEED=n repeats a run), relative
 * errors, and poisoning to prove that refused calls wrote nothing.
 */
#ifndef ASAM_TESTUTIL_H
#define ASAM_TESTUTIL_H

#include <stdbool.h>
#include <stdint.h>

#include <asam/asam.h>

extern const DLDataType TT_F16, TT_BF16, TT_F32, TT_F64, TT_I32;

struct tt {
	DLTensor dl;
	int64_t shape[4];
	int64_t strides[4];
	void *buf;
	size_t bytes;
};

/* Contiguous tensor of @ndim dims; NULL-terminated varargs not needed. */
struct tt *tt_new(DLDataType dt, int ndim, const int64_t *shape);
/* [B, H, N, d] logical shape stored as [B, N, H, d] (BSHD) */
struct tt *tt_new_bshd(DLDataType dt, int64_t B, int64_t H, int64_t N,
		       int64_t d);
struct tt *tt_new4(DLDataType dt, int64_t B, int64_t H, int64_t N, int64_t d);
void tt_free(struct tt *t);

int64_t tt_numel(const struct tt *t);
/* element by logical flat index (row-major over the logical shape) */
double tt_get(const struct tt *t, int64_t idx);
void tt_set(struct tt *t, int64_t idx, double x);

void tt_seed(uint64_t seed);	/* default: from time, printed once */
uint64_t tt_seed_used(void);
double tt_uniform(void);	/* [0, 1) */
double tt_randn(void);
void tt_fill_randn(struct tt *t, double scale);
void tt_fill_uniform(struct tt *t, double lo, double hi);
void tt_fill(struct tt *t, double x);
void tt_copy(struct tt *dst, const struct tt *src);	/* converts dtype */

/* ||a - ref|| / ||ref|| over the logical elements; INFINITY on NaN */
double tt_rel_err(const struct tt *a, const struct tt *ref);
double tt_max_abs(const struct tt *t);
bool tt_has_nan(const struct tt *t);

/*
 * SPEC 3.1 RANDOM, written here independently of runtime/pattern.c: is key
 * block @J among those SplitMix64 picks for head @h, query block @I?
 */
bool tt_random_block_chosen(uint64_t seed, int r, int h, int64_t I,
			    int64_t J, int64_t nblocks);

void tt_poison(struct tt *t);		/* fill raw bytes with 0xA5 */
bool tt_is_poisoned(const struct tt *t);

#endif
