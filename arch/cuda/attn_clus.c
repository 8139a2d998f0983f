// SPDX-License-Identifier: MIT
/*
 * CLUSTERED (SPEC 3.2) on the CUDA backend: the host side of
 * jit/kernels/attn_clus.cu (assignment, counting sort, k-means, GQA sum)
 * and of the bucket attention in attn_bucket_{fwd,bwd}.cuh.
 *
 * Every call sorts afresh: the assignment depends on q and k, and the
 * two kernels that compute it cost a few percent of the attention.  The
 * backward recomputes the forward's sortings (the same kernels on the
 * same inputs give the same slots), so nothing is kept between calls.
 * Scratch comes from the caller's workspace (asam_attn_workspace_size()
 * reports it); without one, a call borrows device memory and waits for
 * its stream before giving it back.
 *
 * The DENSE gate is dense attention: it goes down the DENSE pattern's path.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <internal/cuda.h>
#include <internal/err.h>
#include <internal/jit.h>

#include "attn_clus.h"
#include "attn_int.h"
#include "attn_sm90.h"

#define CL_FWD_BM	128
#define CL_SOFT_BM	64
#define CL_T		64	/* backward tiles, both sides */
#define CL_SORT_WARPS	32	/* as attn_clus.cu */

struct clus_layout {
	size_t cl[2], perm[2], off[2], tiles[2], ntile[2], nrm[2];
	size_t dsum, part_k, part_v;
	size_t dq;			/* the wgmma backward's fp32 dQ sums */
	bool has_dq;
	size_t cent, cent_stride;	/* prepared centroids, a head's bytes */
	size_t soft[2], mask;		/* SOFT cluster mode */
	int ntiles[2], tile[2], mw;
	size_t bytes;
};

static size_t take(size_t *at, size_t bytes)
{
	size_t o = *at;

	*at += (bytes + 255) & ~(size_t)255;
	return o;
}

/* whether @p's pairs come from the SOFT cluster rule (a mask) */
static bool clus_soft(const struct asam_problem *p)
{
	return p->pat.cmode == ASAM_CLUSTER_SOFT;
}

/* whether @p's backward may take the non-deterministic wgmma walk */
static bool clus_bwd_nd(const struct asam_problem *p)
{
	return p->gate_mode == ASAM_GATE_SPARSE && !clus_soft(p) &&
	       !(p->flags & ASAM_F_DETERMINISTIC);
}

/*
 * Scratch of a call with query tiles of @tq slots and key tiles of @tk
 * (0: no table); @bwd adds the row sums and GQA partials, @nrm the norms
 * of the k-means update, @soft the SOFT rule's assignments and mask.
 */
static void clus_layout(const struct asam_problem *p, int tq, int tk,
			bool bwd, bool nrm, bool soft, struct clus_layout *L)
{
	size_t bh = (size_t)p->B * p->Hq, at = 0;
	int N[2] = { p->Nq, p->Nk }, T[2] = { tq, tk }, s;

	memset(L, 0, sizeof(*L));
	for (s = 0; s < 2; s++) {
		L->tile[s] = T[s];
		L->ntiles[s] = T[s] ? (N[s] + T[s] - 1) / T[s] + p->pat.C : 0;
		L->cl[s] = take(&at, 4 * bh * N[s]);
		L->perm[s] = take(&at, 4 * bh * N[s]);
		L->off[s] = take(&at, 4 * bh * (p->pat.C + 1));
		L->tiles[s] = take(&at, 8 * bh * L->ntiles[s]);
		L->ntile[s] = take(&at, 4 * bh);
		if (nrm)
			L->nrm[s] = take(&at, 8 * bh * N[s]);
		if (soft)
			L->soft[s] = take(&at, 8 * bh * N[s] * p->pat.C);
	}
	if (!soft) {
		int C = p->pat.C, CP = (C + 31) / 32 * 32;

		/* hi and lo halves (attn_clus.cu: cl_frag_at), fp64 norms */
		L->cent_stride = ((size_t)CP * p->d * 4 + C * 8 + 15) &
				 ~(size_t)15;
		L->cent = take(&at, L->cent_stride * p->Hq);
	}
	if (soft) {
		L->mw = (p->Nk + 31) / 32;
		L->mask = take(&at, 4 * bh * p->Nq * L->mw);
	}
	if (bwd) {
		L->dsum = take(&at, 2 * sizeof(float) * bh * p->Nq);
		if (p->Hq != p->Hkv) {
			L->part_k = take(&at, 4 * bh * p->Nk * p->d);
			L->part_v = take(&at, 4 * bh * p->Nk * p->d);
		}
		/*
		 * where the wgmma bucket walk may run (SPARSE, ARGMAX, no
		 * deterministic flag; the device is not known here): dQ's
		 * fp32 sums, 256-byte aligned for the vector reductions
		 */
		L->has_dq = clus_bwd_nd(p);
		if (L->has_dq)
			L->dq = take(&at, 4 * bh * p->Nq * p->d);
	}
	L->bytes = at;
}

