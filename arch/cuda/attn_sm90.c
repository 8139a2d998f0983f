// SPDX-License-Identifier: MIT
/*
 * CUDA attention on Hopper: the host side of jit/kernels/attn_fwd_sm90.cu,
 * the warpgroup-MMA forward (sm_90a).  It fills the same argument block
 * as the mma.sync forward (attn_fill_fwd), so the lse it writes is the
 * one the backward of arch/cuda/attn.c reads.
 *
 * ASAM_CUDA_SM90=0 in the environment sends every call to the mma.sync
 * path, =1 to this one where it serves, =2 to its staggered variant (read
 * per call, so one process can time all three); unset (or any other
 * value), SM90_DEFAULT decides (it staggers only the dense d = 128 walk).
 * ASAM_CUDA_SM90_MINB=1 or 2 sets the blocks-an-SM register bound of the
 * lists' and the dense d = 64 kernels (tuning; 2 otherwise).
 *
 * It also hosts the wgmma backward (jit/kernels/attn_bwd_sm90.cu), the
 * non-deterministic mode's kernel for walks without lists and for
 * LOCAL's, RANDOM's, STRIDED's and HIERARCHICAL's with the SPARSE gate;
 * ASAM_CUDA_SM90_BWD=0 sends them back to mma.sync (attn_bwd_nd.cuh; the
 * column patterns to the deterministic kernels).
 */
#include <errno.h>
#include <stdlib.h>

#include <internal/cuda.h>
#include <internal/jit.h>
#include <internal/problem.h>

#include "attn_int.h"
#include "attn_cols.h"
#include "attn_sm90.h"

#define SM90_BM		128	/* two warpgroups of 64 rows */
#define SM90_BN		128
#define SM90_BN_LIST	64	/* the pattern lists' key tiles */
#define SM90_WARPS	8
#define SM90_BWD_BM	64	/* the backward's query tiles */
#define SM90_BWD_BM_D64	128	/* the dense walk's at d = 64 */
#define SM90_BWD_BN	128	/* the dense walk's keys a block: two
				 * warpgroups of 64 */
#define SM90_BWD_BN_LIST 64	/* the lists' walks: one, two blocks an SM */
/*
 * The mode without ASAM_CUDA_SM90 in the environment: 0 off (mma.sync),
 * 1 the warpgroups in step, 2 staggered.  Staggered: both passed
 * selftests/attention-cuda/attn_sm90_gpu_test (25 of 25) on an H200, and
 * staggered was the faster (benchmarks.rst, 2026-11-26 23:56 UTC).
 */
#define SM90_DEFAULT	2

unsigned long attn_sm90_launches;
unsigned long attn_sm90_bwd_launches;

/*
 * Q, two stages of K, two of V (three when staggered), swizzled; 1024
 * for aligning the window
 */
static int sm90_smem_bytes(int d, int stagger, int bn)
{
	return (SM90_BM + (4 + stagger) * bn) * d * 2 + 1024;
}

/* environment variable @name as "0", "1" or "2", else @def */
static int sm90_env(const char *name, int def)
{
	const char *env = getenv(name);

	if (env && env[0] >= '0' && env[0] <= '2' && !env[1])
		return env[0] - '0';
	return def;
}

static int sm90_mode(void)
{
	return sm90_env("ASAM_CUDA_SM90", SM90_DEFAULT);
}

/* whether the wgmma kernel can run @p's dense attention on @d at all */
bool attn_sm90_serves_dense(const struct asam_cuda_device *d,
			    const struct asam_problem *p)
{
	if (!sm90_mode())
		return false;
	if (d->cc_major != 9 || d->cc_minor != 0)
		return false;
	if (p->d != 64 && p->d != 128)
		return false;
	if (p->dt != ASAM_DT_F16 && p->dt != ASAM_DT_BF16)
		return false;
	return sm90_smem_bytes(p->d, 1, SM90_BN) <= d->smem_per_block_optin;
}

/*
 * LOCAL and RANDOM: their lists serve the SPARSE branch; STRIDED and
 * HIERARCHICAL: the band's list, then the column keys
 */
static bool sm90_list_kind(const struct asam_problem *p)
{
	return p->pat.kind == ASAM_PATTERN_LOCAL ||
	       p->pat.kind == ASAM_PATTERN_RANDOM ||
	       attn_cols_kind(p->pat.kind);
}

bool attn_sm90_serves_list(const struct asam_cuda_device *d,
			   const struct asam_problem *p)
{
	return sm90_list_kind(p) && attn_sm90_serves_dense(d, p) &&
	       sm90_smem_bytes(p->d, 1, SM90_BN_LIST) <=
	       d->smem_per_block_optin;
}

