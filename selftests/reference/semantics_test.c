// SPDX-License-Identifier: MIT
/*
 * What the reference computes, checked against independent
 * implementations and closed forms: a naive forward written here (one
 * softmax over an explicitly enumerated allowed set), GQA against K/V
 * expanded by hand, BSHD against BHSD, empty rows (0, never NaN, lse
 * -inf, zero gradients), HARD's routing and its error bound, HARD's
 * refused backward, the scale parameter, and fp16/bf16/fp32 storage.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <internal/compiler.h>

#include "../lib/kselftest.h"
#include "attn_case.h"

static struct asam_ctx *ctx;

/* Independent forward: O for (b, h, i) from an explicit key list. */
static void naive_fwd(struct attn_case *c, double scale, struct tt *out,
		      bool (*allowed)(struct attn_case *, int, int, int))
{
	int b, h, i, j, e, g = c->Hq / c->Hkv;
	double *s = malloc(sizeof(double) * c->Nk);

	for (b = 0; b < c->B; b++)
		for (h = 0; h < c->Hq; h++)
			for (i = 0; i < c->Nq; i++) {
				double m = -INFINITY, l = 0, acc;
				int64_t qo = (((int64_t)b * c->Hq + h) * c->Nq + i) * c->d;

				for (j = 0; j < c->Nk; j++) {
					int64_t ko = (((int64_t)b * c->Hkv + h / g) * c->Nk + j) * c->d;
					double dot = 0;

					s[j] = -INFINITY;
					if (!allowed(c, h, i, j))
						continue;
					for (e = 0; e < c->d; e++)
						dot += tt_get(c->q, qo + e) *
						       tt_get(c->k, ko + e);
					s[j] = scale * dot;
					m = fmax(m, s[j]);
				}
				for (j = 0; j < c->Nk; j++)
					l += m == -INFINITY ? 0 : exp(s[j] - m);
				for (e = 0; e < c->d; e++) {
					acc = 0;
					for (j = 0; j < c->Nk && l > 0; j++) {
						int64_t ko = (((int64_t)b * c->Hkv + h / g) * c->Nk + j) * c->d;

						acc += exp(s[j] - m) / l *
						       tt_get(c->v, ko + e);
					}
					tt_set(out, qo + e, acc);
				}
			}
	free(s);
}

static bool strided_causal(struct attn_case *c, int h, int i, int j)
{
	int pos = i + c->Nk - c->Nq;

	return j <= pos && (abs(pos - j) <= c->pat.radius ||
			    j % c->pat.stride == 0);
}

static bool all_pairs(struct attn_case *c, int h, int i, int j)
{
	return true;
}

static void test_naive(void)
{
	struct attn_case c;
	struct tt *ref;
	double err;

	ac_init(&c, TT_F64, 2, 4, 2, 37, 53, 8, ASAM_PATTERN_STRIDED,
		ASAM_GATE_SPARSE, true);
	c.pat.stride = 5, c.pat.radius = 3;
	ref = tt_new4(TT_F64, 2, 4, 37, 8);
	naive_fwd(&c, 1 / sqrt(8.0), ref, strided_causal);
	/* one softmax over the union: a band key on a column counts once */
	if (ac_fwd(ctx, &c) == -EOPNOTSUPP) {
		ksft_test_result_skip("strided: not built\n");
	} else {
		err = tt_rel_err(c.o, ref);
		ksft_test_result(err < 1e-13,
				 "strided causal GQA Nq!=Nk vs naive: rel err %.1e\n",
				 err);
	}

	c.pat.kind = ASAM_PATTERN_LOCAL;	/* DENSE mode ignores it */
	c.prm.scale = 0.3f;
	c.prm.gate_mode = ASAM_GATE_DENSE;
	c.prm.causal = false;
	naive_fwd(&c, 0.3f, ref, all_pairs);
	ac_fwd(ctx, &c);
	err = tt_rel_err(c.o, ref);
	ksft_test_result(err < 1e-13, "DENSE, scale 0.3 vs naive: rel err %.1e\n",
			 err);
	tt_free(ref);
	ac_free(&c);
}

