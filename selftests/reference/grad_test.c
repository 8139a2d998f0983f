// SPDX-License-Identifier: MIT
/*
 * The reference backward against central finite differences of the
 * reference forward, in fp64: dQ, dK, dV and dg for every pattern and
 * every gate mode with a backward, with causal, GQA and padded lengths.
 * The loss is L = sum(O * W) for a random W, so dL/dO = W.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>

#include <internal/compiler.h>

#include "../lib/kselftest.h"
#include "attn_case.h"

#define FD_EPS 1e-6
#define FD_TOL 1e-6

static double loss(struct asam_ctx *ctx, struct attn_case *c)
{
	int64_t i, n = tt_numel(c->o);
	double l = 0;

	if (ac_fwd(ctx, c))
		return NAN;
	for (i = 0; i < n; i++)
		l += tt_get(c->o, i) * tt_get(c->d_o, i);
	return l;
}

/* ||analytic - fd|| / ||fd|| over every element of @x */
static double fd_err(struct asam_ctx *ctx, struct attn_case *c,
		     struct tt *x, const struct tt *grad)
{
	int64_t i, n = tt_numel(x);
	double num = 0, den = 0;

	for (i = 0; i < n; i++) {
		double x0 = tt_get(x, i), lp, lm, fd, an = tt_get(grad, i);

		tt_set(x, i, x0 + FD_EPS);
		lp = loss(ctx, c);
		tt_set(x, i, x0 - FD_EPS);
		lm = loss(ctx, c);
		tt_set(x, i, x0);
		fd = (lp - lm) / (2 * FD_EPS);
		if (isnan(fd) || isnan(an))
			return INFINITY;
		num += (an - fd) * (an - fd);
		den += fd * fd;
	}
	return den ? sqrt(num / den) : sqrt(num);
}

/* dg has fp32 storage: difference the gate in fp32 steps around g */
static double fd_gate_err(struct asam_ctx *ctx, struct attn_case *c)
{
	int64_t i, n = tt_numel(c->gate);
	double num = 0, den = 0;

	for (i = 0; i < n; i++) {
		double g0 = tt_get(c->gate, i), gp, gm, lp, lm, fd;
		double an = tt_get(c->dgate, i);

		tt_set(c->gate, i, g0 + 1e-3);
		gp = tt_get(c->gate, i);
		lp = loss(ctx, c);
		tt_set(c->gate, i, g0 - 1e-3);
		gm = tt_get(c->gate, i);
		lm = loss(ctx, c);
		tt_set(c->gate, i, g0);
		/* O is linear in g: the difference quotient is exact */
		fd = (lp - lm) / (gp - gm);
		num += (an - fd) * (an - fd);
		den += fd * fd;
	}
	/* DENSE pattern: S == A, dg is exactly 0; judge it absolutely */
	return den > 1e-18 ? sqrt(num / den) : sqrt(num);
}

static void run_case(struct asam_ctx *ctx, enum asam_pattern_kind kind,
		     enum asam_gate_mode mode, bool causal, bool lengths)
{
	static const char *const mname[] = { "SPARSE", "DENSE", "SOFT" };
	bool random = kind == ASAM_PATTERN_RANDOM;
	int Nq = random ? 10 : 7, Nk = random ? 140 : 11, d = random ? 3 : 4;
	int lq[2] = { Nq - 2, Nq }, lk[2] = { Nk, Nk - 3 };
	struct attn_case c;
	double eq, ek, ev, eg = 0;
	int ret;

	if (random)	/* one 64-key block of three: small batch and heads */
		ac_init(&c, TT_F64, 1, 2, 1, Nq, Nk, d, kind, mode, causal);
	else
		ac_init(&c, TT_F64, 2, 4, 2, Nq, Nk, d, kind, mode, causal);
	if (lengths)
		ac_set_lengths(&c, lq, lk);
	ret = ac_fwd(ctx, &c);
	if (!ret)
		ret = ac_bwd(ctx, &c);
	if (ret) {
		ksft_test_result_fail("%s %s: %s\n", asam_pattern_name(kind),
				      mname[mode], asam_last_error());
		ac_free(&c);
		return;
	}
	eq = fd_err(ctx, &c, c.q, c.dq);
	ek = fd_err(ctx, &c, c.k, c.dk);
	ev = fd_err(ctx, &c, c.v, c.dv);
	if (mode == ASAM_GATE_SOFT)
		eg = fd_gate_err(ctx, &c);
	ksft_test_result(eq < FD_TOL && ek < FD_TOL && ev < FD_TOL &&
			 eg < FD_TOL,
			 "%s %s%s%s: fd rel err dq %.1e dk %.1e dv %.1e dg %.1e\n",
			 asam_pattern_name(kind), mname[mode],
			 causal ? " causal" : "", lengths ? " lengths" : "",
			 eq, ek, ev, eg);
	ac_free(&c);
}

int main(void)
{
	struct asam_ctx *ctx;
	int kind, mode, variant;

	ksft_print_header();
	if (asam_ctx_create(NULL, &ctx))
		ksft_exit_skip("no context: %s\n", asam_last_error());
	for (kind = 0; kind < ASAM_PATTERN_NR_KINDS; kind++) {
		struct attn_case probe;
		int ret;

		ac_init(&probe, TT_F64, 1, 1, 1, 2, 2, 2, kind,
			ASAM_GATE_SPARSE, false);
		ret = ac_fwd(ctx, &probe);
		ac_free(&probe);
		if (ret == -EOPNOTSUPP) {
			ksft_test_result_skip("%s: not built\n",
					      asam_pattern_name(kind));
			continue;
		}
		for (mode = ASAM_GATE_SPARSE; mode <= ASAM_GATE_SOFT; mode++)
			for (variant = 0; variant < 2; variant++)
				run_case(ctx, kind, mode, variant,
					 variant || mode == ASAM_GATE_SOFT);
	}
	asam_ctx_destroy(ctx);
	ksft_finished();
}
