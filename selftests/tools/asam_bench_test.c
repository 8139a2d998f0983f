// SPDX-License-Identifier: MIT
/*
 * asam-bench --gpu without a GPU: its command line, the cases the grid
 * expands to, the FLOP arithmetic and JSON lines, and its fast count of
 * allowed pairs against the brute-force count (asam_pattern_stats(), which
 * builds every row; selftests/pattern checks that one against SPEC 3) for
 * every pattern kind, small N, Nq != Nk, causal, GQA and lengths.  The
 * GPU part (a tiny timed run) SKIPs where no CUDA device answers.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../tools/asam-bench-gpu.h"
#include "../lib/kselftest.h"
#include "../lib/testutil.h"

#define ARGV(...) ((char *[]){ "asam-bench", __VA_ARGS__, NULL })
#define ARGC(...) ((int)(sizeof((char *[]){ "asam-bench", __VA_ARGS__ }) / \
			 sizeof(char *)))
#define PARSE(o, ...) bench_parse(ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), o, \
				  err, sizeof(err))

static char err[256];

static void test_parse(void)
{
	struct bench_opts o;
	int ret;

	ret = PARSE(&o, "--gpu");
	ksft_test_result(!ret && o.patterns == (1u << ASAM_PATTERN_NR_KINDS) - 1 &&
			 o.gates == 7 && !o.nshapes && o.reps == 5 &&
			 o.warmup == 2 && !o.bwd && !o.json && !o.fp16 &&
			 o.keys_per_row == 128 && o.clusters == 32,
			 "parse: defaults\n");
	ret = PARSE(&o, "--gpu", "--pattern", "local,random_rows", "--gate",
		    "soft,hard", "--shape", "2,16,16384,128", "--shape",
		    "1,4,100,64", "--bwd", "--json", "--causal", "--fp16",
		    "--warmup", "0", "--reps", "7", "--device", "1", "--keys",
		    "32", "--clusters", "8");
	ksft_test_result(!ret && o.patterns == ((1u << ASAM_PATTERN_LOCAL) |
			 (1u << ASAM_PATTERN_RANDOM_ROWS)) &&
			 o.gates == ((1u << BENCH_GATE_SOFT) |
				     (1u << BENCH_GATE_HARD)) &&
			 o.nshapes == 2 && o.shapes[0].B == 2 &&
			 o.shapes[0].H == 16 && o.shapes[0].N == 16384 &&
			 o.shapes[0].d == 128 && o.shapes[1].N == 100 &&
			 o.shapes[1].d == 64 && o.bwd && o.json && o.causal &&
			 o.fp16 && o.warmup == 0 && o.reps == 7 &&
			 o.device == 1 && o.keys_per_row == 32 &&
			 o.clusters == 8, "parse: every option\n");
	ret = PARSE(&o, "--pattern", "all");
	ksft_test_result(!ret && o.patterns == (1u << ASAM_PATTERN_NR_KINDS) - 1,
			 "parse: --pattern all\n");
	ksft_test_result(PARSE(&o, "--help") == 1, "parse: --help\n");

	{
		static const char *const bad[][2] = {
			{ "--shape", "1,2,3" }, { "--shape", "1,2,3,4,5" },
			{ "--shape", "1,x,3,4" }, { "--shape", "1,,3,4" },
			{ "--shape", "0,1,1,1" }, { "--reps", "0" },
			{ "--reps", "5x" }, { "--warmup", "-1" },
			{ "--pattern", "nope" }, { "--pattern", "local,nope" },
			{ "--pattern", "," }, { "--gate", "dense" },
			{ "--clusters", "257" }, { "--bogus", "1" },
		};
		size_t i;
		int nbad = 0;

		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			char *av[] = { "asam-bench", (char *)bad[i][0],
				       (char *)bad[i][1], NULL };

			err[0] = 0;
			if (bench_parse(3, av, &o, err, sizeof(err)) != -EINVAL ||
			    !err[0]) {
				ksft_print_msg("accepted %s %s\n", bad[i][0],
					       bad[i][1]);
				nbad++;
			}
		}
		err[0] = 0;
		ret = PARSE(&o, "--reps");
		ksft_test_result(!nbad && ret == -EINVAL &&
				 strstr(err, "needs a value"),
				 "parse: %zu bad values refused with a message\n",
				 i + 1);
	}
}

static void test_plan(void)
{
	static struct bench_case c[BENCH_MAX_CASES];
	struct bench_opts o;
	int n, i, soft = 0, hard = 0, local64 = 0, dense = 0;

	PARSE(&o, "--gpu");
	n = bench_plan(&o, c, BENCH_MAX_CASES);
	for (i = 0; i < n; i++) {
		soft += c[i].gate == BENCH_GATE_SOFT;
		hard += c[i].gate == BENCH_GATE_HARD;
		local64 += c[i].kind == ASAM_PATTERN_LOCAL &&
			   c[i].s.N == 65536 && c[i].s.B == 1;
		dense += c[i].kind == ASAM_PATTERN_DENSE &&
			 c[i].gate == BENCH_GATE_SPARSE;
		if (c[i].gate != BENCH_GATE_SPARSE &&
		    (c[i].s.N != 16384 || c[i].s.B != 2))
			soft = -100;
	}
	/* 3 dense + 2 local + 6 others, SOFT and HARD on 8 target shapes */
	ksft_test_result(n == 11 + 16 && soft == 8 && hard == 8 &&
			 local64 == 1 && dense == 3,
			 "plan: the peers' grid (%d cases)\n", n);
	PARSE(&o, "--pattern", "dense,clustered", "--gate", "sparse,hard",
	      "--shape", "1,2,3,64", "--shape", "4,5,6,128");
	n = bench_plan(&o, c, BENCH_MAX_CASES);
	ksft_test_result(n == 8 && c[0].kind == ASAM_PATTERN_DENSE &&
			 c[0].gate == BENCH_GATE_SPARSE && c[0].s.N == 3 &&
			 c[1].gate == BENCH_GATE_HARD && c[2].s.N == 6 &&
			 c[7].kind == ASAM_PATTERN_CLUSTERED &&
			 c[7].gate == BENCH_GATE_HARD && c[7].s.d == 128 &&
			 bench_plan(&o, c, 3) == 3,
			 "plan: explicit shapes x gates, capped\n");
}