bool attn_sm90_serves(const struct asam_cuda_device *d,
		      const struct asam_problem *p)
{
	if (p->gate_mode == ASAM_GATE_SOFT)
		return false;	/* two launches: arch/cuda/attn.c */
	if (p->pat.kind == ASAM_PATTERN_DENSE ||
	    p->gate_mode == ASAM_GATE_DENSE)
		return attn_sm90_serves_dense(d, p);
	return attn_sm90_serves_list(d, p);
}

/* the forward's function for @gate, @pat, @bn keys a tile, ... */
static int sm90_fwd_fn(struct asam_cuda_device *d,
		       const struct asam_problem *p, bool capturing, int gate,
		       int pat, int bn, int stagger, int minb, CUfunction *f)
{
	struct asam_jit_spec spec;
	int ret;

	ret = asam_jit_spec_init(&spec, "attn_fwd_sm90", attn_arch_of(d));
	ret = ret ?: asam_jit_spec_set(&spec, "HEAD_DIM", p->d);
	ret = ret ?: asam_jit_spec_set(&spec, "DTYPE", p->dt);
	ret = ret ?: asam_jit_spec_set(&spec, "CAUSAL", p->causal);
	ret = ret ?: asam_jit_spec_set(&spec, "GATE_MODE", gate);
	ret = ret ?: asam_jit_spec_set(&spec, "PATTERN", pat);
	ret = ret ?: asam_jit_spec_set(&spec, "BLOCK_M", SM90_BM);
	ret = ret ?: asam_jit_spec_set(&spec, "BLOCK_N", bn);
	ret = ret ?: asam_jit_spec_set(&spec, "NUM_WARPS", SM90_WARPS);
	ret = ret ?: asam_jit_spec_set(&spec, "STAGGER", stagger);
	if (!ret && minb)
		ret = asam_jit_spec_set(&spec, "MIN_BLOCKS", minb);
	return ret ?: attn_get_fn(d, &spec, "asam_attn_fwd_sm90_kernel",
				  capturing, f);
}

int attn_sm90_fwd_mix(struct asam_cuda_device *d,
		      const struct asam_problem *p, bool capturing, int gate,
		      int mix, float *lse_s, float *lse_d)
{
	struct attn_fwd_params a;
	CUfunction f;
	/* the pattern's lists when its sparse branch may run */
	int pat = gate == ASAM_GATE_DENSE || !sm90_list_kind(p) ?
		  ASAM_PATTERN_DENSE : (int)p->pat.kind;
	/*
	 * Two blocks an SM where 128 registers a thread hold the tiles:
	 * the lists' short walks (a few bytes spilled at d = 128) and the
	 * dense walk at d = 64; one block's loads and softmax then run
	 * under the other's MMAs.  H200, 2026-11-27, bf16: local 16K 0.331
	 * ms (one block 0.359), random 0.244 (0.310), dense B8 4K d64 1.977
	 * ms in step (2.255 staggered at one block, 2.185 staggered at
	 * two).  The dense d = 128 accumulators do not fit 128 registers.
	 */
	bool two = pat != ASAM_PATTERN_DENSE || p->d == 64;
	int minb = two ? sm90_env("ASAM_CUDA_SM90_MINB", 2) : 0;
	/*
	 * Staggering pays on the one-block dense d = 128 walk only (local
	 * 16K: 0.381 ms staggered, 0.362 in step, one block each).
	 */
	int ret, stagger = sm90_mode() == 2 && !two;
	int bn = pat == ASAM_PATTERN_DENSE ? SM90_BN : SM90_BN_LIST;

	ret = sm90_fwd_fn(d, p, capturing, gate, pat, bn, stagger, minb, &f);
	if (ret)
		return ret;
	attn_fill_fwd(&a, p);
	a.nqt = (p->Nq + SM90_BM - 1) / SM90_BM;
	a.lse_s = lse_s;
	a.lse_d = lse_d;
	a.mix = mix;
	if (attn_cols_kind(pat)) {
		struct attn_cols_dev c;

		ret = attn_cols_get(d, p, SM90_BM, 0, &c);
		if (ret)
			return ret;
		attn_cols_fill_fwd(&a, &c);
	} else if (pat == ASAM_PATTERN_RANDOM) {
		/* LOCAL's range is the kernel's arithmetic (local_range) */
		ret = attn_get_plan(d, p, SM90_BM, &a.list_off, &a.list,
				    &a.list_per_head);
		if (ret)
			return ret;
	}
	__atomic_add_fetch(&attn_sm90_launches, 1, __ATOMIC_RELAXED);
	return attn_launch(d, f, a.nqt, p->Hq, p->B, SM90_WARPS * 32,
			   sm90_smem_bytes(p->d, stagger, bn), p->stream, &a);
}