/* SOFT = g S + (1 - g) A from separate SPARSE and DENSE runs. */
static void test_soft_mix(void)
{
	struct attn_case c;
	struct tt *S, *A, *mix;
	int64_t i, n;
	double err;

	ac_init(&c, TT_F64, 2, 2, 2, 40, 40, 4, ASAM_PATTERN_LOCAL,
		ASAM_GATE_SPARSE, false);
	n = tt_numel(c.o);
	S = tt_new4(TT_F64, 2, 2, 40, 4);
	A = tt_new4(TT_F64, 2, 2, 40, 4);
	mix = tt_new4(TT_F64, 2, 2, 40, 4);
	ac_fwd(ctx, &c);
	tt_copy(S, c.o);
	c.prm.gate_mode = ASAM_GATE_DENSE;
	ac_fwd(ctx, &c);
	tt_copy(A, c.o);
	for (i = 0; i < n; i++) {
		double g = tt_get(c.gate, i / (40 * 4));

		tt_set(mix, i, g * tt_get(S, i) + (1 - g) * tt_get(A, i));
	}
	c.prm.gate_mode = ASAM_GATE_SOFT;
	ac_fwd(ctx, &c);
	err = tt_rel_err(c.o, mix);
	ksft_test_result(err < 1e-14, "SOFT = g S + (1-g) A: rel err %.1e\n",
			 err);

	/* HARD: per (b, h), exactly S where g >= 0.5, else A */
	tt_set(c.gate, 0, 0.9), tt_set(c.gate, 1, 0.1);
	tt_set(c.gate, 2, 0.5), tt_set(c.gate, 3, 0.49);
	for (i = 0; i < n; i++)
		tt_set(mix, i, tt_get(c.gate, i / 160) >= 0.5 ?
			       tt_get(S, i) : tt_get(A, i));
	c.prm.gate_mode = ASAM_GATE_HARD;
	ac_fwd(ctx, &c);
	err = tt_rel_err(c.o, mix);
	ksft_test_result(err == 0, "HARD routes each (b, h) to one branch: rel err %.1e\n",
			 err);

	/* |O_soft - O_hard| <= (1 - g) (max v - min v) on sparse heads */
	{
		struct tt *hard = tt_new4(TT_F64, 2, 2, 40, 4);
		double worst = -1;
		int64_t e;

		tt_copy(hard, c.o);
		c.prm.gate_mode = ASAM_GATE_SOFT;
		ac_fwd(ctx, &c);
		for (i = 0; i < n; i++) {
			int bh = i / 160, b = bh / 2, h = bh % 2, ch = i % 4;
			double g = tt_get(c.gate, bh), lo = INFINITY, hi = -INFINITY;

			if (g < 0.5)
				continue;
			for (e = 0; e < 40; e++) {
				double v = tt_get(c.v, ((b * 2 + h) * 40 + e) * 4 + ch);

				lo = fmin(lo, v), hi = fmax(hi, v);
			}
			worst = fmax(worst, fabs(tt_get(c.o, i) - tt_get(hard, i)) -
					    (1 - g) * (hi - lo));
		}
		ksft_test_result(worst <= 1e-12,
				 "HARD error bound (1-g) range(v) holds (slack %.2e)\n",
				 -worst);
		tt_free(hard);
	}
	tt_free(S);
	tt_free(A);
	tt_free(mix);
	ac_free(&c);
}

static void test_hard_bwd_refused(void)
{
	struct attn_case c;
	int ret;

	ac_init(&c, TT_F64, 1, 2, 2, 8, 8, 4, ASAM_PATTERN_LOCAL,
		ASAM_GATE_HARD, false);
	ac_fwd(ctx, &c);
	tt_poison(c.dq), tt_poison(c.dk), tt_poison(c.dv);
	ret = ac_bwd(ctx, &c);
	ksft_test_result(ret == -EINVAL && strstr(asam_last_error(), "HARD") &&
			 tt_is_poisoned(c.dq) && tt_is_poisoned(c.dk) &&
			 tt_is_poisoned(c.dv),
			 "HARD backward refused: %d \"%s\"\n", ret,
			 asam_last_error());
	ac_free(&c);
}

/* GQA: Hq = 4 over Hkv = 2 equals Hkv = 4 with K/V heads duplicated. */
static void test_gqa(void)
{
	struct attn_case c, e;
	int64_t b, h, n, x;
	double err;

	ac_init(&c, TT_F64, 2, 4, 2, 30, 30, 4, ASAM_PATTERN_LOCAL,
		ASAM_GATE_SOFT, true);
	ac_init(&e, TT_F64, 2, 4, 4, 30, 30, 4, ASAM_PATTERN_LOCAL,
		ASAM_GATE_SOFT, true);
	tt_copy(e.q, c.q);
	tt_copy(e.gate, c.gate);
	for (b = 0; b < 2; b++)
		for (h = 0; h < 4; h++)
			for (n = 0; n < 30 * 4; n++) {
				x = (b * 2 + h / 2) * 120 + n;
				tt_set(e.k, (b * 4 + h) * 120 + n, tt_get(c.k, x));
				tt_set(e.v, (b * 4 + h) * 120 + n, tt_get(c.v, x));
			}
	ac_fwd(ctx, &c);
	ac_fwd(ctx, &e);
	err = tt_rel_err(c.o, e.o);
	ksft_test_result(err == 0, "GQA equals expanded K/V: rel err %.1e\n", err);
	ac_free(&c);
	ac_free(&e);
}

