// SPDX-License-Identifier: MIT
/*
 * The fast CPU backend against the fp64 reference over a grid: every
 * pattern (both cluster modes, USER_INDEX) x gate mode x causal x GQA x
 * lengths x storage dtype, forward (O and both log-sum-exps) and
 * backward (dQ, dK, dV, dg), within the SPEC 4 tolerances.  Inputs are
 * fresh random draws each run.  The backward of both backends starts from
 * the reference's forward outputs, so each gradient is judged on its own.
 * Cases alternate between a 2- and a 16-worker context, which take
 * different backward paths, and every other pair has K and V on cache
 * lines (read in place) rather than calloc()'s alignment (converted).  The best ISA runs the whole grid; every
 * other usable ISA runs a slice of it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/kselftest.h"
#include "../lib/testutil.h"
#include "../../arch/cpu/fast.h"

struct shape {
	int B, Hq, Nq, Nk, d;
	bool lens;
};

static const struct shape shapes[] = {
	{ 2, 4, 150, 150, 32, false },
	{ 2, 4, 90, 200, 40, true },	/* d padded, Nq != Nk, lengths */
	{ 1, 4, 100, 60, 64, false },	/* causal: the first rows are empty */
	/* USER_INDEX with more entries a row (20) than keys: every key */
	{ 1, 4, 40, 12, 64, false },
	/* USER_INDEX over three 4096-key words of its sorted rows' bits */
	{ 2, 2, 24, 9000, 32, true },
	/* column sets and cluster buckets of several 64-key segments */
	{ 1, 2, 800, 800, 32, false },
	/* RANDOM_ROWS rows of 300 keys in tiles of up to 1024 rows */
	{ 1, 4, 2048, 600, 32, false },
};

/* STRIDED radius 30, HIERARCHICAL scales 4, 16, 128 (run_case) */
static bool wide_band;
/* keys a row of RANDOM_ROWS, where not 0 (run_case) */
static int long_rows;
/* O on a cache line, so that CLUSTERED may stream its rows (run_case) */
static bool align_o;

struct kind {
	enum asam_pattern_kind k;
	enum asam_cluster_mode cm;
	const char *name;
};

static const struct kind kinds[] = {
	{ ASAM_PATTERN_DENSE, 0, "dense" },
	{ ASAM_PATTERN_LOCAL, 0, "local" },
	{ ASAM_PATTERN_STRIDED, 0, "strided" },
	{ ASAM_PATTERN_HIERARCHICAL, 0, "hier" },
	{ ASAM_PATTERN_RANDOM, 0, "random" },
	{ ASAM_PATTERN_RANDOM_ROWS, 0, "rrows" },
	{ ASAM_PATTERN_CLUSTERED, ASAM_CLUSTER_ARGMAX, "clust" },
	{ ASAM_PATTERN_CLUSTERED, ASAM_CLUSTER_SOFT, "clust-soft" },
	{ ASAM_PATTERN_USER_INDEX, 0, "uindex" },
};

static const char *gname[] = { "sparse", "dense", "soft", "hard" };

static double tol_fwd(DLDataType dt)
{
	return dt.bits == 32 ? 1e-5 : dt.code == kDLBfloat ? 1e-2 : 2e-3;
}

static double tol_bwd(DLDataType dt)
{
	return dt.bits == 32 ? 1e-4 : dt.code == kDLBfloat ? 2e-2 : 2e-3;
}

/* lse: equal -inf where the reference has -inf, else relative closeness */
static bool lse_ok(const struct tt *a, const struct tt *r)
{
	int64_t i, n = tt_numel(r);

	for (i = 0; i < n; i++) {
		double x = tt_get(a, i), y = tt_get(r, i);

		if (isnan(y))	/* HARD: the branch the head did not take */
			continue;
		if (isnan(x))
			return false;
		if (isinf(y) || isinf(x)) {
			if (x != y)
				return false;
			continue;
		}
		if (fabs(x - y) > 1e-4 * (1 + fabs(y)))
			return false;
	}
	return true;
}