/*
 * CLUSTERED in ARGMAX mode under the SPARSE and HARD gates on wgmma
 * (jit/kernels/attn_bucket_sm90.cuh); the SOFT rule's mask and the SOFT
 * gate stay on the mma.sync bucket kernel.
 */
bool attn_sm90_serves_clus(const struct asam_cuda_device *d,
			   const struct asam_problem *p)
{
	return p->pat.kind == ASAM_PATTERN_CLUSTERED &&
	       p->pat.cmode == ASAM_CLUSTER_ARGMAX &&
	       (p->gate_mode == ASAM_GATE_SPARSE ||
		p->gate_mode == ASAM_GATE_HARD) &&
	       attn_sm90_serves_dense(d, p) &&
	       sm90_smem_bytes(p->d, 0, SM90_BN_LIST) <=
	       d->smem_per_block_optin;
}

/* @a: attn_clus.c's argument block; a block per tile of its 128-slot table */
int attn_sm90_clus_fwd(struct asam_cuda_device *d,
		       const struct asam_problem *p, bool capturing,
		       struct attn_fwd_params *a, int ntiles)
{
	CUfunction f;
	int ret;

	ret = sm90_fwd_fn(d, p, capturing, p->gate_mode, ASAM_PATTERN_CLUSTERED,
			  SM90_BN_LIST, 0, sm90_env("ASAM_CUDA_SM90_MINB", 2),
			  &f);
	if (ret)
		return ret;
	__atomic_add_fetch(&attn_sm90_launches, 1, __ATOMIC_RELAXED);
	return attn_launch(d, f, ntiles, p->Hq, p->B, SM90_WARPS * 32,
			   sm90_smem_bytes(p->d, 0, SM90_BN_LIST), p->stream, a);
}

int attn_sm90_fwd(struct asam_cuda_device *d, const struct asam_problem *p,
		  bool capturing)
{
	return attn_sm90_fwd_mix(d, p, capturing, p->gate_mode, ATTN_MIX_NONE,
				 p->lse_s.data, p->lse_d.data);
}

/* Q and dO twice, K, V, dS^T, the row statistics twice; 1024 to align */
static unsigned sm90_bwd_smem(int d, int bn, int bm)
{
	return (2 * bn + 4 * bm) * d * 2 + bn * bm * 2 + 2 * 4 * bm * 4 + 1024;
}

/* the wgmma backward's spec for @p: @bn keys a block, @bm query rows */
static int sm90_bwd_spec(struct asam_cuda_device *d,
			 const struct asam_problem *p, bool list, int bn,
			 int bm, struct asam_jit_spec *spec)
{
	int ret = asam_jit_spec_init(spec, "attn_bwd_sm90", attn_arch_of(d));

	ret = ret ?: asam_jit_spec_set(spec, "HEAD_DIM", p->d);
	ret = ret ?: asam_jit_spec_set(spec, "DTYPE", p->dt);
	ret = ret ?: asam_jit_spec_set(spec, "CAUSAL", p->causal);
	ret = ret ?: asam_jit_spec_set(spec, "GATE_MODE", p->gate_mode);
	ret = ret ?: asam_jit_spec_set(spec, "PATTERN", list ?
				       (int)p->pat.kind : ASAM_PATTERN_DENSE);
	ret = ret ?: asam_jit_spec_set(spec, "BLOCK_M", bm);
	ret = ret ?: asam_jit_spec_set(spec, "BLOCK_N", bn);
	return ret ?: asam_jit_spec_set(spec, "NUM_WARPS", bn / 16);
}

/*
 * CLUSTERED's backward on wgmma (attn_bwd_sm90.cu's bucket walk): the
 * SPARSE gate in ARGMAX mode, over (key tiles of the table, Hq, B), 128
 * threads; -EOPNOTSUPP where it does not serve (the caller runs the
 * mma.sync pair).  ASAM_CUDA_SM90_BWD=0 turns it off with the others.
 */
int attn_sm90_clus_bwd_fn(struct asam_cuda_device *d,
			  const struct asam_problem *p, bool capturing,
			  CUfunction *f, unsigned *smem)
{
	struct asam_jit_spec spec;
	int ret;

	if (!sm90_env("ASAM_CUDA_SM90_BWD", 1) ||
	    !attn_sm90_serves_dense(d, p) ||
	    p->gate_mode != ASAM_GATE_SPARSE ||
	    p->pat.cmode != ASAM_CLUSTER_ARGMAX ||
	    sm90_bwd_smem(p->d, 64, 64) + 2 * 64 * 4 >
	    (unsigned)d->smem_per_block_optin)
		return -EOPNOTSUPP;
	ret = sm90_bwd_spec(d, p, true, 64, 64, &spec);
	ret = ret ?: attn_get_fn(d, &spec, "asam_attn_bwd_sm90_kernel",
				 capturing, f);
	if (ret)
		return ret;
	/* and the bucket walk's row tokens, two stages */
	*smem = sm90_bwd_smem(p->d, 64, 64) + 2 * 64 * 4;
	__atomic_add_fetch(&attn_sm90_bwd_launches, 1, __ATOMIC_RELAXED);
	return 0;
}