/* what the assignment kernels take */
static int clus_assign_supports(const struct asam_problem *p)
{
	if (p->pat.C < 1 || p->pat.C > 256)
		return asam_err(-EOPNOTSUPP, "pattern: %d clusters; the cuda kernels take 1 to 256",
				p->pat.C);
	if (p->pat.centroids.stride[2] < 0 || p->pat.centroids.dt < ASAM_DT_F16 ||
	    p->pat.centroids.dt > ASAM_DT_F64)
		return asam_err(-EOPNOTSUPP, "pattern.centroids: dtype not taken by the cuda kernels");
	return 0;
}

int asam_cuda_clus_supports(const struct asam_problem *p)
{
	if (p->gate_mode == ASAM_GATE_DENSE)
		return 0;	/* dense attention: the pattern plays no part */
	return clus_assign_supports(p);
}

size_t asam_cuda_clus_workspace(const struct asam_problem *p)
{
	struct clus_layout L;

	if (p->gate_mode == ASAM_GATE_DENSE)
		return p->bwd ? 2 * sizeof(float) * (size_t)p->B * p->Hq * p->Nq :
			0;
	if (p->bwd)
		clus_layout(p, CL_T, CL_T, true, false, clus_soft(p), &L);
	else
		clus_layout(p, p->gate_mode == ASAM_GATE_SOFT ? CL_SOFT_BM :
			    CL_FWD_BM, 0, false, false, clus_soft(p), &L);
	return L.bytes;
}

static int clus_spec(struct asam_jit_spec *s, const struct asam_cuda_device *d,
		     const struct asam_problem *p)
{
	int ret = asam_jit_spec_init(s, "attn_clus", attn_arch_of(d));

	ret = ret ?: asam_jit_spec_set(s, "HEAD_DIM", p->d);
	ret = ret ?: asam_jit_spec_set(s, "DTYPE", p->dt);
	ret = ret ?: asam_jit_spec_set(s, "CDT", p->pat.centroids.dt);
	return ret;
}

/* a positive integer from the environment (tuning), else @def */
static int clus_env(const char *name, int def)
{
	const char *v = getenv(name);
	int x = v ? atoi(v) : 0;

	return x > 0 ? x : def;
}

static void *dp(CUdeviceptr base, size_t off)
{
	return (void *)(uintptr_t)(base + off);
}

/*
 * The assignment and sortings of both sides into scratch @base.  The
 * SOFT rule (L->mask) puts every token in cluster 0, so the sortings are
 * the identity and one bucket holds everything; its pairs come from the
 * mask instead.
 */