struct bufs {
	struct tt *q, *k, *v, *o, *ls, *ld, *g, *lq, *lk, *mu, *ix;
	struct tt *ro, *rls, *rld;
	struct tt *dO, *dq, *dk, *dv, *dg, *rdq, *rdk, *rdv, *rdg;
};

static int failures;

/*
 * Move @t's data to a 64-byte aligned copy: the backend reads fp32 K
 * and V in place only when their rows start on a cache line (else it
 * converts them), and calloc()'s 16-byte alignment would leave that
 * path to chance.
 */
static void align64(struct tt *t)
{
	void *a = aligned_alloc(64, (t->bytes + 63) & ~(size_t)63);

	if (!a)
		return;
	memcpy(a, t->buf, t->bytes);
	free(t->buf);
	t->buf = a;
	t->dl.data = a;
}

static void check(bool ok, const char *what, const char *tag, double err)
{
	ksft_test_result(ok, "%s %s err %.3g\n", tag, what, err);
	if (!ok)
		failures++;
}

static void run_case(struct asam_ctx *ctx, const struct kind *kd,
		     enum asam_gate_mode gm, bool causal, bool gqa,
		     DLDataType dt, const struct shape *sh, const char *isa)
{
	int Hkv = gqa ? sh->Hq / 2 : sh->Hq, H = sh->Hq, ret, i;
	int64_t gs[2] = { sh->B, H }, ls1[1] = { sh->B };
	int64_t ms[3] = { H, 4, sh->d };
	struct asam_pattern pat;
	struct asam_attn_params prm = { .sz = sizeof(prm) };
	struct asam_fwd_args fa = { .sz = sizeof(fa) };
	struct asam_bwd_args ba = { .sz = sizeof(ba) };
	static int calls;
	struct bufs x;
	float wts[16];
	char tag[160];
	double e;

	snprintf(tag, sizeof(tag), "%s %s %s%s%s %s N=%d/%d d=%d%s", isa,
		 kd->name, gname[gm], causal ? " causal" : "",
		 gqa ? " gqa" : "", dt.bits == 32 ? "f32" :
		 dt.code == kDLBfloat ? "bf16" : "f16", sh->Nq, sh->Nk, sh->d,
		 sh->lens ? " lens" : "");
	asam_pattern_init(&pat, kd->k);
	pat.window = 16;
	pat.stride = 8;
	pat.radius = 3;
	if (wide_band) {
		/*
		 * bands wider than one gathered segment: the 64-key blocks
		 * around them go direct (build_keys_arith)
		 */
		pat.radius = 30;
		pat.scales[2] = 128;
	}
	pat.keys_per_row = kd->k == ASAM_PATTERN_RANDOM ? 64 :
			   long_rows ? long_rows : 24;
	pat.seed = (uint64_t)tt_uniform() * 1000;
	pat.num_clusters = 4;
	pat.cluster_mode = kd->cm;
	if (kd->k == ASAM_PATTERN_HIERARCHICAL && !gqa) {
		/* random per-head weights (uniform ones in the GQA cases) */
		for (i = 0; i < H * pat.num_scales; i++)
			wts[i] = (float)tt_uniform();
		for (i = 0; i < H; i++) {
			float s = wts[3 * i] + wts[3 * i + 1] + wts[3 * i + 2];

			wts[3 * i] /= s, wts[3 * i + 1] /= s,
				wts[3 * i + 2] /= s;
		}
		pat.scale_weights = wts;
	}
	memset(&x, 0, sizeof(x));
	x.q = tt_new4(dt, sh->B, H, sh->Nq, sh->d);
	x.k = tt_new4(dt, sh->B, Hkv, sh->Nk, sh->d);
	x.v = tt_new4(dt, sh->B, Hkv, sh->Nk, sh->d);
	x.o = tt_new4(dt, sh->B, H, sh->Nq, sh->d);
	x.ro = tt_new4(dt, sh->B, H, sh->Nq, sh->d);
	x.ls = tt_new(TT_F32, 3, (int64_t[]){ sh->B, H, sh->Nq });
	x.ld = tt_new(TT_F32, 3, (int64_t[]){ sh->B, H, sh->Nq });
	x.rls = tt_new(TT_F32, 3, (int64_t[]){ sh->B, H, sh->Nq });
	x.rld = tt_new(TT_F32, 3, (int64_t[]){ sh->B, H, sh->Nq });
	x.g = tt_new(TT_F32, 2, gs);
	x.mu = tt_new(TT_F32, 3, ms);
	tt_fill_randn(x.q, 1.0);
	tt_fill_randn(x.k, 1.0);
	tt_fill_randn(x.v, 1.0);
	tt_fill_randn(x.mu, 1.0);
	tt_fill_uniform(x.g, 0.05, 0.95);
	if (calls++ / 2 % 2) {	/* both worker counts, in place and not */
		align64(x.k);
		align64(x.v);
	}
	if (align_o)
		align64(x.o);
	pat.centroids = &x.mu->dl;
	if (kd->k == ASAM_PATTERN_USER_INDEX) {
		/*
		 * 20 entries a row in no order: -1s, repeats, keys past the
		 * causal or length limit, and whole rows of -1 (no key).
		 */
		int64_t is[4] = { sh->B, Hkv, sh->Nq, 20 }, n, t;

		x.ix = tt_new(TT_I32, 4, is);
		n = tt_numel(x.ix);
		for (t = 0; t < n; t++) {
			double u = tt_uniform();

			if (u < 0.1 || (t / 20) % 17 == 5)
				tt_set(x.ix, t, -1);
			else if (u < 0.2 && t % 20)
				tt_set(x.ix, t, tt_get(x.ix, t - 1));
			else
				tt_set(x.ix, t,
				       (int64_t)(tt_uniform() * sh->Nk));
		}
		pat.index = &x.ix->dl;
	}
	if (sh->lens) {
		x.lq = tt_new(TT_I32, 1, ls1);
		x.lk = tt_new(TT_I32, 1, ls1);
		tt_set(x.lq, 0, sh->Nq), tt_set(x.lk, 0, sh->Nk - 3);
		tt_set(x.lq, 1, sh->Nq - 7), tt_set(x.lk, 1, 70);
		fa.len_q = &x.lq->dl, fa.len_k = &x.lk->dl;
	}
	prm.pattern = &pat;
	prm.gate_mode = gm;
	prm.hard_threshold = 0.5f;
	prm.causal = causal;
	fa.q = &x.q->dl, fa.k = &x.k->dl, fa.v = &x.v->dl;
	fa.gate = &x.g->dl;

	/* reference */
	prm.flags = ASAM_F_REFERENCE;
	fa.o = &x.ro->dl, fa.lse_sparse = &x.rls->dl, fa.lse_dense = &x.rld->dl;
	tt_fill(x.rls, -1), tt_fill(x.rld, -1);
	ret = asam_attn_fwd(ctx, &prm, &fa);
	if (ret) {
		ksft_test_result_skip("%s: reference: %s\n", tag,
				      asam_last_error());
		goto out;
	}
	/* fast */
	prm.flags = 0;
	tt_poison(x.o);
	tt_fill(x.ls, -1), tt_fill(x.ld, -1);
	fa.o = &x.o->dl, fa.lse_sparse = &x.ls->dl, fa.lse_dense = &x.ld->dl;
	ret = asam_attn_fwd(ctx, &prm, &fa);
	if (ret) {
		check(false, asam_last_error(), tag, 0);
		goto out;
	}
	e = tt_rel_err(x.o, x.ro);
	check(e <= tol_fwd(dt) && !tt_has_nan(x.o), "O", tag, e);
	if (gm != ASAM_GATE_DENSE)
		check(lse_ok(x.ls, x.rls), "lse_s", tag, 0);
	if (gm != ASAM_GATE_SPARSE)
		check(lse_ok(x.ld, x.rld), "lse_d", tag, 0);
	if (gm == ASAM_GATE_HARD)
		goto out;

	x.dO = tt_new4(dt, sh->B, H, sh->Nq, sh->d);
	tt_fill_randn(x.dO, 1.0);
	x.dq = tt_new4(dt, sh->B, H, sh->Nq, sh->d);
	x.dk = tt_new4(dt, sh->B, Hkv, sh->Nk, sh->d);
	x.dv = tt_new4(dt, sh->B, Hkv, sh->Nk, sh->d);
	x.rdq = tt_new4(dt, sh->B, H, sh->Nq, sh->d);
	x.rdk = tt_new4(dt, sh->B, Hkv, sh->Nk, sh->d);
	x.rdv = tt_new4(dt, sh->B, Hkv, sh->Nk, sh->d);
	x.dg = tt_new(TT_F32, 2, gs);
	x.rdg = tt_new(TT_F32, 2, gs);
	ba.q = fa.q, ba.k = fa.k, ba.v = fa.v, ba.gate = fa.gate;
	ba.len_q = fa.len_q, ba.len_k = fa.len_k;
	ba.o = &x.ro->dl;
	ba.lse_sparse = gm != ASAM_GATE_DENSE ? &x.rls->dl : NULL;
	ba.lse_dense = gm != ASAM_GATE_SPARSE ? &x.rld->dl : NULL;
	ba.d_o = &x.dO->dl;
	prm.flags = ASAM_F_REFERENCE;
	ba.dq = &x.rdq->dl, ba.dk = &x.rdk->dl, ba.dv = &x.rdv->dl;
	ba.dgate = gm == ASAM_GATE_SOFT ? &x.rdg->dl : NULL;
	ret = asam_attn_bwd(ctx, &prm, &ba);
	if (ret) {
		check(false, asam_last_error(), tag, 0);
		goto out;
	}
	prm.flags = 0;
	tt_poison(x.dq), tt_poison(x.dk), tt_poison(x.dv);
	ba.dq = &x.dq->dl, ba.dk = &x.dk->dl, ba.dv = &x.dv->dl;
	ba.dgate = gm == ASAM_GATE_SOFT ? &x.dg->dl : NULL;
	ret = asam_attn_bwd(ctx, &prm, &ba);
	if (ret) {
		check(false, asam_last_error(), tag, 0);
		goto out;
	}
	e = tt_rel_err(x.dq, x.rdq);
	check(e <= tol_bwd(dt), "dQ", tag, e);
	e = tt_rel_err(x.dk, x.rdk);
	check(e <= tol_bwd(dt), "dK", tag, e);
	e = tt_rel_err(x.dv, x.rdv);
	check(e <= tol_bwd(dt), "dV", tag, e);
	if (gm == ASAM_GATE_SOFT) {
		e = tt_rel_err(x.dg, x.rdg);
		check(e <= tol_bwd(dt), "dg", tag, e);
	}
out:
	tt_free(x.q), tt_free(x.k), tt_free(x.v), tt_free(x.o);
	tt_free(x.ro), tt_free(x.ls), tt_free(x.ld), tt_free(x.rls);
	tt_free(x.rld), tt_free(x.g), tt_free(x.mu), tt_free(x.lq);
	tt_free(x.ix);
	tt_free(x.lk), tt_free(x.dO), tt_free(x.dq), tt_free(x.dk);
	tt_free(x.dv), tt_free(x.rdq), tt_free(x.rdk), tt_free(x.rdv);
	tt_free(x.dg), tt_free(x.rdg);
}