/*
 * The wgmma backward's kernels for @p, or -EOPNOTSUPP where they do not
 * serve (SOFT over lists, HARD, no Hopper, too little shared memory): the
 * caller then runs the mma.sync ones.  STRIDED and HIERARCHICAL with the
 * SPARSE gate also get the column entries' kernel (@b->fcols; @cols_ok
 * false refuses them).
 */
int attn_sm90_bwd_fn(struct asam_cuda_device *d, const struct asam_problem *p,
		     bool capturing, bool cols_ok, struct attn_sm90_bwd *b)
{
	struct asam_jit_spec spec;
	int ret, bn, bm, cn;

	/* a walk without lists, or LOCAL's, RANDOM's, the band's with SPARSE */
	bool list = p->pat.kind != ASAM_PATTERN_DENSE &&
		    p->gate_mode != ASAM_GATE_DENSE;
	bool cols = list && attn_cols_kind(p->pat.kind);

	if (!sm90_env("ASAM_CUDA_SM90_BWD", 1) ||
	    !attn_sm90_serves_dense(d, p) ||
	    p->gate_mode == ASAM_GATE_HARD ||
	    (list && (p->gate_mode != ASAM_GATE_SPARSE ||
		      (p->pat.kind != ASAM_PATTERN_LOCAL &&
		       p->pat.kind != ASAM_PATTERN_RANDOM && !cols))) ||
	    (cols && !cols_ok) ||
	    sm90_bwd_smem(p->d, SM90_BWD_BN, SM90_BWD_BM) >
	    (unsigned)d->smem_per_block_optin)
		return -EOPNOTSUPP;
	/*
	 * A list's walk is a few steps a block: one warpgroup a block, two
	 * blocks an SM, hide one block's start and end under the other's
	 * work.  ASAM_CUDA_SM90_BWD_BN=1 (64 keys) or 2 (128) forces one.
	 */
	bn = list ? SM90_BWD_BN_LIST : SM90_BWD_BN;
	switch (sm90_env("ASAM_CUDA_SM90_BWD_BN", 0)) {
	case 1:
		bn = 64;
		break;
	case 2:
		bn = 128;
		break;
	}
	/*
	 * The dense walk at d = 64 takes 128 queries a step: twice the MMA
	 * work for the same barriers and waits (attn_bwd_sm90.cu).
	 * ASAM_CUDA_SM90_BWD_BM=1 (64) or 2 (128, where it serves) forces.
	 */
	bm = !list && p->d == 64 && bn == 128 ? SM90_BWD_BM_D64 : SM90_BWD_BM;
	switch (sm90_env("ASAM_CUDA_SM90_BWD_BM", 0)) {
	case 1:
		bm = 64;
		break;
	case 2:
		if (!list && p->d == 64 && bn == 128)
			bm = 128;
		break;
	}
	if (sm90_bwd_smem(p->d, bn, bm) > (unsigned)d->smem_per_block_optin)
		bm = SM90_BWD_BM;
	ret = sm90_bwd_spec(d, p, list, bn, bm, &spec);
	ret = ret ?: attn_get_fn(d, &spec, "asam_attn_bwd_sm90_kernel",
				 capturing, &b->f);
	if (ret)
		return ret;
	b->smem = sm90_bwd_smem(p->d, bn, bm);
	b->keys = bn;
	b->fcols = NULL;
	/*
	 * The column walk is every query tile: 128 entries a block (two
	 * warpgroups) halve its dQ reductions per MMA against 64, which
	 * bound it (ASAM_CUDA_SM90_BWD_CN=1: 64, for measurements).
	 */
	cn = sm90_env("ASAM_CUDA_SM90_BWD_CN", 2) == 1 ? 64 : SM90_BWD_BN;
	if (cols) {
		ret = sm90_bwd_spec(d, p, list, cn, SM90_BWD_BM, &spec);
		ret = ret ?: attn_get_fn(d, &spec,
					 "asam_attn_bwd_sm90_cols_kernel",
					 capturing, &b->fcols);
		if (ret)
			return ret;
		b->csmem = sm90_bwd_smem(p->d, cn, SM90_BWD_BM);
		b->ckeys = cn;
	}
	__atomic_add_fetch(&attn_sm90_bwd_launches, 1, __ATOMIC_RELAXED);
	return 0;
}