static int clus_prepare(struct asam_cuda_device *d,
			const struct asam_problem *p, bool cap,
			const struct clus_layout *L, CUdeviceptr base,
			CUstream s, struct attn_clus_params *c)
{
	const struct asam_tv *mu = &p->pat.centroids;
	struct asam_jit_spec spec;
	CUfunction fa, fp = NULL, fs, fsoft = NULL, fmask = NULL;
	int C = p->pat.C, CP = (C + 31) / 32 * 32, side, ret;
	size_t bh = (size_t)p->B * p->Hq;

	ret = clus_spec(&spec, d, p);
	ret = ret ?: attn_get_fn(d, &spec, "asam_clus_assign_kernel", cap, &fa);
	if (!ret && !L->mask)
		ret = attn_get_fn(d, &spec, "asam_clus_prep_kernel", cap, &fp);
	ret = ret ?: attn_get_fn(d, &spec, "asam_clus_sort_kernel", cap, &fs);
	if (!ret && L->mask) {
		ret = attn_get_fn(d, &spec, "asam_clus_soft_kernel", cap,
				  &fsoft);
		ret = ret ?: attn_get_fn(d, &spec, "asam_clus_mask_kernel",
					 cap, &fmask);
	}
	if (ret)
		return ret;
	memset(c, 0, sizeof(*c));
	c->x[0] = p->q.data;
	c->x[1] = p->k.data;
	c->x_sb[0] = attn_st(&p->q, 0); c->x_sh[0] = attn_st(&p->q, 1);
	c->x_sn[0] = attn_st(&p->q, 2);
	c->x_sb[1] = attn_st(&p->k, 0); c->x_sh[1] = attn_st(&p->k, 1);
	c->x_sn[1] = attn_st(&p->k, 2);
	c->mu = mu->data;
	c->mu_sh = mu->stride[0]; c->mu_sc = mu->stride[1];
	c->mu_se = mu->stride[2];
	c->N[0] = p->Nq; c->N[1] = p->Nk;
	c->Hx[0] = p->Hq; c->Hx[1] = p->Hkv;
	c->B = p->B; c->Hq = p->Hq; c->C = C;
	c->Hkv = p->Hkv; c->Nk = p->Nk;
	for (side = 0; side < 2; side++) {
		c->cl[side] = dp(base, L->cl[side]);
		c->perm[side] = dp(base, L->perm[side]);
		c->off[side] = dp(base, L->off[side]);
		c->tiles[side] = L->tile[side] ? dp(base, L->tiles[side]) : NULL;
		c->ntile[side] = dp(base, L->ntile[side]);
		c->nrm[side] = L->nrm[side] ? dp(base, L->nrm[side]) : NULL;
		c->tile[side] = L->tile[side];
		c->ntiles[side] = L->ntiles[side];
		c->soft[side] = L->mask ? dp(base, L->soft[side]) : NULL;
	}
	c->mask = L->mask ? dp(base, L->mask) : NULL;
	c->cent = L->mask ? NULL : dp(base, L->cent);
	c->cent_stride = (long long)L->cent_stride;
	/* the unit centroids once, for both sides' assignment */
	if (fp)
		ret = attn_launch(d, fp, p->Hq, CP / 8, 1, 128, 8 * 8, s, c);
	c->mw = L->mw;
	c->temp = p->pat.temp;
	c->thresh = p->pat.thresh;
	if (!L->mask && !ret) {
		/*
		 * Both sides in one launch (grid z: queries, then keys),
		 * 32 tokens a warp a pass, four warps a block, tpb tokens a
		 * block (ASAM_CUDA_CLUS_TPB, tuning, rounded up to 128).
		 * Shared: the head's prepared centroids, copied, then up to
		 * 64 clusters each warp's 32 rows of scores, rows of CP + 4
		 * floats (attn_clus.cu: CL_SC_MAX, CL_SCP).
		 */
		int tpb = (clus_env("ASAM_CUDA_CLUS_TPB", 512) + 127) / 128 *
			  128;
		int n = c->N[0] > c->N[1] ? c->N[0] : c->N[1];
		size_t sc = CP <= 64 ? 4 * 32 * (size_t)(CP + 4) * 4 : 0;

		ret = attn_launch(d, fa, (n + tpb - 1) / tpb, p->Hq, 2 * p->B,
				  128, (unsigned)(L->cent_stride + sc), s, c);
	}
	for (side = 0; side < 2 && !ret && L->mask; side++) {
		c->side = side;
		ret = asam_cuda_memset8(d, base + L->cl[side], 0,
					4 * bh * c->N[side], s);
		ret = ret ?: attn_launch(d, fsoft, (c->N[side] + 127) / 128,
					 p->Hq, p->B, 128, C * 8, s, c);
	}
	if (!ret && L->mask)
		ret = attn_launch(d, fmask,
				  (unsigned)(((size_t)p->Nq * L->mw + 127) / 128),
				  p->Hq, p->B, 128, 0, s, c);
	ret = ret ?: attn_launch(d, fs, p->Hq, p->B, 2, CL_SORT_WARPS * 32,
				 (CL_SORT_WARPS * C + C + 1) * 4, s, c);
	return ret;
}

