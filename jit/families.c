// SPDX-License-Identifier: MIT
/*
 * The kernel families.  Adding one is an entry in asam_jit_families[] and
 * its variants() function, which enumerates every spec the build's .config
 * enables (asam-cache precompile and the selftests compile exactly those).
 */
#include <string.h>

#include <internal/compiler.h>
#include <internal/jit.h>
#include <internal/kconfig.h>

/* The storage dtypes the .config enables, as ASAM_DT_* numbers. */
static int enabled_dtypes(int *dt)
{
	int n = 0;

	dt[n++] = 0;
	if (IS_ENABLED(CONFIG_DTYPE_FP16))
		dt[n++] = 1;
	if (IS_ENABLED(CONFIG_DTYPE_BF16))
		dt[n++] = 2;
	return n;
}

static int selftest_variants(const struct asam_jit_variant_ctx *vc, int arch,
			     asam_jit_variant_cb cb, void *arg)
{
	static const int blocks[] = { 128, 256 };
	struct asam_jit_spec spec;
	int dt[3], ndt, i, j, err;

	ndt = enabled_dtypes(dt);
	for (i = 0; i < ndt; i++) {
		for (j = 0; j < (int)ARRAY_SIZE(blocks); j++) {
			err = asam_jit_spec_init(&spec, vc->family->name, arch);
			err = err ?: asam_jit_spec_set(&spec, "DTYPE", dt[i]);
			err = err ?: asam_jit_spec_set(&spec, "BLOCK",
						       blocks[j]);
			err = err ?: asam_jit_spec_set(&spec, "SEQ_BUCKET",
						       4096);
			err = err ?: cb(&spec, arg);
			if (err)
				return err;
		}
	}
	return 0;
}

/*
 * Attention: what arch/cuda/attn.c asks for.  Forward: 128-row tiles with
 * 4 warps (SOFT: 64 rows); backward: 64 x 64 tiles and its preprocess
 * (the forward with BWD_PRE).  Enumerated here (for asam-cache precompile
 * and the compile-everything test): head dims 64 and 128, fp16/bf16 as
 * configured, causal or not, the DENSE pattern with the DENSE gate.  The
 * sparse patterns and the other gate modes (PATTERN 1, 4; GATE_MODE 0-3)
 * are the same source with other constants and compile on first use; all
 * 240 of them per arch would outgrow the test's time budget.
 */
static int attn_variants(const struct asam_jit_variant_ctx *vc, int arch,
			 asam_jit_variant_cb cb, void *arg)
{
	static const int dims[] = { 64, 128 };
	bool bwd = !strcmp(vc->family->name, "attn_bwd");
	struct asam_jit_spec spec;
	int dt[3], ndt, i, j, c, pre, err;

	ndt = enabled_dtypes(dt);
	for (i = 1; i < ndt; i++)		/* fp16, bf16 only */
	for (j = 0; j < (int)ARRAY_SIZE(dims); j++)
	for (c = 0; c < 2; c++)
	for (pre = 0; pre < (bwd ? 1 : 2); pre++) {
		int bm = bwd || pre ? 64 : 128;

		err = asam_jit_spec_init(&spec, vc->family->name, arch);
		err = err ?: asam_jit_spec_set(&spec, "HEAD_DIM", dims[j]);
		err = err ?: asam_jit_spec_set(&spec, "DTYPE", dt[i]);
		err = err ?: asam_jit_spec_set(&spec, "CAUSAL", c);
		err = err ?: asam_jit_spec_set(&spec, "GATE_MODE", 1);
		err = err ?: asam_jit_spec_set(&spec, "PATTERN", 0);
		err = err ?: asam_jit_spec_set(&spec, "BLOCK_M", bm);
		err = err ?: asam_jit_spec_set(&spec, "BLOCK_N", 64);
		err = err ?: asam_jit_spec_set(&spec, "NUM_WARPS", 4);
		if (pre)
			err = err ?: asam_jit_spec_set(&spec, "BWD_PRE", 1);
		err = err ?: cb(&spec, arg);
		if (err)
			return err;
	}
	return 0;
}

/*
 * Row lists (arch/cuda/attn_rows.c): RANDOM_ROWS one head a warp, and
 * USER_INDEX two heads of a GQA group a warp, d 64 and 128, fp16/bf16,
 * the SPARSE gate, not causal; the other gates, causal and group sizes
 * (1, 2, 4) are the same source and compile on first use.
 */
