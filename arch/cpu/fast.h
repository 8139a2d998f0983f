/* SPDX-License-Identifier: MIT */
/*
 * The fast CPU backend ("cpu"): shared definitions.
 *
 * The hot loops live in per-ISA kernels (fast-generic.c, x86/fast-avx2.c,
 * x86/fast-avx512.c), each the same source (fast-kern.h) compiled with its
 * own flags.  Which one runs is chosen at run time by a score from CPUID,
 * never by the build machine.  Everything else (planning the key sets,
 * online softmax, threading) is ISA-independent and lives in fast.c and
 * fast-plan.c.
 */
#ifndef ASAM_ARCH_CPU_FAST_H
#define ASAM_ARCH_CPU_FAST_H

#include <stdbool.h>
#include <stdint.h>

#include <internal/pattern.h>
#include <internal/problem.h>

#define FAST_TQ		16	/* query rows per group */
#define FAST_KB		64	/* keys per block */
#define FAST_MAXD	512

/*
 * One ISA's kernels.  Matrices are fp32, rows 64-byte aligned, dp (the
 * head dim padded to 16) columns, zero padding.
 *
 * mm_nt: C[m][64] = A[m][dp] . BT[dp][64]
 * mm_nn: C[m][dp] += P[m][k] . X[k][dp]   (P row stride ldp)
 * mm_tn: C[m][dp] += P[k][m]^T . X[k][dp] (P row stride ldp)
 * exp:   x[t] = exp(x[t]) for t < n, n a multiple of 16; x >= -87 is
 *	  accurate to a few ulp, smaller values flush towards 0
 * row_step: one row's masked softmax step over a 64-key block
 */
struct fast_isa {
	const char *name;
	void (*mm_nt)(const float *a, int m, int dp, const float *bt,
		      float *c);
	/*
	 * mm_nt's first nc columns (whole vectors), the rest untouched,
	 * c's rows ldc apart
	 */
	void (*mm_ntc)(const float *a, int m, int dp, const float *bt,
		       float *c, int ldc, int nc);
	void (*mm_nn)(const float *p, int ldp, int m, int k, const float *x,
		      int dp, float *c);
	void (*mm_tn)(const float *p, int ldp, int m, int k, const float *x,
		      int dp, float *c);
	void (*exp)(float *x, int n);
	float (*row_step)(const float *s, uint64_t mask, float m,
			  bool find_max, float *P, float *sum);
	double (*peak)(long iters);	/* FMA throughput probe: flops */
	/* one row against scattered rows: row t is base + keys[t] * stride */
	void (*dots)(const float *q, int dp, const float *base,
		     int64_t stride, const int32_t *keys, int n, float *s);
	/* s[0..n) = exp(s - max), zeros to the vector's end; the max */
	float (*row_exp)(float *s, int n, float *sum);
	void (*axpys)(const float *P, const float *base, int64_t stride,
		      const int32_t *keys, int n, int dp, float *acc);
	/* X[keys[t]] += a[t] x and Y[keys[t]] += b[t] y (rows of dp) */
	void (*ger2s)(const float *a, const float *x, const float *b,
		      const float *y, float *X, float *Y,
		      const int32_t *keys, int n, int dp);
	/*
	 * CLUSTERED's screen: token r's best, runner-up and argmax of
	 * c[t][r] * rx[r] * cn[t] over t < nc, r < n <= 64 (c rows 64 apart)
	 */
	void (*top2t)(const float *c, int n, int nc, const float *rx,
		      const float *cn, float *best, float *second,
		      int32_t *arg);
	/* X[rows[t]] += a[t] x (rows of dp, rows[] distinct) */
	void (*scatter)(const float *a, const float *x, float *X,
			const int32_t *rows, int n, int dp);
	/*
	 * T[e][t] = (base + keys[t] * stride)[e] (base + t * stride without
	 * keys), t < n <= 64, e < dp, T rows 64 apart, columns n..63 zero
	 */
	void (*tgather)(const float *base, int64_t stride,
			const int32_t *keys, int n, int dp, float *T);
};

/*
 * For tools/asam-bench (linked statically): the chosen ISA's name, the
 * FMA peak probe, and one product kernel over cache-resident operands
 * (which: 0 = Q.K^T, 1 = P.V, FAST_TQ rows, 64 keys); both return flops.
 */