/* caller's workspace when large enough, else borrowed memory (*own) */
static int clus_scratch(struct asam_cuda_device *d,
			const struct asam_problem *p, size_t need,
			CUdeviceptr *base, CUdeviceptr *own)
{
	*own = 0;
	if (p->workspace && p->workspace_size >= need) {
		*base = (CUdeviceptr)(uintptr_t)p->workspace;
		return 0;
	}
	if (asam_cuda_scratch_get(d, p->stream, need, own))
		return -ENOMEM;
	*base = *own;
	return 0;
}

static int clus_release(struct asam_cuda_device *d, CUstream s,
			CUdeviceptr own, int ret)
{
	if (own) {
		int r2 = asam_cuda_scratch_put(d, s, own);

		ret = ret ?: r2;
	}
	return ret;
}

/* DENSE gate: dense attention, the DENSE pattern's kernels */
static int dense_twin(struct asam_backend *be, const struct asam_problem *p,
		      bool bwd)
{
	struct asam_problem q = *p;

	memset(&q.pat, 0, sizeof(q.pat));
	q.pat.kind = ASAM_PATTERN_DENSE;
	return bwd ? asam_cuda_attn_bwd(be, &q) : asam_cuda_attn_fwd(be, &q);
}

static void fill_cl_fwd(struct attn_fwd_params *a, const struct attn_clus_params *c,
			int C)
{
	a->cl_kcl = c->cl[1];
	a->cl_qperm = c->perm[0];
	a->cl_kperm = c->perm[1];
	a->cl_qoff = c->off[0];
	a->cl_koff = c->off[1];
	a->cl_qtiles = c->tiles[0];
	a->cl_nqtiles = c->ntile[0];
	a->cl_C = C;
	a->cl_ntq = c->ntiles[0];
	a->cl_mask = c->mask;
	a->cl_mw = c->mw;
}

int asam_cuda_clus_fwd(struct asam_backend *be, const struct asam_problem *p)
{
	struct asam_cuda_device *d = asam_cuda_device_of(be, p->dev.device_id);
	int bm = p->gate_mode == ASAM_GATE_SOFT ? CL_SOFT_BM : CL_FWD_BM, ret;
	struct attn_clus_params c;
	struct asam_jit_spec spec;
	struct attn_fwd_params a;
	struct clus_layout L;
	CUdeviceptr base = 0, own = 0;
	CUstream s = p->stream;
	CUfunction f = NULL;
	bool cap, wg;

	if (p->gate_mode == ASAM_GATE_DENSE)
		return dense_twin(be, p, false);
	ret = asam_cuda_attn_supports(be, p);
	ret = ret ?: asam_cuda_device_enter(d);
	ret = ret ?: attn_capturing_of(d, s, &cap);
	/* SPARSE ARGMAX on Hopper: the wgmma bucket walk (attn_sm90.c) */
	wg = !ret && attn_sm90_serves_clus(d, p);
	if (!wg) {
		ret = ret ?: attn_make_spec(&spec, "attn_fwd", d, p,
					    p->gate_mode, bm, 4, 0);
		ret = ret ?: attn_get_fn(d, &spec, "asam_attn_fwd_kernel", cap,
					 &f);
	}
	if (ret)
		return ret;
	clus_layout(p, bm, 0, false, false, clus_soft(p), &L);
	ret = clus_scratch(d, p, L.bytes, &base, &own);
	if (ret)
		return asam_err(ret, "cuda clustered: no device scratch of %zu bytes",
				L.bytes);
	ret = clus_prepare(d, p, cap, &L, base, s, &c);
	if (!ret) {
		attn_fill_fwd(&a, p);
		a.nqt = (p->Nq + bm - 1) / bm;
		a.lse_s = p->lse_s.data;
		a.lse_d = p->lse_d.data;
		fill_cl_fwd(&a, &c, p->pat.C);
		if (wg)
			ret = attn_sm90_clus_fwd(d, p, cap, &a, c.ntiles[0]);
		else
			ret = attn_launch(d, f, c.ntiles[0], p->Hq, p->B, 128,
					  attn_smem_bytes(bm + 4 * 64, p->d) +
					  2 * 64 * 4, s, &a);
	}
	return clus_release(d, s, own, ret);
}

