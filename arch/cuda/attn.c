// SPDX-License-Identifier: MIT
/*
 * CUDA attention: the host side of jit/kernels/attn_{fwd,bwd}.cu.
 *
 * A call builds the JIT specialisation (head dim, dtype, causal, gate mode,
 * pattern, tile), gets the image from the JIT (memory, disk, NVRTC), loads
 * it once per device and keeps the function; the pattern's key-tile lists
 * (arch/cuda/attn_plan.c) are built once per (device, pattern, N, tile)
 * and kept on the device.  Launches go on the caller's stream and nothing
 * synchronises, except a backward given no workspace, which borrows
 * device memory for its row sums and waits for the stream before freeing
 * it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <internal/backend.h>
#include <internal/cuda.h>
#include <internal/err.h>
#include <internal/jit.h>
#include <internal/kconfig.h>
#include <internal/log.h>
#include <internal/problem.h>

#include "attn_clus.h"
#include "attn_bwd_nd.h"
#include "attn_int.h"
#include "attn_plan.h"
#include "attn_rows.h"
#include "attn_sm90.h"
#include "attn_cols.h"
#include "../../jit/kernels/attn_params.cuh"

#define FWD_BM		128	/* 32 rows a warp: the fastest measured */
#define FWD_WARPS	4
#define BWD_T		64	/* backward tiles are 64 x 64, 4 warps */
#define MAX_FUNCS	256
#define MAX_PLANS	128

struct fn_entry {
	int ordinal;
	struct asam_jit_spec spec;
	const char *entry;
	CUfunction fn;
};

struct plan_entry {
	int ordinal, kind, radius, r, Hq, Nq, Nk, bm, transposed;
	uint64_t seed;
	CUdeviceptr mem;
	int nh, nqt;
};

static pthread_mutex_t attn_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fn_entry fns[MAX_FUNCS];
static int nfns;
static struct plan_entry plans[MAX_PLANS];
static int nplans;

int attn_smem_bytes(int rows, int d)
{
	return rows * (d + 8) * 2;
}

int attn_arch_of(const struct asam_cuda_device *d)
{
	return d->cc_major * 10 + d->cc_minor;
}

/* Load (once per device) entry @entry of specialisation @spec. */
int attn_get_fn(struct asam_cuda_device *d, const struct asam_jit_spec *spec,
		  const char *entry, bool capturing, CUfunction *out)
{
	const struct asam_jit_image *img;
	CUmodule mod;
	CUfunction fn;
	int i, ret;

	if (!IS_ENABLED(CONFIG_JIT_NVRTC))
		return asam_err(-EOPNOTSUPP,
				"cuda attention: the JIT is not built; enable CONFIG_JIT_NVRTC");
	pthread_mutex_lock(&attn_lock);
	for (i = 0; i < nfns; i++)
		if (fns[i].ordinal == d->ordinal && fns[i].entry == entry &&
		    asam_jit_spec_equal(&fns[i].spec, spec)) {
			*out = fns[i].fn;
			pthread_mutex_unlock(&attn_lock);
			return 0;
		}
	ret = capturing ? asam_jit_get_nocompile(spec, &img) :
			  asam_jit_get(spec, &img);
	if (!ret)
		ret = asam_cuda_module_load(d, img->data, &mod);
	if (!ret)
		ret = asam_cuda_err(d->drv->cuModuleGetFunction(&fn, mod, entry),
				    "cuModuleGetFunction");
	if (!ret)
		ret = asam_cuda_err(d->drv->cuFuncSetAttribute(fn,
				CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
				d->smem_per_block_optin), "cuFuncSetAttribute");
	if (!ret && nfns < MAX_FUNCS) {
		fns[nfns].ordinal = d->ordinal;
		fns[nfns].spec = *spec;
		fns[nfns].entry = entry;
		fns[nfns++].fn = fn;
	}
	pthread_mutex_unlock(&attn_lock);
	if (!ret)
		*out = fn;
	return ret;
}

