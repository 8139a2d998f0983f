// SPDX-License-Identifier: MIT
/*
 * Host side of the non-deterministic backward (jit/kernels/attn_bwd_nd.cuh):
 * used for DENSE, LOCAL and RANDOM when the caller did not ask for
 * ASAM_F_DETERMINISTIC.  One kernel per (b, kv head, 64-key tile) computes
 * dK, dV and adds each query tile's dS K into an fp32 dQ workspace, so S
 * and dP are computed once instead of twice (the deterministic pair of
 * kernels recomputes both in its dQ kernel).  On Hopper the wgmma kernel
 * (jit/kernels/attn_bwd_sm90.cu, 128 keys a block) takes the walks it
 * serves: no lists, or LOCAL's, RANDOM's, STRIDED's and HIERARCHICAL's
 * with the SPARSE gate.  The column patterns have no mma.sync kernel
 * here (their column keys have a deterministic one of their own):
 * attn_bwd_nd_launch() refuses them where the wgmma one does not serve.
 */
#include <errno.h>
#include <stdlib.h>

#include <internal/cuda.h>
#include <internal/problem.h>

#include "attn_bwd_nd.h"
#include "attn_cols.h"
#include "attn_sm90.h"

#define ND_T		64	/* key and query tiles, as the dK/dV kernel */

/*
 * ASAM_CUDA_BWD_ND, for measurements: "0" the deterministic kernels
 * always, "1" the 64-key kernel also where the 128-key one would run
 * (with ASAM_CUDA_SM90_BWD=0 on Hopper: the wgmma kernel comes first).
 */
static int nd_mode(void)
{
	const char *env = getenv("ASAM_CUDA_BWD_ND");

	if (env && (env[0] == '0' || env[0] == '1') && !env[1])
		return env[0] - '0';
	return 2;
}

bool attn_bwd_nd_use(const struct asam_problem *p)
{
	if ((p->flags & ASAM_F_DETERMINISTIC) || !nd_mode())
		return false;
	return p->pat.kind == ASAM_PATTERN_DENSE ||
	       p->pat.kind == ASAM_PATTERN_LOCAL ||
	       p->pat.kind == ASAM_PATTERN_RANDOM ||
	       (attn_cols_kind(p->pat.kind) &&
		p->gate_mode == ASAM_GATE_SPARSE);
}

size_t attn_bwd_nd_offset(const struct asam_problem *p)
{
	size_t rows = (size_t)p->B * p->Hq * p->Nq;

	return (2 * sizeof(float) * rows + 255) & ~(size_t)255;
}

size_t attn_bwd_ws_bytes(const struct asam_problem *p)
{
	size_t rows = (size_t)p->B * p->Hq * p->Nq;

	if (!attn_bwd_nd_use(p))
		return 2 * sizeof(float) * rows;
	return attn_bwd_nd_offset(p) + sizeof(float) * rows * p->d;
}

int attn_bwd_nd_launch(struct asam_cuda_device *d,
		       const struct asam_jit_spec *spec, bool cap,
		       struct attn_bwd_params *a, const struct asam_problem *p,
		       CUdeviceptr acc, CUstream s)
{
	size_t n = (size_t)p->B * p->Hq * p->Nq * p->d;
	size_t eights = (size_t)p->Nq * p->d / 8;	/* dqcvt's threads */
	/* without lists: 128-key tiles, double-buffered Q and dO */
	bool wide = (p->pat.kind == ASAM_PATTERN_DENSE ||
		     p->gate_mode == ASAM_GATE_DENSE) && nd_mode() == 2;
	int kn = wide ? 2 * ND_T : ND_T, threads = wide ? 256 : 128;
	/* K, V; Q, dO twice; row statistics twice; dS once or twice */
	unsigned smem = attn_smem_bytes(2 * kn + 4 * ND_T, p->d) + 2048 +
			(wide ? 2 : 1) * kn * (ND_T + 8) * 2;
	struct attn_sm90_bwd w = { 0 };
	CUfunction fnd, fcvt;
	int ret;

	/* Hopper: the same walk on wgmma where it serves */
	ret = attn_sm90_bwd_fn(d, p, cap, true, &w);
	if (!ret) {
		fnd = w.f;
		smem = w.smem;
		kn = w.keys;
		threads = 2 * kn;	/* a warpgroup per 64 keys */
	} else if (ret == -EOPNOTSUPP && attn_cols_kind(p->pat.kind)) {
		return ret;	/* nothing launched: the caller's pair runs */
	} else if (ret == -EOPNOTSUPP) {
		ret = attn_get_fn(d, spec, wide ? "asam_attn_bwd_nd128_kernel" :
				  "asam_attn_bwd_nd_kernel", cap, &fnd);
	}
	ret = ret ?: attn_get_fn(d, spec, "asam_attn_bwd_dqcvt_kernel", cap,
				 &fcvt);
	if (ret)
		return ret;
	a->dq_acc = (float *)(uintptr_t)acc;
	if (n)
		ret = asam_cuda_err(d->drv->cuMemsetD32Async(acc, 0, n, s),
				    "cuMemsetD32Async");
	ret = ret ?: attn_launch(d, fnd, (p->Nk + kn - 1) / kn, p->Hkv,
				 p->B, threads, smem, s, a);
	/* the column entries after the band: they add to its dK, dV rows */
	if (!ret && w.fcols && a->ncol > 0)
		ret = attn_launch(d, w.fcols, (a->ncol + w.ckeys - 1) / w.ckeys,
				  p->Hkv, p->B, 2 * w.ckeys, w.csmem, s, a);
	return ret ?: attn_launch(d, fcvt, (unsigned)((eights + 255) / 256),
				  p->Hq, p->B, 256, 0, s, a);
}