static void test_json(void)
{
	struct bench_result r = {
		.c = { ASAM_PATTERN_LOCAL, BENCH_GATE_SOFT,
		       { 2, 16, 16384, 128 } },
		.device = "NVIDIA H200", .dtype = "bf16", .reps = 5,
		.allowed = 1000000000, .masked = 4000000000u,
		.fwd_ms = 2.0, .fwdbwd_ms = -1, .status = "ok", .msg = "",
	};
	const char *want =
		"{\"tool\":\"asam-bench\",\"mode\":\"gpu\",\"device\":\"NVIDIA H200\","
		"\"pattern\":\"local\",\"gate\":\"soft\",\"B\":2,\"H\":16,"
		"\"N\":16384,\"d\":128,\"dtype\":\"bf16\",\"causal\":false,"
		"\"reps\":5,\"allowed\":1000000000,\"masked\":4000000000,"
		"\"density\":0.25,\"fwd_ms\":2,\"fwd_tflops\":256,"
		"\"fwdbwd_ms\":null,\"fwdbwd_tflops\":null,"
		"\"status\":\"ok\",\"error\":\"\"}";
	char buf[2048];
	int n;

	/* 4 d per pair forward, 14 d forward + backward */
	ksft_test_result(bench_flops(1000, 64, false) == 256000.0 &&
			 bench_flops(1000, 64, true) == 896000.0 &&
			 fabs(bench_tflops(1e12, 1000) - 1.0) < 1e-12 &&
			 bench_tflops(1e12, 0) == 0,
			 "flops: 4 d forward, 14 d forward+backward\n");
	n = bench_json(buf, sizeof(buf), &r);
	if (n < 0 || strcmp(buf, want))
		ksft_print_msg("got  %s\nwant %s\n", buf, want);
	ksft_test_result(n == (int)strlen(want) && !strcmp(buf, want),
			 "json: one result line\n");
	r.status = "unsupported";
	r.fwd_ms = -1;
	r.msg = "asam_attn_fwd: \"strided\" has no\tkernel \\ yet";
	n = bench_json(buf, sizeof(buf), &r);
	ksft_test_result(n > 0 && strstr(buf, "\"status\":\"unsupported\"") &&
			 strstr(buf, "\"fwd_ms\":null") &&
			 strstr(buf, "\\\"strided\\\" has no\\u0009kernel "
				     "\\\\ yet\""),
			 "json: escaped message, nulls\n");
	ksft_test_result(bench_json(buf, 40, &r) == -ENOSPC,
			 "json: short buffer refused\n");
}