int attn_make_spec(struct asam_jit_spec *s, const char *family,
		     const struct asam_cuda_device *d,
		     const struct asam_problem *p, int gate, int bm, int nw,
		     int pre)
{
	int ret = asam_jit_spec_init(s, family, attn_arch_of(d));

	ret = ret ?: asam_jit_spec_set(s, "HEAD_DIM", p->d);
	ret = ret ?: asam_jit_spec_set(s, "DTYPE", p->dt);
	ret = ret ?: asam_jit_spec_set(s, "CAUSAL", p->causal);
	ret = ret ?: asam_jit_spec_set(s, "GATE_MODE", gate);
	ret = ret ?: asam_jit_spec_set(s, "PATTERN", p->pat.kind);
	ret = ret ?: asam_jit_spec_set(s, "BLOCK_M", bm);
	ret = ret ?: asam_jit_spec_set(s, "BLOCK_N", 64);
	ret = ret ?: asam_jit_spec_set(s, "NUM_WARPS", nw);
	if (pre)
		ret = ret ?: asam_jit_spec_set(s, "BWD_PRE", 1);
	return ret;
}

/*
 * The key-tile lists of @p's pattern for query tiles of @bm rows (by key
 * tile when @transposed), built and uploaded once, then kept.
 */
static int get_plan(struct asam_cuda_device *d, const struct asam_problem *p,
		    int bm, int transposed, const int **off, const int **list,
		    int *per_head)
{
	const struct asam_pat *pat = &p->pat;
	struct attn_plan pl, tp, *use;
	struct plan_entry *e;
	CUdeviceptr mem;
	size_t n;
	int i, ret, Hq = pat->kind == ASAM_PATTERN_RANDOM ? p->Hq : 1;

	pthread_mutex_lock(&attn_lock);
	for (i = 0; i < nplans; i++) {
		e = &plans[i];
		if (e->ordinal == d->ordinal && e->kind == (int)pat->kind &&
		    e->radius == pat->radius && e->r == pat->r &&
		    e->seed == pat->seed && e->Hq == Hq && e->Nq == p->Nq &&
		    e->Nk == p->Nk && e->bm == bm &&
		    e->transposed == transposed)
			goto found;
	}
	if (nplans == MAX_PLANS) {
		pthread_mutex_unlock(&attn_lock);
		return asam_err(-ENOSPC, "cuda attention: more than %d tile-list shapes in one process",
				MAX_PLANS);
	}
	ret = attn_plan_build(&pl, pat, Hq, p->Nq, p->Nk, bm, 64);
	if (ret)
		goto out;
	use = &pl;
	if (transposed) {
		ret = attn_plan_transpose(&pl, (p->Nk + 63) / 64, &tp);
		attn_plan_free(&pl);
		if (ret)
			goto out;
		use = &tp;
	}
	n = (size_t)use->nh * use->nqt + 1;
	ret = asam_cuda_malloc(d, attn_plan_bytes(use) + 4, &mem);
	if (!ret)
		ret = asam_cuda_memcpy_htod(d, mem, use->off, n * sizeof(int),
					    NULL, false);
	if (!ret)
		ret = asam_cuda_memcpy_htod(d, mem + n * sizeof(int), use->list,
					    use->off[n - 1] * sizeof(int) + 4,
					    NULL, false);
	if (ret) {
		attn_plan_free(use);
		goto out;
	}
	e = &plans[nplans++];
	*e = (struct plan_entry){ .ordinal = d->ordinal, .kind = pat->kind,
		.radius = pat->radius, .r = pat->r, .seed = pat->seed,
		.Hq = Hq, .Nq = p->Nq, .Nk = p->Nk, .bm = bm,
		.transposed = transposed, .mem = mem, .nh = use->nh,
		.nqt = use->nqt };
	attn_plan_free(use);
found:
	n = (size_t)e->nh * e->nqt + 1;
	*off = (const int *)(uintptr_t)e->mem;
	*list = (const int *)(uintptr_t)(e->mem + n * sizeof(int));
	*per_head = e->nh > 1;
	ret = 0;
out:
	pthread_mutex_unlock(&attn_lock);
	return ret;
}

long long attn_st(const struct asam_tv *t, int i)
{
	return t->stride[i];
}

#define ST(t, i) attn_st(&p->t, (i))

