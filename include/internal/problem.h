/* SPDX-License-Identifier: MIT */
/*
 * struct asam_problem: one attention call after validation.  Every size is
 * checked, every tensor decoded into a view, every default resolved; a
 * backend trusts it and never re-validates.
 */
#ifndef ASAM_INTERNAL_PROBLEM_H
#define ASAM_INTERNAL_PROBLEM_H

#include <asam/asam.h>
#include <internal/tensor.h>

/* A pattern with its defaults resolved and its parameters checked. */
struct asam_pat {
	enum asam_pattern_kind kind;
	int radius;		/* LOCAL: W/2; STRIDED: L */
	int stride;		/* STRIDED */
	int nscales;		/* HIERARCHICAL */
	int scales[ASAM_MAX_SCALES];
	const float *weights;	/* [Hq][nscales], NULL = uniform */
	int r;			/* RANDOM, RANDOM_ROWS */
	uint64_t seed;
	int C;			/* CLUSTERED */
	enum asam_cluster_mode cmode;
	float temp, thresh;
	struct asam_tv centroids;	/* [Hq, C, d] */
	struct asam_tv index;		/* USER_INDEX: [B, Hkv, Nq, r] int32 */
};

struct asam_problem {
	int B, Hq, Hkv, Nq, Nk, d;
	enum asam_dtype dt;		/* of q, k, v, o and the gradients */
	DLDevice dev;
	double scale;
	bool causal;
	bool bwd;
	enum asam_gate_mode gate_mode;
	float hard_tau;
	unsigned int flags;
	struct asam_pat pat;

	/* [B,H,N,d] views; absent ones have data == NULL */
	struct asam_tv q, k, v, o, d_o, dq, dk, dv;
	struct asam_tv gate, dgate;		/* [B, Hq] fp32 */
	struct asam_tv len_q, len_k;		/* [B] int32 */
	struct asam_tv lse_s, lse_d;		/* [B, Hq, Nq] fp32/fp64 */

	void *workspace;
	size_t workspace_size;
	void *stream;
};

/* Which branches a gate mode computes. */
static inline bool problem_needs_sparse(const struct asam_problem *p)
{
	return p->gate_mode != ASAM_GATE_DENSE;
}

static inline bool problem_needs_dense(const struct asam_problem *p)
{
	return p->gate_mode != ASAM_GATE_SPARSE;
}

/* Valid lengths of batch b (len_* given or the full extent). */
static inline int problem_len_q(const struct asam_problem *p, int b)
{
	return p->len_q.data ? ((const int32_t *)p->len_q.data)[
		b * p->len_q.stride[0]] : p->Nq;
}

static inline int problem_len_k(const struct asam_problem *p, int b)
{
	return p->len_k.data ? ((const int32_t *)p->len_k.data)[
		b * p->len_k.stride[0]] : p->Nk;
}

/*
 * problem_key_limit() - the mask of SPEC 1 for query row i of batch b: keys
 * j < limit are allowed (causal and len_k), none when the row is padding.
 */
static inline int64_t problem_key_limit(const struct asam_problem *p, int b,
					int64_t i)
{
	int64_t lim = problem_len_k(p, b);

	if (i >= problem_len_q(p, b))
		return 0;
	if (p->causal && i + p->Nk - p->Nq + 1 < lim)
		lim = i + p->Nk - p->Nq + 1;
	return lim < 0 ? 0 : lim;
}

#endif