/*
 * CLUSTERED ARGMAX under every gate, causal or not (GQA with the odd
 * gates), fp32, tagged @tag; @n counts the cases run so far (the pools
 * alternate), returned advanced
 */
static int argmax_cases(struct asam_ctx *ctx, struct asam_ctx *ctx16, int n,
			const char *tag)
{
	int nk = sizeof(kinds) / sizeof(kinds[0]), kk, gm, c;

	for (kk = 0; kk < nk; kk++) {
		if (kinds[kk].k != ASAM_PATTERN_CLUSTERED ||
		    kinds[kk].cm != ASAM_CLUSTER_ARGMAX)
			continue;
		for (gm = 0; gm < 4; gm++)
			for (c = 0; c < 2; c++, n++)
				run_case(n % 2 ? ctx16 : ctx, &kinds[kk], gm,
					 c, gm & 1, TT_F32,
					 &shapes[5 - 5 * c], tag);
	}
	return n;
}

int main(void)
{
	static const char *isas[] = { "avx512", "avx2", "generic" };
	const DLDataType dts[3] = { TT_F32, TT_F16, TT_BF16 };
	struct asam_ctx_opts o = { .sz = sizeof(o), .num_threads = 2 };
	struct asam_ctx_opts o16 = { .sz = sizeof(o), .num_threads = 16 };
	struct asam_ctx *ctx, *ctx16;
	int nk = sizeof(kinds) / sizeof(kinds[0]), kk, gm, c, q, t, n = 0, s;
	bool first = true;
	char buf[256];

	ksft_print_header();
	/*
	 * Two pools: with 2 workers the backward runs fused over (b, kv
	 * head); with 16 it splits into a dQ pass and dK/dV key chunks.
	 */
	if (asam_ctx_create(&o, &ctx) || asam_ctx_create(&o16, &ctx16))
		ksft_exit_skip("no context: %s\n", asam_last_error());
	asam_ctx_backends(ctx, buf, sizeof(buf));
	if (!strstr(buf, "cpu,") && strncmp(buf, "cpu", 3))
		ksft_exit_skip("fast cpu backend not probed (%s)\n", buf);
	for (s = 0; s < 3; s++) {
		if (fast_isa_force(isas[s]))
			continue;
		for (kk = 0; kk < nk; kk++)
			for (gm = 0; gm < 4; gm++)
				for (c = 0; c < 2; c++)
					for (q = 0; q < 2; q++)
						for (t = 0; t < 3; t++) {
							/* slower ISAs: f32, a slice */
							if (!first && (t || (gm + c + q) % 3))
								continue;
							run_case(n % 2 ? ctx16 : ctx,
								 &kinds[kk], gm, c, q,
								 dts[t], &shapes[n % 3],
								 isas[s]);
							n++;
						}
		first = false;
	}
	fast_isa_force(NULL);
	/*
	 * The per-row patterns again with their keys cut into chunks of 64
	 * (arch/cpu/fast-rows.c), so that the small shapes cross several
	 * chunks: the softmax merged across chunks, USER_INDEX lists
	 * bucketed, dQ summed over chunks, dK/dV per chunk.
	 */
	setenv("ASAM_CPU_ROWS_L2", "1", 1);
	for (kk = 0; kk < nk; kk++) {
		if (kinds[kk].k != ASAM_PATTERN_RANDOM_ROWS &&
		    kinds[kk].k != ASAM_PATTERN_USER_INDEX &&
		    kinds[kk].cm != ASAM_CLUSTER_SOFT)
			continue;
		for (gm = 0; gm < 4; gm++)
			for (c = 0; c < 2; c++)
				for (q = 0; q < 2; q++, n++)
					run_case(n % 2 ? ctx16 : ctx, &kinds[kk],
						 gm, c, q, dts[n % 3 ? 0 : n % 2 + 1],
						 &shapes[n % 3], "chunked");
	}
	unsetenv("ASAM_CPU_ROWS_L2");
	/*
	 * RANDOM_ROWS and USER_INDEX by key-major tiles (fast-kmajor.c):
	 * the backward's default, here the forward too (=1) and, with =0,
	 * the row walk, which the default backward no longer takes, and
	 * the forward row by row (ASAM_CPU_ROWS_SPLIT=0), not in its
	 * default three passes a tile.  Tiles of 7 rows, so that the small
	 * shapes cross several; then the row walk's passes in tiles of 5
	 * rows (ASAM_CPU_ROWS_RT), each pass in key chunks of 64
	 * (ASAM_CPU_ROWS_PASS=1: the lists bucketed or cut by chunk).
	 */
	for (t = 0; t < 3; t++) {
		setenv("ASAM_CPU_ROWS_KMAJOR", t ? "0" : "1", 1);
		setenv("ASAM_CPU_KM_RT", "7", 1);
		/* the row walk row by row (the default forward: in passes) */
		setenv("ASAM_CPU_ROWS_SPLIT", t == 1 ? "0" : "1", 1);
		if (t == 2) {
			setenv("ASAM_CPU_ROWS_RT", "5", 1);
			setenv("ASAM_CPU_ROWS_PASS", "1", 1);
		}
		for (kk = 0; kk < nk; kk++) {
			if (kinds[kk].k != ASAM_PATTERN_RANDOM_ROWS &&
			    kinds[kk].k != ASAM_PATTERN_USER_INDEX)
				continue;
			for (gm = 0; gm < 4; gm++)
				for (c = 0; c < 2; c++)
					for (q = 0; q < 2; q++, n++)
						run_case(n % 2 ? ctx16 : ctx,
							 &kinds[kk], gm, c, q,
							 dts[n % 3],
							 &shapes[n % 3],
							 t == 2 ? "row tiles" :
							 t ? "row walk" :
							 "key-major");
		}
		unsetenv("ASAM_CPU_KM_RT");
	}
	unsetenv("ASAM_CPU_ROWS_RT");
	unsetenv("ASAM_CPU_ROWS_PASS");
	unsetenv("ASAM_CPU_ROWS_KMAJOR");
	unsetenv("ASAM_CPU_ROWS_SPLIT");
	for (kk = 0; kk < nk; kk++) {
		if (kinds[kk].k != ASAM_PATTERN_USER_INDEX)
			continue;
		for (gm = 0; gm < 4; gm++)
			for (c = 0; c < 2; c++)
				for (q = 0; q < 2; q++, n++)
					run_case(n % 2 ? ctx16 : ctx, &kinds[kk],
						 gm, c, q, dts[0], &shapes[3],
						 "r>Nk");
	}
	/*
	 * USER_INDEX rows sorted through key bits (fast-rows.c,
	 * ASAM_CPU_UINDEX_SORT=1): many keys with several bit words, then
	 * the small shapes whole and in 64-key chunks.
	 */
	for (kk = 0; kk < nk; kk++) {
		if (kinds[kk].k != ASAM_PATTERN_USER_INDEX)
			continue;
		setenv("ASAM_CPU_UINDEX_SORT", "1", 1);
		for (gm = 0; gm < 4; gm++)
			for (c = 0; c < 2; c++, n++)
				run_case(n % 2 ? ctx16 : ctx, &kinds[kk], gm,
					 c, 0, dts[0], &shapes[4],
					 "sorted Nk 9000");
		for (gm = 0; gm < 4; gm++)
			for (c = 0; c < 2; c++)
				for (q = 0; q < 2; q++, n++) {
					if (q)
						setenv("ASAM_CPU_ROWS_L2", "1", 1);
					run_case(n % 2 ? ctx16 : ctx,
						 &kinds[kk], gm, c, q,
						 dts[0], &shapes[n % 3],
						 q ? "sorted chunked" :
						 "sorted");
					unsetenv("ASAM_CPU_ROWS_L2");
				}
		unsetenv("ASAM_CPU_UINDEX_SORT");
	}
	/*
	 * STRIDED / HIERARCHICAL global columns and ARGMAX cluster buckets
	 * span several segments here: a worker keeps the segments it
	 * gathered for the next groups (fast_gather), forward and
	 * backward, causal groups reusing the whole ones of a shorter
	 * prefix.
	 */
	for (kk = 0; kk < nk; kk++) {
		if (kinds[kk].k != ASAM_PATTERN_STRIDED &&
		    kinds[kk].k != ASAM_PATTERN_HIERARCHICAL &&
		    (kinds[kk].k != ASAM_PATTERN_CLUSTERED ||
		     kinds[kk].cm != ASAM_CLUSTER_ARGMAX))
			continue;
		for (gm = 0; gm < 4; gm++)
			for (c = 0; c < 2; c++, n++)
				run_case(n % 2 ? ctx16 : ctx, &kinds[kk], gm,
					 c, 0, dts[0], &shapes[5], "segments");
	}
	/*
	 * CLUSTERED ARGMAX with its output rows streamed (fwd_stream_row,
	 * ASAM_CPU_O_STREAM=1: O here is smaller than the L2 caches that
	 * keep it by default), GQA too
	 */
	setenv("ASAM_CPU_O_STREAM", "1", 1);
	align_o = true;
	n = argmax_cases(ctx, ctx16, n, "streamed");
	align_o = false;
	unsetenv("ASAM_CPU_O_STREAM");
	/*
	 * CLUSTERED ARGMAX causal buckets scored whole by the narrower ISAs
	 * (the slice above runs few): a row's keys end inside its bucket,
	 * and row_exp clears only to the end of its VW-lane vector
	 */
	for (s = 1; s < 3; s++) {
		if (fast_isa_force(isas[s]))
			continue;
		for (kk = 0; kk < nk; kk++) {
			if (kinds[kk].k != ASAM_PATTERN_CLUSTERED ||
			    kinds[kk].cm != ASAM_CLUSTER_ARGMAX)
				continue;
			for (t = 0; t < 3; t++, n++)
				run_case(n % 2 ? ctx16 : ctx, &kinds[kk],
					 ASAM_GATE_SPARSE, true, t == 1,
					 dts[0], &shapes[t ? t - 1 : 5],
					 isas[s]);
		}
	}
	fast_isa_force(NULL);
	/* CLUSTERED ARGMAX buckets by the online step, not scored whole */
	setenv("ASAM_CPU_BUCKET_WHOLE", "0", 1);
	n = argmax_cases(ctx, ctx16, n, "online");
	unsetenv("ASAM_CPU_BUCKET_WHOLE");
	/* the same, with bands too wide to gather: direct blocks */
	wide_band = true;
	for (kk = 0; kk < nk; kk++) {
		if (kinds[kk].k != ASAM_PATTERN_STRIDED &&
		    kinds[kk].k != ASAM_PATTERN_HIERARCHICAL)
			continue;
		for (gm = 0; gm < 4; gm++)
			for (c = 0; c < 2; c++, n++)
				run_case(n % 2 ? ctx16 : ctx, &kinds[kk], gm,
					 c, 0, dts[0], &shapes[5 - c],
					 "wide band");
	}
	wide_band = false;
	/*
	 * The forward's three passes with 1024-row tiles (the default where
	 * the L2 is 2 MB) and rows of 300 keys: the scores would pass the 1
	 * MB buffer, so the tile shrinks (fast_rows_split) and keeps its
	 * passes; the 2-thread context's tiles reach 1024 rows here.
	 */
	setenv("ASAM_CPU_ROWS_RT", "1024", 1);
	long_rows = 300;
	for (kk = 0; kk < nk; kk++) {
		if (kinds[kk].k != ASAM_PATTERN_RANDOM_ROWS)
			continue;
		for (gm = 0; gm < 4; gm++, n++)
			run_case(ctx, &kinds[kk], gm, gm & 1, 0,
				 dts[0], &shapes[6], "long rows");
	}
	long_rows = 0;
	unsetenv("ASAM_CPU_ROWS_RT");
	asam_ctx_destroy(ctx);
	asam_ctx_destroy(ctx16);
	if (failures)
		ksft_print_msg("%d failures (seed %llu)\n", failures,
			       (unsigned long long)tt_seed_used());
	ksft_finished();
}