int asam_cuda_attn_supports(struct asam_backend *be,
			    const struct asam_problem *p)
{
	struct asam_cuda_device *d = asam_cuda_device_of(be, p->dev.device_id);
	const struct asam_tv *t[] = { &p->q, &p->k, &p->v, &p->o, &p->d_o,
				      &p->dq, &p->dk, &p->dv };
	int i;

	if (!d)
		return asam_err(-ENODEV, "cuda:%d is not in this context",
				p->dev.device_id);
	if (!IS_ENABLED(CONFIG_JIT_NVRTC))
		return asam_err(-EOPNOTSUPP,
				"cuda attention needs the JIT; enable CONFIG_JIT_NVRTC");
	if (d->cc_major < 8)
		return asam_err(-EOPNOTSUPP, "cuda:%d: sm_%d%d lacks mma.sync bf16 (sm_80 or later)",
				d->ordinal, d->cc_major, d->cc_minor);
	if (p->dt != ASAM_DT_F16 && p->dt != ASAM_DT_BF16)
		return asam_err(-EOPNOTSUPP, "q: cuda attention takes float16 or bfloat16");
	if (p->d != 64 && p->d != 128)
		return asam_err(-EOPNOTSUPP, "q: head dim %d; the cuda kernels take 64 and 128",
				p->d);
	switch (p->pat.kind) {
	case ASAM_PATTERN_DENSE:
	case ASAM_PATTERN_LOCAL:
	case ASAM_PATTERN_RANDOM:
	case ASAM_PATTERN_RANDOM_ROWS:	/* arch/cuda/attn_rows.c */
	case ASAM_PATTERN_USER_INDEX:
	case ASAM_PATTERN_STRIDED:	/* band + columns, attn_cols.c */
	case ASAM_PATTERN_HIERARCHICAL:
		break;
	case ASAM_PATTERN_CLUSTERED:
		i = asam_cuda_clus_supports(p);
		if (i)
			return i;
		break;
	default:
		return asam_err(-EOPNOTSUPP, "pattern %s has no cuda kernel yet",
				asam_pattern_name(p->pat.kind));
	}
	if (p->Nk >= (1 << 24) / 2 || p->Nq >= (1 << 24) / 2)
		return asam_err(-EOPNOTSUPP, "sequence of %d tokens: too long for the tile lists",
				p->Nq > p->Nk ? p->Nq : p->Nk);
	/* cp.async moves 16 bytes: rows and bases 16-byte aligned */
	for (i = 0; i < (int)(sizeof(t) / sizeof(t[0])); i++) {
		if (!t[i]->data)
			continue;
		if (((uintptr_t)t[i]->data & 15) || (attn_st(t[i], 0) & 7) ||
		    (attn_st(t[i], 1) & 7) || (attn_st(t[i], 2) & 7))
			return asam_err(-EOPNOTSUPP, "cuda attention needs 16-byte aligned rows (tensor %d)",
					i);
	}
	if ((p->lse_s.data && p->lse_s.dt != ASAM_DT_F32) ||
	    (p->lse_d.data && p->lse_d.dt != ASAM_DT_F32))
		return asam_err(-EOPNOTSUPP, "lse: cuda attention writes float32");
	if ((p->lse_s.data && p->lse_s.stride[2] != 1) ||
	    (p->lse_d.data && p->lse_d.stride[2] != 1) ||
	    (p->lse_s.data && p->lse_d.data &&
	     (p->lse_s.stride[0] != p->lse_d.stride[0] ||
	      p->lse_s.stride[1] != p->lse_d.stride[1])))
		return asam_err(-EOPNOTSUPP, "lse: cuda attention needs equal, row-contiguous lse strides");
	if (attn_smem_bytes(FWD_BM + 4 * 64, p->d) > d->smem_per_block_optin)
		return asam_err(-EOPNOTSUPP, "cuda:%d: %d bytes of shared memory a block is too little",
				d->ordinal, d->smem_per_block_optin);
	return 0;
}