/* ---- the pair count against asam_pattern_stats ---- */

struct cfg {
	int B, Hq, Hkv, Nq, Nk;
	bool causal, lengths;
};

static int count_case(struct asam_ctx *ctx, enum asam_pattern_kind kind,
		      const struct cfg *c, int variant, char *what,
		      size_t len)
{
	const int d = 16;
	struct tt *q = tt_new4(TT_F32, c->B, c->Hq, c->Nq, d);
	struct tt *k = tt_new4(TT_F32, c->B, c->Hkv, c->Nk, d);
	struct tt *cent = NULL, *ix = NULL, *lq = NULL, *lk = NULL;
	struct asam_pattern pat;
	struct asam_attn_params prm = { .sz = sizeof(prm), .pattern = &pat,
					.causal = c->causal };
	struct asam_fwd_args a = { .sz = sizeof(a), .q = &q->dl, .k = &k->dl };
	struct asam_pattern_stats st = { .sz = sizeof(st) };
	float w[8 * 3];
	uint64_t allowed = 0, masked = 0;
	int ret, i;

	tt_fill_randn(q, 1);
	tt_fill_randn(k, 1);
	asam_pattern_init(&pat, kind);
	switch (kind) {
	case ASAM_PATTERN_LOCAL:
		pat.window = variant ? 7 : 40;
		break;
	case ASAM_PATTERN_STRIDED:
		pat.stride = variant ? 5 : 32;
		pat.radius = variant ? 0 : 16;
		break;
	case ASAM_PATTERN_HIERARCHICAL:
		if (variant) {	/* per-head weights, unequal */
			for (i = 0; i < c->Hq * 3; i++)
				w[i] = (float)((i % 3) + 1) / 6.0f;
			pat.scale_weights = w;
		}
		break;
	case ASAM_PATTERN_RANDOM:
	case ASAM_PATTERN_RANDOM_ROWS:
		pat.keys_per_row = variant ? 100 : 16;
		pat.seed = 7 + variant;
		break;
	case ASAM_PATTERN_CLUSTERED: {
		int64_t shape[3] = { c->Hq, 5, d };

		cent = tt_new(TT_F32, 3, shape);
		tt_fill_randn(cent, 1);
		pat.num_clusters = 5;
		pat.centroids = &cent->dl;
		pat.cluster_mode = variant ? ASAM_CLUSTER_SOFT
					   : ASAM_CLUSTER_ARGMAX;
		break;
	}
	case ASAM_PATTERN_USER_INDEX: {
		int64_t shape[4] = { c->B, c->Hkv, c->Nq, 6 }, n;

		ix = tt_new(TT_I32, 4, shape);
		/* -1s and repeats: each key counts once */
		for (n = 0; n < tt_numel(ix); n++)
			tt_set(ix, n, n % 6 == 5 ? -1 : n % 6 == 4 ?
			       tt_get(ix, n - 1) :
			       (int)(tt_uniform() * c->Nk));
		pat.index = &ix->dl;
		break;
	}
	default:
		break;
	}
	if (c->lengths) {
		int64_t shape[1] = { c->B };
		int b;

		lq = tt_new(TT_I32, 1, shape);
		lk = tt_new(TT_I32, 1, shape);
		for (b = 0; b < c->B; b++) {
			tt_set(lq, b, c->Nq - b * (c->Nq / 3));
			tt_set(lk, b, c->Nk - b * (c->Nk / 4));
		}
		a.len_q = &lq->dl;
		a.len_k = &lk->dl;
	}
	snprintf(what, len, "%s%s B%d H%d/%d Nq%d Nk%d%s%s",
		 asam_pattern_name(kind), variant ? "'" : "", c->B, c->Hq,
		 c->Hkv, c->Nq, c->Nk, c->causal ? " causal" : "",
		 c->lengths ? " lengths" : "");
	ret = asam_pattern_stats(ctx, &prm, &a, &st);
	if (ret == -EOPNOTSUPP) {
		ret = 1;	/* left out of this build */
		goto out;
	}
	if (ret) {
		ksft_print_msg("%s: stats: %s\n", what, asam_last_error());
		goto out;
	}
	ret = bench_count(&prm, &a, 1 + variant * 3, &allowed, &masked);
	if (ret) {
		ksft_print_msg("%s: count: %s\n", what, asam_last_error());
		goto out;
	}
	if (allowed != st.allowed || masked != st.masked) {
		ksft_print_msg("%s: count %" PRIu64 "/%" PRIu64
			       ", brute force %" PRIu64 "/%" PRIu64 "\n",
			       what, allowed, masked, st.allowed, st.masked);
		ret = -EDOM;
	}
out:
	tt_free(q), tt_free(k), tt_free(cent), tt_free(ix);
	tt_free(lq), tt_free(lk);
	return ret;
}