int asam_cuda_clus_bwd(struct asam_backend *be, const struct asam_problem *p)
{
	struct asam_cuda_device *d = asam_cuda_device_of(be, p->dev.device_id);
	size_t rows = (size_t)p->B * p->Hq * p->Nq;
	CUfunction fpre, fdq, fkv, fdg = NULL, fsum = NULL, fw = NULL, fcvt;
	unsigned wsmem = 0;
	struct asam_jit_spec sp, sb, sc;
	struct attn_fwd_params pre;
	struct attn_clus_params c;
	struct attn_bwd_params a;
	struct clus_layout L;
	CUdeviceptr base = 0, own = 0;
	CUstream s = p->stream;
	int ret, G = p->Hq / p->Hkv;
	bool cap, rowdot = p->gate_mode == ASAM_GATE_SPARSE;

	if (p->gate_mode == ASAM_GATE_DENSE)
		return dense_twin(be, p, true);
	ret = asam_cuda_attn_supports(be, p);
	ret = ret ?: asam_cuda_device_enter(d);
	ret = ret ?: attn_capturing_of(d, s, &cap);
	ret = ret ?: attn_make_spec(&sp, "attn_fwd", d, p, p->gate_mode, CL_T,
				    4, 1);
	ret = ret ?: attn_make_spec(&sb, "attn_bwd", d, p, p->gate_mode, CL_T,
				    4, 0);
	/*
	 * SPARSE: O is the bucket branch's output, so D_i = <dO_i, O_i> is a
	 * pass over O and dO (attn_fwd.cu's rowdot, ~60 us at B2 H16 16K
	 * d128) instead of the bucket forward again (1.4 ms there).  SOFT
	 * needs its two branches' sums apart, HARD its dense heads' from
	 * the dense walk: both keep the recomputing preprocess.
	 */
	ret = ret ?: attn_get_fn(d, &sp, rowdot ? "asam_attn_rowdot_kernel" :
				 "asam_attn_fwd_kernel", cap, &fpre);
	ret = ret ?: attn_get_fn(d, &sb, "asam_attn_bwd_clus_dq_kernel", cap,
				 &fdq);
	ret = ret ?: attn_get_fn(d, &sb, "asam_attn_bwd_clus_dkdv_kernel", cap,
				 &fkv);
	if (!ret && p->gate_mode == ASAM_GATE_SOFT)
		ret = attn_get_fn(d, &sb, "asam_attn_bwd_dg_kernel", cap, &fdg);
	/* Hopper, SPARSE ARGMAX, no deterministic flag: one wgmma walk */
	if (!ret && clus_bwd_nd(p)) {
		ret = attn_sm90_clus_bwd_fn(d, p, cap, &fw, &wsmem);
		if (ret == -EOPNOTSUPP) {
			fw = NULL;
			ret = 0;
		}
		/* its dQ cast, only where the walk runs */
		if (!ret && fw)
			ret = attn_get_fn(d, &sb, "asam_attn_bwd_dqcvt_kernel",
					  cap, &fcvt);
	}
	if (!ret && G > 1) {
		ret = clus_spec(&sc, d, p);
		ret = ret ?: attn_get_fn(d, &sc, "asam_clus_gqa_sum_kernel",
					 cap, &fsum);
	}
	if (ret)
		return ret;
	clus_layout(p, CL_T, CL_T, true, false, clus_soft(p), &L);
	ret = clus_scratch(d, p, L.bytes, &base, &own);
	if (ret)
		return asam_err(ret, "cuda clustered: no device scratch of %zu bytes",
				L.bytes);
	ret = clus_prepare(d, p, cap, &L, base, s, &c);
	if (ret)
		return clus_release(d, s, own, ret);

	attn_fill_fwd(&pre, p);
	fill_cl_fwd(&pre, &c, p->pat.C);
	attn_fill_pre(&pre, p, CL_T);
	pre.dsum_s = dp(base, L.dsum);
	pre.dsum_d = p->gate_mode == ASAM_GATE_SOFT ?
		     (float *)dp(base, L.dsum + sizeof(float) * rows) : NULL;

	memset(&a, 0, sizeof(a));
	attn_fill_bwd(&a, p, &pre, CL_T);
	a.cl_qcl = c.cl[0]; a.cl_kcl = c.cl[1];
	a.cl_qperm = c.perm[0]; a.cl_kperm = c.perm[1];
	a.cl_qoff = c.off[0]; a.cl_koff = c.off[1];
	a.cl_qtiles = c.tiles[0]; a.cl_ktiles = c.tiles[1];
	a.cl_nqtiles = c.ntile[0]; a.cl_nktiles = c.ntile[1];
	a.cl_C = p->pat.C;
	a.cl_ntq = c.ntiles[0]; a.cl_ntk = c.ntiles[1];
	a.cl_mask = c.mask;
	a.cl_mw = c.mw;
	if (G > 1) {
		a.cl_part_k = dp(base, L.part_k);
		a.cl_part_v = dp(base, L.part_v);
	}

	if (rowdot) {
		int per = 256 / (p->d / 8);	/* a block's rows */

		pre.o = p->o.data;
		ret = attn_launch(d, fpre, (p->Nq + per - 1) / per, p->Hq,
				  p->B, 256, 0, s, &pre);
	} else {
		ret = attn_launch(d, fpre, c.ntiles[0], p->Hq, p->B, 128,
				  attn_smem_bytes(CL_T + 4 * 64, p->d) +
				  2 * 64 * 4, s, &pre);
	}
	if (fw && L.has_dq) {
		/* dK, dV and dQ in one walk; dQ summed in fp32, then cast */
		size_t n = rows * p->d, eights = (size_t)p->Nq * p->d / 8;

		a.dq_acc = dp(base, L.dq);
		ret = ret ?: asam_cuda_err(d->drv->cuMemsetD32Async(
				(CUdeviceptr)(uintptr_t)a.dq_acc, 0, n, s),
				"cuMemsetD32Async");
		ret = ret ?: attn_launch(d, fw, c.ntiles[1], p->Hq, p->B, 128,
					 wsmem, s, &a);
		ret = ret ?: attn_launch(d, fcvt,
					 (unsigned)((eights + 255) / 256),
					 p->Hq, p->B, 256, 0, s, &a);
	} else {
		ret = ret ?: attn_launch(d, fdq, c.ntiles[0], p->Hq, p->B, 128,
					 attn_smem_bytes(2 * CL_T + 4 * 64,
							 p->d) + 2 * 64 * 4,
					 s, &a);
		ret = ret ?: attn_launch(d, fkv, c.ntiles[1], p->Hq, p->B, 128,
					 attn_smem_bytes(4 * CL_T, p->d) +
					 1024 + 256, s, &a);
	}
	if (!ret && fsum) {
		c.part = a.cl_part_k;
		c.dst = p->dk.data;
		c.d_sb = a.dk_sb; c.d_sh = a.dk_sh; c.d_sn = a.dk_sn;
		ret = attn_launch(d, fsum, p->Nk, p->Hkv, p->B, p->d / 2, 0,
				  s, &c);
		c.part = a.cl_part_v;
		c.dst = p->dv.data;
		c.d_sb = a.dv_sb; c.d_sh = a.dv_sh; c.d_sn = a.dv_sn;
		ret = ret ?: attn_launch(d, fsum, p->Nk, p->Hkv, p->B,
					 p->d / 2, 0, s, &c);
	}
	if (!ret && fdg)
		ret = attn_launch(d, fdg, p->Hq, p->B, 1, 32, 0, s, &a);
	return clus_release(d, s, own, ret);
}