int asam_cuda_attn_workspace_size(struct asam_backend *be,
				  const struct asam_problem *p, size_t *bytes)
{
	int ret;

	if (attn_rows_kind(p))
		return asam_cuda_rows_workspace_size(be, p, bytes);
	ret = asam_cuda_attn_supports(be, p);
	*bytes = 0;
	if (ret)
		return ret;
	if (p->pat.kind == ASAM_PATTERN_CLUSTERED) {
		*bytes = asam_cuda_clus_workspace(p);
		return 0;
	}
	if (p->bwd)	/* the row sums <dO, S> and <dO, A>, maybe dQ's */
		*bytes = attn_bwd_ws_bytes(p);
	return 0;
}

int attn_launch(struct asam_cuda_device *d, CUfunction f, unsigned gx,
		  unsigned gy, unsigned gz, unsigned threads, unsigned smem,
		  CUstream s, void *params)
{
	void *args[] = { params };

	if (!gx || !gy || !gz)
		return 0;
	return asam_cuda_err(d->drv->cuLaunchKernel(f, gx, gy, gz, threads, 1,
						    1, smem, s, args, NULL),
			     "cuLaunchKernel");
}

void attn_fill_fwd(struct attn_fwd_params *a, const struct asam_problem *p)
{
	memset(a, 0, sizeof(*a));
	a->q = p->q.data; a->k = p->k.data; a->v = p->v.data;
	a->o = p->o.data;
	a->gate = p->gate.data;
	a->len_q = p->len_q.data;
	a->len_k = p->len_k.data;
	a->q_sb = ST(q, 0); a->q_sh = ST(q, 1); a->q_sn = ST(q, 2);
	a->k_sb = ST(k, 0); a->k_sh = ST(k, 1); a->k_sn = ST(k, 2);
	a->v_sb = ST(v, 0); a->v_sh = ST(v, 1); a->v_sn = ST(v, 2);
	if (p->o.data) {
		a->o_sb = ST(o, 0); a->o_sh = ST(o, 1); a->o_sn = ST(o, 2);
	}
	if (p->lse_s.data) {
		a->l_sb = ST(lse_s, 0); a->l_sh = ST(lse_s, 1);
	} else if (p->lse_d.data) {
		a->l_sb = ST(lse_d, 0); a->l_sh = ST(lse_d, 1);
	}
	if (p->gate.data) {
		a->g_sb = ST(gate, 0); a->g_sh = ST(gate, 1);
	}
	a->lq_s = p->len_q.data ? attn_st(&p->len_q, 0) : 0;
	a->lk_s = p->len_k.data ? attn_st(&p->len_k, 0) : 0;
	a->B = p->B; a->Hq = p->Hq; a->Hkv = p->Hkv;
	a->Nq = p->Nq; a->Nk = p->Nk;
	a->radius = p->pat.radius;
	a->scale_log2 = (float)(p->scale * 1.4426950408889634);
	a->hard_tau = p->hard_tau;
	a->reverse = p->causal;
}

void attn_fill_bwd(struct attn_bwd_params *a, const struct asam_problem *p,
		   const struct attn_fwd_params *pre, int tile)
{
	a->q = p->q.data; a->k = p->k.data; a->v = p->v.data;
	a->d_o = p->d_o.data;
	a->dq = p->dq.data; a->dk = p->dk.data; a->dv = p->dv.data;
	a->lse_s = p->lse_s.data; a->lse_d = p->lse_d.data;
	a->dsum_s = pre->dsum_s; a->dsum_d = pre->dsum_d;
	a->gate = p->gate.data;
	a->dgate = p->dgate.data;
	a->len_q = p->len_q.data; a->len_k = p->len_k.data;
	a->q_sb = pre->q_sb; a->q_sh = pre->q_sh; a->q_sn = pre->q_sn;
	a->k_sb = pre->k_sb; a->k_sh = pre->k_sh; a->k_sn = pre->k_sn;
	a->v_sb = pre->v_sb; a->v_sh = pre->v_sh; a->v_sn = pre->v_sn;
	a->do_sb = pre->do_sb; a->do_sh = pre->do_sh; a->do_sn = pre->do_sn;
	a->dq_sb = ST(dq, 0); a->dq_sh = ST(dq, 1); a->dq_sn = ST(dq, 2);
	a->dk_sb = ST(dk, 0); a->dk_sh = ST(dk, 1); a->dk_sn = ST(dk, 2);
	a->dv_sb = ST(dv, 0); a->dv_sh = ST(dv, 1); a->dv_sn = ST(dv, 2);
	a->l_sb = pre->l_sb; a->l_sh = pre->l_sh;
	a->g_sb = pre->g_sb; a->g_sh = pre->g_sh;
	if (p->dgate.data) {
		a->dg_sb = ST(dgate, 0); a->dg_sh = ST(dgate, 1);
	}
	a->lq_s = pre->lq_s; a->lk_s = pre->lk_s;
	a->B = p->B; a->Hq = p->Hq; a->Hkv = p->Hkv;
	a->Nq = p->Nq; a->Nk = p->Nk;
	a->nqt = pre->nqt;
	a->nkt = (p->Nk + tile - 1) / tile;
	a->scale_log2 = pre->scale_log2;
	a->scale = (float)p->scale;
}