const char *asam_cpu_bench_isa(void);
double asam_cpu_bench_peak(long iters);
double asam_cpu_bench_kernel(int which, int dp, long iters);

extern const struct fast_isa fast_isa_generic, fast_isa_avx2,
	fast_isa_avx512;

/* The best usable ISA; ASAM_CPU_ISA=generic|avx2|avx512 caps the choice. */
const struct fast_isa *fast_isa_select(void);
/* Force an ISA by name (tests); NULL restores the automatic choice. */
int fast_isa_force(const char *name);

/* ------------------------------------------------------------------------ */
/* Planning: which keys each query row attends (fast-plan.c)               */

/* RANDOM_ROWS lists kept between calls (they depend on no tensor) */
struct fast_rows_cache {
	uint64_t seed;
	int Hq, Nq, Nk, rr;
	int32_t *rows;
};

struct fast_plan {
	const struct asam_problem *p;
	int64_t qoff;			/* Nk - Nq */
	/* HIERARCHICAL */
	uint8_t *hier_tab;		/* [Hq][1 << nscales] */
	int hier_band;			/* max_k s_k / 4 */
	uint64_t *hier_bw;		/* [Hq][period] band words, or NULL */
	int64_t hier_period;		/* the scales' lcm */
	int32_t *hier_cols;		/* [Hq][Nk] global columns ... */
	int32_t *hier_ncols;		/* [Hq] ... and their count */
	/* STRIDED: the columns j % s == 0, shared by every head */
	int32_t *str_cols;
	int64_t str_ncols;
	/* RANDOM_ROWS */
	int rr;
	int32_t *rows;			/* [Hq][Nq][rr], each row sorted */
	bool rows_cached;		/* owned by the cache, not freed */
	/* CLUSTERED ARGMAX, per (b, h) */
	int32_t *cq;			/* [B][Hq][Nq] query cluster */
	int32_t *kid;			/* [B][Hq][Nk] key cluster */
	int32_t *korder;		/* [B][Hq][Nk] keys sorted by cluster */
	int32_t *kstart;		/* [B][Hq][C + 1] bucket starts */
	int32_t *qorder;		/* [B][Hq][Nq] queries sorted by cluster */
	int32_t *ngroups;		/* [B][Hq] */
	int32_t *gstart;		/* [B][Hq][maxgroups + 1] into qorder */
	int maxgroups;			/* groups per (b, h) at most */
	int group_rows;			/* FAST_TQ, or 1 for per-row patterns */
	bool per_row_plan;		/* CLUSTERED SOFT: asam_pat_row */
	bool sorted_groups;
	bool oom;			/* a planning worker ran out */		/* CLUSTERED ARGMAX: groups by cluster */
};

struct asam_pool;

/* @cache: where RANDOM_ROWS lists persist (caller holds its lock), or NULL */
int fast_plan_init(struct fast_plan *fp, const struct asam_problem *p,
		   struct asam_pool *pool, struct fast_rows_cache *cache);
void fast_plan_fini(struct fast_plan *fp);

/* Rows of group g of (b, h): *rows[0..n) (query indices); 0 = no group. */
int fast_plan_group(const struct fast_plan *fp, int b, int h, int g,
		    int32_t *rows);

/*
 * Sorted allowed keys (< lim) of query row i for (b, h) in the sparse
 * branch; @tmp is an asam_pat_plan prepared for (b, h) when
 * per_row_plan is set, with @bytes an Nk scratch row.  Returns the count.
 */

/* HIERARCHICAL: the allowed keys of [lo, hi) at @pos as a row's bits */
void fast_hier_band(const struct fast_plan *fp, int h, int64_t pos,
		    int64_t lo, int64_t hi, uint64_t *bits, int64_t blo);

uint64_t fast_hier_word(const struct fast_plan *fp, int h, int64_t pos,
			int64_t lo, int64_t hi, int64_t base);

/* first index in sorted a[0..n) with a[t] >= x (gathered column lists) */
int64_t fast_lower_bound(const int32_t *a, int64_t n, int64_t x);

int64_t fast_plan_row(const struct fast_plan *fp, int b, int h, int64_t i,
		      int64_t lim, int32_t *out, struct asam_pat_plan *tmp,
		      uint8_t *bytes);

#endif