static int rows_variants(const struct asam_jit_variant_ctx *vc, int arch,
			 asam_jit_variant_cb cb, void *arg)
{
	static const int dims[] = { 64, 128 };
	struct asam_jit_spec spec;
	int dt[3], ndt, i, j, k, err;

	ndt = enabled_dtypes(dt);
	for (i = 1; i < ndt; i++)
	for (j = 0; j < (int)ARRAY_SIZE(dims); j++)
	for (k = 0; k < 2; k++) {
		err = asam_jit_spec_init(&spec, vc->family->name, arch);
		err = err ?: asam_jit_spec_set(&spec, "HEAD_DIM", dims[j]);
		err = err ?: asam_jit_spec_set(&spec, "DTYPE", dt[i]);
		err = err ?: asam_jit_spec_set(&spec, "CAUSAL", 0);
		err = err ?: asam_jit_spec_set(&spec, "GATE_MODE", 0);
		err = err ?: asam_jit_spec_set(&spec, "PATTERN", k ? 7 : 5);
		err = err ?: asam_jit_spec_set(&spec, "BLOCK_M", 4);
		err = err ?: asam_jit_spec_set(&spec, "BLOCK_N", 64);
		err = err ?: asam_jit_spec_set(&spec, "NUM_WARPS", 4);
		err = err ?: asam_jit_spec_set(&spec, "GROUP", k ? 2 : 1);
		err = err ?: cb(&spec, arg);
		if (err)
			return err;
	}
	return 0;
}

/*
 * The Hopper forward (arch/cuda/attn_sm90.c): DENSE pattern, SPARSE or
 * DENSE gate, head dims 64 and 128, fp16/bf16, causal or not, the two
 * warpgroups in step or staggered at d 128 (d 64: in step, two blocks an
 * SM); tiles of 128 queries by 128 keys.
 * Then the tile-list patterns (LOCAL 1, RANDOM 4; STRIDED 2 and
 * HIERARCHICAL 3, half their combinations) with the SPARSE and HARD (3)
 * gates on 64-key tiles, in step (the host never staggers a
 * list), two blocks an SM, bf16 only (each variant costs seconds on CI).
 */
static int attn_sm90_variants(const struct asam_jit_variant_ctx *vc,
			      int arch, asam_jit_variant_cb cb, void *arg)
{
	static const int dims[] = { 64, 128 };
	struct asam_jit_spec spec;
	int dt[3], ndt, i, j, c, g, st, err;

	ndt = enabled_dtypes(dt);
	for (i = 1; i < ndt; i++)		/* fp16, bf16 only */
	for (j = 0; j < (int)ARRAY_SIZE(dims); j++)
	for (c = 0; c < 2; c++)
	for (g = 0; g < 2; g++)
	for (st = 0; st < 2; st++) {
		if (dims[j] == 64 && st)
			continue;	/* d 64: in step, two blocks an SM */
		err = asam_jit_spec_init(&spec, vc->family->name, arch);
		err = err ?: asam_jit_spec_set(&spec, "HEAD_DIM", dims[j]);
		err = err ?: asam_jit_spec_set(&spec, "DTYPE", dt[i]);
		err = err ?: asam_jit_spec_set(&spec, "CAUSAL", c);
		err = err ?: asam_jit_spec_set(&spec, "GATE_MODE", g);
		err = err ?: asam_jit_spec_set(&spec, "PATTERN", 0);
		err = err ?: asam_jit_spec_set(&spec, "BLOCK_M", 128);
		err = err ?: asam_jit_spec_set(&spec, "BLOCK_N", 128);
		err = err ?: asam_jit_spec_set(&spec, "NUM_WARPS", 8);
		err = err ?: asam_jit_spec_set(&spec, "STAGGER", st);
		if (!err && dims[j] == 64)
			err = asam_jit_spec_set(&spec, "MIN_BLOCKS", 2);
		err = err ?: cb(&spec, arg);
		if (err)
			return err;
	}
	if (ndt < 2)
		return 0;
	/* LOCAL, RANDOM, the column patterns, CLUSTERED's bucket walk */
	for (i = 0; i < 5; i++)
	for (j = 0; j < (int)ARRAY_SIZE(dims); j++)
	for (g = 0; g < 2; g++)			/* SPARSE, HARD */
	for (c = 0; c < 2; c++) {
		static const int pats[] = { 1, 4, 2, 3, 6 };

		if (i >= 2 && (g + c + j) & 1)
			continue;	/* half the column and cluster ones */
		err = asam_jit_spec_init(&spec, vc->family->name, arch);
		err = err ?: asam_jit_spec_set(&spec, "HEAD_DIM", dims[j]);
		err = err ?: asam_jit_spec_set(&spec, "DTYPE", dt[ndt - 1]);
		err = err ?: asam_jit_spec_set(&spec, "CAUSAL", c);
		err = err ?: asam_jit_spec_set(&spec, "GATE_MODE", 3 * g);
		err = err ?: asam_jit_spec_set(&spec, "PATTERN", pats[i]);
		err = err ?: asam_jit_spec_set(&spec, "BLOCK_M", 128);
		err = err ?: asam_jit_spec_set(&spec, "BLOCK_N", 64);
		err = err ?: asam_jit_spec_set(&spec, "NUM_WARPS", 8);
		err = err ?: asam_jit_spec_set(&spec, "STAGGER", 0);
		err = err ?: asam_jit_spec_set(&spec, "MIN_BLOCKS", 2);
		err = err ?: cb(&spec, arg);
		if (err)
			return err;
	}
	return 0;
}