static void test_count(void)
{
	static const struct cfg cfgs[] = {
		{ 1, 1, 1, 1, 1, false, false },
		{ 2, 2, 2, 63, 63, false, false },
		{ 1, 2, 1, 64, 64, true, false },
		{ 1, 2, 2, 65, 65, false, false },
		{ 2, 4, 2, 100, 150, false, false },
		{ 2, 4, 2, 100, 150, true, false },
		{ 1, 2, 2, 150, 100, true, false },
		{ 2, 2, 1, 200, 200, true, true },
		{ 2, 3, 3, 130, 190, false, true },
	};
	struct asam_ctx_opts co = { .sz = sizeof(co), .log_level = -1,
				    .devices = "cpu" };
	struct asam_ctx *ctx;
	int k, v;
	size_t i;

	if (asam_ctx_create(&co, &ctx)) {
		ksft_test_result_fail("count: context: %s\n",
				      asam_last_error());
		return;
	}
	for (k = 0; k < ASAM_PATTERN_NR_KINDS; k++)
		for (v = 0; v < 2; v++) {
			int bad = 0, done = 0, skipped = 0;
			char what[160] = "";

			if (v && (k == ASAM_PATTERN_DENSE ||
				  k == ASAM_PATTERN_USER_INDEX))
				continue;
			for (i = 0; i < sizeof(cfgs) / sizeof(cfgs[0]); i++) {
				int ret = count_case(ctx,
					(enum asam_pattern_kind)k, &cfgs[i], v,
					what, sizeof(what));

				skipped += ret == 1;
				bad += ret < 0;
				done += !ret;
			}
			if (skipped && !done && !bad)
				ksft_test_result_skip("count: %s%s: left out of this build\n",
						      asam_pattern_name(
						      (enum asam_pattern_kind)k),
						      v ? "'" : "");
			else
				ksft_test_result(!bad && done,
						 "count: %s%s = brute force (%d shapes)\n",
						 asam_pattern_name(
						 (enum asam_pattern_kind)k),
						 v ? "'" : "", done);
		}
	asam_ctx_destroy(ctx);
}

static void test_gpu(void)
{
	int ret = bench_gpu_main(ARGC("--gpu", "--pattern", "dense,local",
				      "--shape", "1,2,256,64", "--gate",
				      "sparse,soft", "--bwd", "--warmup", "1",
				      "--reps", "2"),
				 ARGV("--gpu", "--pattern", "dense,local",
				      "--shape", "1,2,256,64", "--gate",
				      "sparse,soft", "--bwd", "--warmup", "1",
				      "--reps", "2"));

	if (ret == 4)
		ksft_test_result_skip("gpu: no CUDA device here\n");
	else
		ksft_test_result(!ret, "gpu: a tiny timed run (exit %d)\n",
				 ret);
}

int main(void)
{
	ksft_print_header();
	ksft_set_plan(11 + 14 + 1);
	test_parse();
	test_plan();
	test_json();
	test_count();
	test_gpu();
	ksft_finished();
}