/* BSHD strides give the same numbers as BHSD. */
static void test_bshd(void)
{
	struct attn_case c;
	struct tt *q, *k, *v, *o, *ref;
	double err;

	ac_init(&c, TT_F32, 2, 4, 2, 33, 33, 8, ASAM_PATTERN_LOCAL,
		ASAM_GATE_SOFT, false);
	ac_fwd(ctx, &c);
	ref = tt_new4(TT_F32, 2, 4, 33, 8);
	tt_copy(ref, c.o);
	q = tt_new_bshd(TT_F32, 2, 4, 33, 8);
	k = tt_new_bshd(TT_F32, 2, 2, 33, 8);
	v = tt_new_bshd(TT_F32, 2, 2, 33, 8);
	o = tt_new_bshd(TT_F32, 2, 4, 33, 8);
	tt_copy(q, c.q), tt_copy(k, c.k), tt_copy(v, c.v);
	tt_free(c.q), tt_free(c.k), tt_free(c.v), tt_free(c.o);
	c.q = q, c.k = k, c.v = v, c.o = o;
	ac_fwd(ctx, &c);
	err = tt_rel_err(c.o, ref);
	ksft_test_result(err == 0, "BSHD strides equal BHSD: rel err %.1e\n", err);
	tt_free(ref);
	ac_free(&c);
}

/* Padded rows, empty sparse rows: 0 and -inf, never NaN, grads 0. */
static void test_empty_rows(void)
{
	int lq[2] = { 5, 0 }, lk[2] = { 0, 7 };
	struct attn_case c;
	bool ok = true;
	int64_t i;
	int ret;

	/* batch 0: no keys at all; batch 1: no queries */
	ac_init(&c, TT_F64, 2, 2, 1, 9, 9, 4, ASAM_PATTERN_LOCAL,
		ASAM_GATE_SOFT, false);
	ac_set_lengths(&c, lq, lk);
	ret = ac_fwd(ctx, &c) || ac_bwd(ctx, &c);
	ok = !ret && !tt_has_nan(c.o) && tt_max_abs(c.o) == 0 &&
	     !tt_has_nan(c.dq) && tt_max_abs(c.dq) == 0 &&
	     tt_max_abs(c.dk) == 0 && tt_max_abs(c.dv) == 0 &&
	     tt_max_abs(c.dgate) == 0;
	for (i = 0; i < tt_numel(c.lse_s); i++)
		ok &= tt_get(c.lse_s, i) == -INFINITY &&
		      tt_get(c.lse_d, i) == -INFINITY;
	ksft_test_result(ok, "rows without keys or padding rows: O = 0, lse = -inf, gradients 0, no NaN\n");
	ac_free(&c);

	/* causal with Nq > Nk: the first Nq - Nk rows see no key */
	ac_init(&c, TT_F64, 1, 1, 1, 12, 5, 4, ASAM_PATTERN_DENSE,
		ASAM_GATE_DENSE, true);
	ret = ac_fwd(ctx, &c) || ac_bwd(ctx, &c);
	ok = !ret && !tt_has_nan(c.o) && !tt_has_nan(c.dq);
	for (i = 0; i < 7 * 4; i++)
		ok &= tt_get(c.o, i) == 0 && tt_get(c.dq, i) == 0;
	ok &= tt_get(c.lse_d, 6) == -INFINITY && isfinite(tt_get(c.lse_d, 7));
	ksft_test_result(ok, "causal Nq > Nk: the first Nq - Nk rows are empty, later rows are not\n");
	ac_free(&c);

	/* a sparse row can be empty while the dense row is not: len_k = 5
	 * leaves rows i >= 8 with keys but none within LOCAL's radius 2 */
	{
		int lq1[1] = { 20 }, lk1[1] = { 5 };

		ac_init(&c, TT_F64, 1, 1, 1, 20, 20, 4, ASAM_PATTERN_LOCAL,
			ASAM_GATE_SOFT, false);
		ac_set_lengths(&c, lq1, lk1);
	}
	ret = ac_fwd(ctx, &c) || ac_bwd(ctx, &c);
	ok = !ret && !tt_has_nan(c.o) && !tt_has_nan(c.dq) &&
	     !tt_has_nan(c.dk) && !tt_has_nan(c.dv) && !tt_has_nan(c.dgate) &&
	     tt_get(c.lse_s, 10) == -INFINITY && isfinite(tt_get(c.lse_d, 10));
	ksft_test_result(ok, "SOFT with empty sparse rows: finite outputs and gradients\n");
	ac_free(&c);
}