/*
 * One variant of the Hopper backward: 64 keys a warpgroup; 128-row query
 * tiles for the dense walk at d = 64 (@bm 0: what attn_sm90.c picks).
 */
static int bwd_sm90_one(const struct asam_jit_variant_ctx *vc, int arch,
			int d, int dt, int causal, int gate, int pat, int bn,
			int bm, asam_jit_variant_cb cb, void *arg)
{
	struct asam_jit_spec spec;
	int err = asam_jit_spec_init(&spec, vc->family->name, arch);

	err = err ?: asam_jit_spec_set(&spec, "HEAD_DIM", d);
	err = err ?: asam_jit_spec_set(&spec, "DTYPE", dt);
	err = err ?: asam_jit_spec_set(&spec, "CAUSAL", causal);
	err = err ?: asam_jit_spec_set(&spec, "GATE_MODE", gate);
	err = err ?: asam_jit_spec_set(&spec, "PATTERN", pat);
	if (!bm)
		bm = !pat && d == 64 && bn == 128 ? 128 : 64;
	err = err ?: asam_jit_spec_set(&spec, "BLOCK_M", bm);
	err = err ?: asam_jit_spec_set(&spec, "BLOCK_N", bn);
	err = err ?: asam_jit_spec_set(&spec, "NUM_WARPS", bn / 16);
	return err ?: cb(&spec, arg);
}

/*
 * The Hopper backward (arch/cuda/attn_sm90.c): 64-row query tiles (128
 * for the dense walk at d = 64, and 64 there once);
 * without lists (the DENSE pattern or gate) 128 keys a block, every head
 * dim, dtype and mask with the SPARSE gate, SOFT's two branches at bf16;
 * LOCAL's, RANDOM's and HIERARCHICAL's (the band; STRIDED is the same
 * source without the vote) lists with the SPARSE gate at bf16, 64 keys a
 * block (one warpgroup); HIERARCHICAL's column entries' kernel, 128 a
 * block.
 */
