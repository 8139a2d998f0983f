/* SPDX-License-Identifier: MIT */
/*
 * The Hopper forward (jit/kernels/attn_fwd_sm90.cu): which calls it
 * serves and its launch.  arch/cuda/attn.c asks before its own path.
 */
#ifndef ASAM_CUDA_ATTN_SM90_H
#define ASAM_CUDA_ATTN_SM90_H

#include <stdbool.h>

#include <internal/cuda.h>
#include <internal/problem.h>

/*
 * Whether the wgmma forward takes @p on @d: an sm_90 device, ASAM_CUDA_SM90
 * not "0", d 64 or 128, and the DENSE pattern or the DENSE gate, or the
 * LOCAL, RANDOM, STRIDED or HIERARCHICAL pattern with the SPARSE or HARD
 * gate (SOFT is two launches, arch/cuda/attn.c).
 */
bool attn_sm90_serves(const struct asam_cuda_device *d,
		      const struct asam_problem *p);
/* the forward of @p on @d (attn_sm90_serves() said yes) */
int attn_sm90_fwd(struct asam_cuda_device *d, const struct asam_problem *p,
		  bool capturing);
/* dense attention of @p whatever its pattern (SOFT's dense launch) */
bool attn_sm90_serves_dense(const struct asam_cuda_device *d,
			    const struct asam_problem *p);
/* a tile-list pattern's sparse branch (SOFT's sparse launch) */
bool attn_sm90_serves_list(const struct asam_cuda_device *d,
			   const struct asam_problem *p);
/* one launch of gate @gate (SPARSE, DENSE, HARD), mixing as @mix */
int attn_sm90_fwd_mix(struct asam_cuda_device *d,
		      const struct asam_problem *p, bool capturing, int gate,
		      int mix, float *lse_s, float *lse_d);
/*
 * A backward on the wgmma kernels: the key blocks' walk over (Nk / keys,
 * Hkv, B), two threads a key; for STRIDED and HIERARCHICAL then the
 * column entries' over (ncol / ckeys, Hkv, B), NULL otherwise.
 */
struct attn_sm90_bwd {
	CUfunction f, fcols;
	unsigned smem, csmem;
	int keys, ckeys;
};

/* -EOPNOTSUPP where the wgmma backward does not serve @p (attn_sm90.c) */
int attn_sm90_bwd_fn(struct asam_cuda_device *d, const struct asam_problem *p,
		     bool capturing, bool cols_ok, struct attn_sm90_bwd *b);
/* CLUSTERED's SPARSE ARGMAX backward on wgmma, or -EOPNOTSUPP */
int attn_sm90_clus_bwd_fn(struct asam_cuda_device *d,
			  const struct asam_problem *p, bool capturing,
			  CUfunction *f, unsigned *smem);
struct attn_fwd_params;
/* CLUSTERED's SPARSE and HARD forward on wgmma (attn_bucket_sm90.cuh) */
bool attn_sm90_serves_clus(const struct asam_cuda_device *d,
			   const struct asam_problem *p);
int attn_sm90_clus_fwd(struct asam_cuda_device *d,
		       const struct asam_problem *p, bool capturing,
		       struct attn_fwd_params *a, int ntiles);
/* launches so far, for the selftests to see which path ran */
extern unsigned long attn_sm90_launches;
extern unsigned long attn_sm90_bwd_launches;

#endif