int attn_capturing_of(struct asam_cuda_device *d, CUstream s, bool *cap)
{
	*cap = false;
	return asam_cuda_stream_capturing(d, s, cap);
}

void attn_fill_pre(struct attn_fwd_params *pre, const struct asam_problem *p,
		   int tile)
{
	pre->o = NULL;
	pre->nqt = (p->Nq + tile - 1) / tile;
	pre->reverse = 0;
	pre->d_o = p->d_o.data;
	pre->do_sb = attn_st(&p->d_o, 0);
	pre->do_sh = attn_st(&p->d_o, 1);
	pre->do_sn = attn_st(&p->d_o, 2);
}

int attn_bwd_launch_det(struct asam_cuda_device *d, CUfunction fdq,
			CUfunction fkv, const struct asam_problem *p,
			CUstream s, struct attn_bwd_params *a)
{
	int ret;

	ret = attn_launch(d, fdq, a->nqt, p->Hq, p->B, 128,
			  attn_smem_bytes(2 * BWD_T + 4 * 64, p->d), s, a);
	return ret ?: attn_launch(d, fkv, a->nkt, p->Hkv, p->B, 128,
				  attn_smem_bytes(4 * BWD_T, p->d) + 1024, s,
				  a);
}

int attn_get_plan(struct asam_cuda_device *d, const struct asam_problem *p,
		  int bm, const int **off, const int **list, int *per_head)
{
	return get_plan(d, p, bm, 0, off, list, per_head);
}

/* One forward launch of gate @gate over @p's tiles, mixing as @mix says. */
static int fwd_launch(struct asam_cuda_device *d, const struct asam_problem *p,
		      bool cap, int gate, int mix, float *lse_s, float *lse_d)
{
	int bm = FWD_BM, nw = FWD_WARPS;
	struct asam_jit_spec spec;
	struct attn_fwd_params a;
	CUfunction f;
	int ret;

	ret = attn_make_spec(&spec, "attn_fwd", d, p, gate, bm, nw, 0);
	ret = ret ?: attn_get_fn(d, &spec, "asam_attn_fwd_kernel", cap, &f);
	if (ret)
		return ret;
	attn_fill_fwd(&a, p);
	a.nqt = (p->Nq + bm - 1) / bm;
	a.lse_s = lse_s;
	a.lse_d = lse_d;
	a.mix = mix;
	if (attn_cols_kind(p->pat.kind) && gate != ASAM_GATE_DENSE) {
		struct attn_cols_dev c;

		ret = attn_cols_get(d, p, bm, 0, &c);
		if (ret)
			return ret;
		attn_cols_fill_fwd(&a, &c);
	} else if (p->pat.kind != ASAM_PATTERN_DENSE &&
		   gate != ASAM_GATE_DENSE) {
		ret = get_plan(d, p, bm, 0, &a.list_off, &a.list,
			       &a.list_per_head);
		if (ret)
			return ret;
	}
	return attn_launch(d, f, a.nqt, p->Hq, p->B, nw * 32,
			   attn_smem_bytes(bm + 4 * 64, p->d), p->stream, &a);
}