static int attn_bwd_sm90_variants(const struct asam_jit_variant_ctx *vc,
				  int arch, asam_jit_variant_cb cb, void *arg)
{
	static const int dims[] = { 64, 128 };
	int dt[3], ndt, i, j, c, g, err;

	ndt = enabled_dtypes(dt);
	for (i = 1; i < ndt; i++)		/* fp16, bf16 only */
	for (j = 0; j < (int)ARRAY_SIZE(dims); j++)
	for (c = 0; c < 2; c++)
	for (g = 0; g <= 2; g += 2) {
		if (g && i != ndt - 1)
			continue;
		err = bwd_sm90_one(vc, arch, dims[j], dt[i], c, g, 0, 128, 0,
				   cb, arg);
		if (err)
			return err;
	}
	if (ndt < 2)
		return 0;
	/* d = 64's 64-row tiles (ASAM_CUDA_SM90_BWD_BM=1) */
	err = bwd_sm90_one(vc, arch, 64, dt[ndt - 1], 0, 0, 0, 128, 64, cb,
			   arg);
	if (err)
		return err;
	for (i = 0; i < 3; i++)		/* LOCAL, RANDOM, HIERARCHICAL */
	for (j = 0; j < (int)ARRAY_SIZE(dims); j++)
	for (c = 0; c < 2; c++) {
		static const int pats[] = { 1, 4, 3 };

		err = bwd_sm90_one(vc, arch, dims[j], dt[ndt - 1], c, 0,
				   pats[i], 64, 64, cb, arg);
		if (err)
			return err;
	}
	/* CLUSTERED's bucket walk: 64-slot key tiles */
	for (j = 0; j < (int)ARRAY_SIZE(dims); j++) {
		err = bwd_sm90_one(vc, arch, dims[j], dt[ndt - 1], 1, 0, 6,
				   64, 64, cb, arg);
		if (err)
			return err;
	}
	/* the column entries' kernel: 128 a block (two warpgroups) */
	for (j = 0; j < (int)ARRAY_SIZE(dims); j++) {
		err = bwd_sm90_one(vc, arch, dims[j], dt[ndt - 1], 1, 0, 3,
				   128, 64, cb, arg);
		if (err)
			return err;
	}
	return 0;
}

/*
 * STRIDED and HIERARCHICAL (PATTERN 2, 3: the band plus gathered columns)
 * add code of their own to both families.  HIERARCHICAL runs all of it
 * (STRIDED is the same source without the per-pair vote), so enumerate
 * HIERARCHICAL once per family: the forward with the SPARSE gate (the
 * column walk, 32 rows a warp) and the backward with the SOFT gate (the
 * column dQ walk, the column dK/dV kernel, dg); bf16, d 128, causal.
 * The compile-everything test runs on small CI machines: each variant
 * costs seconds there.
 */
static int attn_cols_variants(const struct asam_jit_variant_ctx *vc,
			      int arch, asam_jit_variant_cb cb, void *arg)
{
	bool bwd = !strcmp(vc->family->name, "attn_bwd");
	struct asam_jit_spec spec;
	int dt[3], ndt, err;

	ndt = enabled_dtypes(dt);
	if (ndt < 2)
		return 0;
	err = asam_jit_spec_init(&spec, vc->family->name, arch);
	err = err ?: asam_jit_spec_set(&spec, "HEAD_DIM", 128);
	err = err ?: asam_jit_spec_set(&spec, "DTYPE", dt[ndt - 1]);
	err = err ?: asam_jit_spec_set(&spec, "CAUSAL", 1);
	err = err ?: asam_jit_spec_set(&spec, "GATE_MODE", bwd ? 2 : 0);
	err = err ?: asam_jit_spec_set(&spec, "PATTERN", 3);
	err = err ?: asam_jit_spec_set(&spec, "BLOCK_M", bwd ? 64 : 128);
	err = err ?: asam_jit_spec_set(&spec, "BLOCK_N", 64);
	err = err ?: asam_jit_spec_set(&spec, "NUM_WARPS", 4);
	return err ?: cb(&spec, arg);
}

static int attn_all_variants(const struct asam_jit_variant_ctx *vc, int arch,
			     asam_jit_variant_cb cb, void *arg)
{
	return attn_variants(vc, arch, cb, arg) ?:
	       attn_cols_variants(vc, arch, cb, arg);
}

/*
 * CLUSTERED's assignment, sort, k-means and GQA sum: head dims 64 and 128,
 * fp16/bf16 tokens, centroids in fp32 or the tokens' dtype (CDT: enum
 * asam_dtype; fp64 centroids compile on first use).
 */