int asam_cuda_cluster_update(struct asam_backend *be,
			     const struct asam_problem *p, float decay)
{
	struct asam_cuda_device *d = asam_cuda_device_of(be, p->dev.device_id);
	struct attn_clus_params c;
	struct asam_jit_spec spec;
	struct clus_layout L;
	CUdeviceptr base = 0, own = 0;
	CUstream s = p->stream;
	CUfunction fu;
	int ret;

	if (!d)
		return asam_err(-ENODEV, "cuda:%d is not in this context",
				p->dev.device_id);
	if (p->dt != ASAM_DT_F16 && p->dt != ASAM_DT_BF16)
		return asam_err(-EOPNOTSUPP, "q: cuda cluster update takes float16 or bfloat16");
	if (p->d != 64 && p->d != 128)
		return asam_err(-EOPNOTSUPP, "q: head dim %d; the cuda kernels take 64 and 128",
				p->d);
	if (((uintptr_t)p->q.data & 15) || ((uintptr_t)p->k.data & 15) ||
	    (attn_st(&p->q, 2) & 7) || (attn_st(&p->k, 2) & 7) ||
	    (attn_st(&p->q, 1) & 7) || (attn_st(&p->k, 1) & 7) ||
	    (attn_st(&p->q, 0) & 7) || (attn_st(&p->k, 0) & 7))
		return asam_err(-EOPNOTSUPP, "cuda cluster update needs 16-byte aligned rows");
	ret = clus_assign_supports(p);
	ret = ret ?: asam_cuda_device_enter(d);
	ret = ret ?: clus_spec(&spec, d, p);
	ret = ret ?: attn_get_fn(d, &spec, "asam_clus_update_kernel", false,
				 &fu);
	if (ret)
		return ret;
	clus_layout(p, 0, 0, false, true, false, &L);
	/* no workspace here: always borrowed, and the call waits */
	ret = asam_cuda_malloc(d, L.bytes, &own);
	if (ret)
		return ret;
	base = own;
	ret = clus_prepare(d, p, false, &L, base, s, &c);
	if (!ret) {
		c.decay = decay;
		ret = attn_launch(d, fu, p->pat.C, p->Hq, 1, p->d, 0, s, &c);
	}
	return clus_release(d, s, own, ret);
}

/*
 * For the selftests: the cluster of every query and key as the GPU
 * assigns it ([B, Hq, Nq] and [B, Hq, Nk], int32, host memory).
 */
int asam_cuda_clus_assign_to_host(struct asam_cuda_device *d,
				  const struct asam_problem *p, int32_t *cq,
				  int32_t *ck)
{
	struct attn_clus_params c;
	struct clus_layout L;
	CUdeviceptr own;
	size_t bh = (size_t)p->B * p->Hq;
	int ret = clus_assign_supports(p);

	ret = ret ?: asam_cuda_device_enter(d);
	if (ret)
		return ret;
	clus_layout(p, 0, 0, false, false, false, &L);
	ret = asam_cuda_malloc(d, L.bytes, &own);
	if (ret)
		return ret;
	ret = clus_prepare(d, p, false, &L, own, NULL, &c);
	ret = ret ?: asam_cuda_memcpy_dtoh(d, cq, own + L.cl[0],
					   4 * bh * p->Nq, NULL, false);
	ret = ret ?: asam_cuda_memcpy_dtoh(d, ck, own + L.cl[1],
					   4 * bh * p->Nk, NULL, false);
	asam_cuda_free(d, own);
	return ret;
}