int asam_cuda_attn_fwd(struct asam_backend *be, const struct asam_problem *p)
{
	struct asam_cuda_device *d = asam_cuda_device_of(be, p->dev.device_id);
	float *ls = p->lse_s.data, *ld = p->lse_d.data;
	bool cap;
	int ret;

	if (attn_rows_kind(p))
		return asam_cuda_rows_fwd(be, p);
	if (p->pat.kind == ASAM_PATTERN_CLUSTERED)
		return asam_cuda_clus_fwd(be, p);
	ret = asam_cuda_attn_supports(be, p);
	ret = ret ?: asam_cuda_device_enter(d);
	ret = ret ?: attn_capturing_of(d, p->stream, &cap);
	if (ret)
		return ret;
	if (attn_sm90_serves(d, p))	/* Hopper: wgmma forward */
		return attn_sm90_fwd(d, p, cap);
	if (p->gate_mode != ASAM_GATE_SOFT)
		return fwd_launch(d, p, cap, p->gate_mode, ATTN_MIX_NONE, ls,
				  ld);
	/*
	 * SOFT: one launch with two softmax states only fits 16 rows a
	 * warp, and 32 are a third faster; two one-state launches at the
	 * fast shape cost the dense pass plus the (sparse) pattern's pass.
	 */
	if (attn_sm90_serves_dense(d, p)) {	/* Hopper: wgmma */
		if (p->pat.kind == ASAM_PATTERN_DENSE)
			return attn_sm90_fwd_mix(d, p, cap, ASAM_GATE_DENSE,
						 ATTN_MIX_SAME, ls, ld);
		ret = attn_sm90_fwd_mix(d, p, cap, ASAM_GATE_DENSE,
					ATTN_MIX_DENSE, NULL, ld);
	} else if (p->pat.kind == ASAM_PATTERN_DENSE) {
		return fwd_launch(d, p, cap, ASAM_GATE_DENSE, ATTN_MIX_SAME,
				  ls, ld);
	} else {
		ret = fwd_launch(d, p, cap, ASAM_GATE_DENSE, ATTN_MIX_DENSE,
				 NULL, ld);
	}
	if (ret)
		return ret;
	if (attn_sm90_serves_list(d, p))
		return attn_sm90_fwd_mix(d, p, cap, ASAM_GATE_SPARSE,
					 ATTN_MIX_SPARSE, ls, NULL);
	return fwd_launch(d, p, cap, ASAM_GATE_SPARSE, ATTN_MIX_SPARSE, ls,
			  NULL);
}