static int clus_variants(const struct asam_jit_variant_ctx *vc, int arch,
			 asam_jit_variant_cb cb, void *arg)
{
	static const int dims[] = { 64, 128 };
	struct asam_jit_spec spec;
	int dt[3], ndt, i, j, c, err;

	ndt = enabled_dtypes(dt);
	for (i = 1; i < ndt; i++)
	for (j = 0; j < (int)ARRAY_SIZE(dims); j++)
	for (c = 0; c < 2; c++) {
		err = asam_jit_spec_init(&spec, vc->family->name, arch);
		err = err ?: asam_jit_spec_set(&spec, "HEAD_DIM", dims[j]);
		err = err ?: asam_jit_spec_set(&spec, "DTYPE", dt[i]);
		err = err ?: asam_jit_spec_set(&spec, "CDT", c ? dt[i] : 3);
		err = err ?: cb(&spec, arg);
		if (err)
			return err;
	}
	return 0;
}

const struct asam_jit_family asam_jit_families[] = {
	{
		.name = "selftest",
		.source = "selftest.cu",
		.entries = { "asam_selftest_axpy", "asam_selftest_rowsum" },
		.hopper_only = false,
		.variants = selftest_variants,
	},
	/* attention families are appended here */
	{
		.name = "attn_fwd",
		.source = "attn_fwd.cu",
		.entries = { "asam_attn_fwd_kernel",
			     "asam_attn_rowdot_kernel" },
		.hopper_only = false,
		.variants = attn_all_variants,
	},
	{
		.name = "attn_bwd",
		.source = "attn_bwd.cu",
		.entries = { "asam_attn_bwd_dq_kernel",
			     "asam_attn_bwd_dkdv_kernel",
			     "asam_attn_bwd_dg_kernel",
			     "asam_attn_bwd_cols_kernel",
			     "asam_attn_bwd_nd_kernel",
			     "asam_attn_bwd_nd128_kernel",
			     "asam_attn_bwd_dqcvt_kernel" },
		/*
		 * PATTERN == CLUSTERED builds add asam_attn_bwd_clus_dq_kernel
		 * and asam_attn_bwd_clus_dkdv_kernel (attn_bucket_bwd.cuh);
		 * the other builds lack them, so they are not listed here.
		 */
		.hopper_only = false,
		.variants = attn_all_variants,
	},
	{
		.name = "attn_rows",
		.source = "attn_rows.cu",
		.entries = { "asam_rows_fwd_kernel", "asam_rows_dq_kernel",
			     "asam_rows_dkdv_kernel", "asam_rows_dg_kernel",
			     "asam_rows_tcount_kernel",
			     "asam_rows_tscan_kernel",
			     "asam_rows_tfill_kernel",
			     "asam_rows_tsort_kernel" },
		.hopper_only = false,
		.variants = rows_variants,
	},
	{
		.name = "attn_fwd_sm90",
		.source = "attn_fwd_sm90.cu",
		.entries = { "asam_attn_fwd_sm90_kernel" },
		.hopper_only = true,
		.variants = attn_sm90_variants,
	},
	{
		.name = "attn_bwd_sm90",
		.source = "attn_bwd_sm90.cu",
		.entries = { "asam_attn_bwd_sm90_kernel" },
		.hopper_only = true,
		.variants = attn_bwd_sm90_variants,
	},
	{
		.name = "attn_clus",
		.source = "attn_clus.cu",
		.entries = { "asam_clus_prep_kernel",
			     "asam_clus_assign_kernel",
			     "asam_clus_sort_kernel",
			     "asam_clus_update_kernel",
			     "asam_clus_gqa_sum_kernel",
			     "asam_clus_soft_kernel",
			     "asam_clus_mask_kernel" },
		.hopper_only = false,
		.variants = clus_variants,
	},
};

const int asam_jit_nfamilies = ARRAY_SIZE(asam_jit_families);

const struct asam_jit_family *asam_jit_family_find(const char *name)
{
	int i;

	for (i = 0; i < asam_jit_nfamilies; i++)
		if (!strcmp(asam_jit_families[i].name, name))
			return &asam_jit_families[i];
	return NULL;
}

int asam_jit_variants(const struct asam_jit_family *fam, int arch,
		      asam_jit_variant_cb cb, void *arg)
{
	struct asam_jit_variant_ctx vc = { .family = fam };

	if (fam->hopper_only && arch != 90)
		return 0;
	return fam->variants(&vc, arch, cb, arg);
}

const struct asam_jit_source *asam_jit_source_find(const char *name)
{
	int i;

	for (i = 0; i < asam_jit_nsources; i++)
		if (!strcmp(asam_jit_sources[i].name, name))
			return &asam_jit_sources[i];
	return NULL;
}