/* The log-sum-exp is log sum_j exp(s_ij) over the allowed keys. */
static void test_lse(void)
{
	struct attn_case c;
	double worst = 0;
	int i, j, e;

	ac_init(&c, TT_F64, 1, 1, 1, 16, 16, 4, ASAM_PATTERN_LOCAL,
		ASAM_GATE_SOFT, false);
	ac_fwd(ctx, &c);
	for (i = 0; i < 16; i++) {
		double ls = 0, ld = 0;

		for (j = 0; j < 16; j++) {
			double dot = 0;

			for (e = 0; e < 4; e++)
				dot += tt_get(c.q, i * 4 + e) *
				       tt_get(c.k, j * 4 + e);
			ld += exp(dot / 2);
			if (abs(i - j) <= c.pat.window / 2)
				ls += exp(dot / 2);
		}
		worst = fmax(worst, fabs(log(ls) - tt_get(c.lse_s, i)));
		worst = fmax(worst, fabs(log(ld) - tt_get(c.lse_d, i)));
	}
	ksft_test_result(worst < 1e-12, "log-sum-exps of both branches: max err %.1e\n",
			 worst);
	ac_free(&c);
}

/* fp16 / bf16 / fp32 storage against fp64 of the same rounded inputs. */
static void test_dtypes(void)
{
	static const struct {
		const char *name;
		const DLDataType *dt;
		double tol;
	} t[] = {
		{ "float32", &TT_F32, 1e-5 },
		{ "float16", &TT_F16, 2e-3 },
		{ "bfloat16", &TT_BF16, 1e-2 },
	};
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(t); i++) {
		struct attn_case c, r;
		double err;
		int ret;

		ac_init(&c, *t[i].dt, 1, 2, 1, 40, 40, 16,
			ASAM_PATTERN_LOCAL, ASAM_GATE_SOFT, true);
		ac_init(&r, TT_F64, 1, 2, 1, 40, 40, 16,
			ASAM_PATTERN_LOCAL, ASAM_GATE_SOFT, true);
		tt_copy(r.q, c.q), tt_copy(r.k, c.k), tt_copy(r.v, c.v);
		tt_copy(r.gate, c.gate);
		ret = ac_fwd(ctx, &c);
		if (ret == -EOPNOTSUPP) {
			ksft_test_result_skip("%s: not built\n", t[i].name);
			ac_free(&c), ac_free(&r);
			continue;
		}
		ac_fwd(ctx, &r);
		err = tt_rel_err(c.o, r.o);
		ksft_test_result(!ret && err <= t[i].tol,
				 "%s storage: rel err %.1e (tolerance %.0e)\n",
				 t[i].name, err, t[i].tol);
		ac_free(&c), ac_free(&r);
	}
}

/* N = 16K runs (memory O(N d), no N x N); spot rows against naive */
static void test_16k(void)
{
	struct attn_case c;
	int rows[3] = { 0, 8191, 16383 }, t, j, e, d = 16, N = 16384;
	double worst = 0;
	int ret;

	ac_init(&c, TT_F32, 1, 1, 1, N, N, d, ASAM_PATTERN_LOCAL,
		ASAM_GATE_SPARSE, false);
	c.pat.window = 128;
	ret = ac_fwd(ctx, &c) || ac_bwd(ctx, &c);
	for (t = 0; t < 3 && !ret; t++) {
		int i = rows[t];
		double m = -INFINITY, l = 0, o[16] = { 0 };

		for (j = i - c.pat.window / 2; j <= i + c.pat.window / 2; j++) {
			double dot = 0;

			if (j < 0 || j >= N)
				continue;
			for (e = 0; e < d; e++)
				dot += tt_get(c.q, (int64_t)i * d + e) *
				       tt_get(c.k, (int64_t)j * d + e);
			dot *= 0.25;
			if (dot > m) {
				for (e = 0; e < d; e++)
					o[e] *= exp(m - dot);
				l *= exp(m - dot);
				m = dot;
			}
			l += exp(dot - m);
			for (e = 0; e < d; e++)
				o[e] += exp(dot - m) * tt_get(c.v, (int64_t)j * d + e);
		}
		for (e = 0; e < d; e++)
			worst = fmax(worst, fabs(o[e] / l -
					   tt_get(c.o, (int64_t)i * d + e)));
	}
	ksft_test_result(!ret && worst < 1e-5 && !tt_has_nan(c.dq) &&
			 !tt_has_nan(c.dk) && !tt_has_nan(c.dv),
			 "N = 16384 local, forward and backward: spot rows max err %.1e\n",
			 worst);
	ac_free(&c);
}

int main(void)
{
	ksft_print_header();
	if (asam_ctx_create(NULL, &ctx))
		ksft_exit_skip("no context: %s\n", asam_last_error());
	test_naive();
	test_soft_mix();
	test_hard_bwd_refused();
	test_gqa();
	test_bshd();
	test_empty_rows();
	test_lse();
	test_dtypes();
	test_16k();
	asam_ctx_destroy(ctx);
	ksft_finished();
}