int asam_cuda_attn_bwd(struct asam_backend *be, const struct asam_problem *p)
{
	struct asam_cuda_device *d = asam_cuda_device_of(be, p->dev.device_id);
	size_t rows = (size_t)p->B * p->Hq * p->Nq, need;
	struct asam_jit_spec sp, sb;
	struct attn_fwd_params pre;
	struct attn_bwd_params a;
	CUfunction fpre, fdq, fkv, fdg = NULL, fcols = NULL;
	struct attn_cols_dev cl = { 0 }, ct;
	CUdeviceptr ws = 0, own = 0;
	CUstream s = p->stream;
	int ret, use_list;
	bool cap, nd;

	if (attn_rows_kind(p))
		return asam_cuda_rows_bwd(be, p);
	if (p->pat.kind == ASAM_PATTERN_CLUSTERED)
		return asam_cuda_clus_bwd(be, p);
	ret = asam_cuda_attn_supports(be, p);
	ret = ret ?: asam_cuda_device_enter(d);
	ret = ret ?: attn_capturing_of(d, s, &cap);
	ret = ret ?: attn_make_spec(&sp, "attn_fwd", d, p, p->gate_mode, BWD_T, 4, 1);
	ret = ret ?: attn_make_spec(&sb, "attn_bwd", d, p, p->gate_mode, BWD_T, 4, 0);
	/* one branch: D_i = <dO_i, O_i> straight from O (see attn_fwd.cu) */
	ret = ret ?: attn_get_fn(d, &sp, p->gate_mode == ASAM_GATE_SOFT ?
				 "asam_attn_fwd_kernel" :
				 "asam_attn_rowdot_kernel", cap, &fpre);
	ret = ret ?: attn_get_fn(d, &sb, "asam_attn_bwd_dq_kernel", cap, &fdq);
	ret = ret ?: attn_get_fn(d, &sb, "asam_attn_bwd_dkdv_kernel", cap, &fkv);
	if (!ret && p->gate_mode == ASAM_GATE_SOFT)
		ret = attn_get_fn(d, &sb, "asam_attn_bwd_dg_kernel", cap, &fdg);
	if (!ret && attn_cols_kind(p->pat.kind) &&
	    p->gate_mode != ASAM_GATE_DENSE)
		ret = attn_get_fn(d, &sb, "asam_attn_bwd_cols_kernel", cap,
				  &fcols);
	if (ret)
		return ret;

	attn_fill_fwd(&pre, p);
	memset(&a, 0, sizeof(a));
	use_list = p->pat.kind != ASAM_PATTERN_DENSE &&
		   p->gate_mode != ASAM_GATE_DENSE;
	if (use_list && fcols) {
		ret = attn_cols_get(d, p, BWD_T, 0, &cl);
		ret = ret ?: attn_cols_get(d, p, BWD_T, 1, &ct);
		if (ret)
			return ret;
		attn_cols_fill_fwd(&pre, &cl);
		attn_cols_fill_bwd(&a, &cl);
		a.tlist_off = ct.off;
		a.tlist = ct.list;
	} else if (use_list) {
		int ph;

		ret = get_plan(d, p, BWD_T, 0, &a.list_off, &a.list,
			       &a.list_per_head);
		ret = ret ?: get_plan(d, p, BWD_T, 1, &a.tlist_off, &a.tlist,
				      &ph);
		if (ret)
			return ret;
		pre.list_off = a.list_off;
		pre.list = a.list;
		pre.list_per_head = a.list_per_head;
	}

	nd = attn_bwd_nd_use(p);
	need = attn_bwd_ws_bytes(p);
	if (p->workspace && p->workspace_size >= need) {
		ws = (CUdeviceptr)(uintptr_t)p->workspace;
	} else {
		ret = asam_cuda_scratch_get(d, s, need, &own);
		if (ret)
			return ret;
		ws = own;
	}

	attn_fill_pre(&pre, p, BWD_T);
	pre.dsum_s = p->gate_mode != ASAM_GATE_DENSE ?
		     (float *)(uintptr_t)ws : NULL;
	pre.dsum_d = p->gate_mode != ASAM_GATE_SPARSE ?
		     (float *)(uintptr_t)(ws + sizeof(float) * rows) : NULL;

	attn_fill_bwd(&a, p, &pre, BWD_T);
	a.radius = fcols ? cl.R : p->pat.radius;

	if (p->gate_mode == ASAM_GATE_SOFT) {
		ret = attn_launch(d, fpre, pre.nqt, p->Hq, p->B, 128,
				  attn_smem_bytes(BWD_T + 4 * 64, p->d), s,
				  &pre);
	} else {
		int per = 256 / (p->d / 8);	/* a block's, 8 elements a lane */

		pre.o = p->o.data;
		ret = attn_launch(d, fpre, (p->Nq + per - 1) / per, p->Hq,
				  p->B, 256, 0, s, &pre);
	}
	if (!ret && nd) {
		ret = attn_bwd_nd_launch(d, &sb, cap, &a, p,
					 ws + attn_bwd_nd_offset(p), s);
		/* the columns' walks on wgmma only: else the pair below */
		if (ret == -EOPNOTSUPP && fcols) {
			nd = false;
			ret = 0;
		}
	}
	if (!ret && !nd)
		ret = attn_bwd_launch_det(d, fdq, fkv, p, s, &a);
	/* after the band's dK, dV: the columns add to their rows */
	if (!ret && fcols && !nd)
		ret = attn_launch(d, fcols, (cl.ncol + BWD_T - 1) / BWD_T,
				  p->Hkv, p->B, 128,
				  attn_smem_bytes(6 * BWD_T, p->d) + 1792, s,
				  &a);
	if (!ret && fdg)
		ret = attn_launch(d, fdg, p->Hq, p->B, 1, 32, 0, s, &a);
	if (own) {
		int r2 = asam_cuda_scratch_put(d, s, own);

		ret = ret ?: r2;
	}
	return ret;
}
