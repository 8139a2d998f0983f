// SPDX-License-Identifier: MIT
/*
 * Key-major row tiles for RANDOM_ROWS and USER_INDEX (sparse branch only).
 *
 * Row by row, every allowed pair reads its key's K and V rows (8 cache
 * lines at d = 64 fp32) from wherever the head's K and V are, and the
 * backward also adds into that key's dK and dV rows: scattered lines
 * that miss the L2 once a head's K and V pass its size (2 MB at N 4096,
 * d 64), one pair at a time.  A tile of rows shares its keys, though:
 * 256 rows of 128 keys out of 4096 take each key ~8 times.  So the tile
 * is turned around: its pairs sorted by key (a counting sort, O(pairs +
 * the tile's key span)), and each key's K and V rows read once, in
 * ascending order (a stream the hardware prefetches), against the
 * tile's query rows, which stay in L1/L2:
 *
 *   forward:  scores key by key (dots of the key's row against the
 *             rows' q), each row's softmax over its whole list, then
 *             the value rows added key by key into the rows' sums;
 *   backward: per key, P and dS of its pairs, dK and dV of the key as
 *             sums over its pairs (one write a key a tile, not a pair),
 *             dQ of the rows as scattered adds into the tile's rows.
 *
 * The per-row state, the lists and the scores all stay in the worker's
 * scratch.  Whether this pays is the host's to say: ASAM_CPU_ROWS_KMAJOR
 * = 0 turns it off (the row walk of fast-fwd.c / fast-bwd.c); asking
 * for L2 chunks (ASAM_CPU_ROWS_L2) also selects the row walk.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <internal/compiler.h>

#include "fast-job.h"

/*
 * Key-major when the tile's pairs outnumber the key span it sorts over
 * by this much at least (the sort and the key walk are O(span) a tile).
 */
#define KM_SPAN_PER_PAIR	2

/*
 * Rows a tile (ASAM_CPU_KM_RT overrides, up to FAST_RT): more rows share
 * more of each key's reads, but their q, dO and dQ rows (768 B a row at
 * d 64) must stay in the L2 beside the streams
 */
#define KM_RT			512

/* the longest list a row can have */
static int64_t km_most(const struct fast_job *job)
{
	const struct asam_problem *p = job->p;

	if (p->pat.kind == ASAM_PATTERN_RANDOM_ROWS)
		return job->fp.rr;
	return p->pat.r < p->Nk ? p->pat.r : p->Nk;
}

void fast_km_setup(struct fast_job *job)
{
	const struct asam_problem *p = job->p;
	const char *env = getenv("ASAM_CPU_ROWS_KMAJOR");
	const char *l2 = getenv("ASAM_CPU_ROWS_L2"), *rt;
	int cap;

	job->kmajor = false;
	if (!job->rows_only ||
	    (p->pat.kind != ASAM_PATTERN_RANDOM_ROWS &&
	     p->pat.kind != ASAM_PATTERN_USER_INDEX))
		return;
	if ((env && *env && !strcmp(env, "0")) || (l2 && *l2))
		return;
	/*
	 * The backward by default; the forward with ASAM_CPU_ROWS_KMAJOR=1
	 * (build host, 2026-11-27: key-major forward 1.5 x slower than the
	 * row walk, its scattered adds into the rows' sums and the sort
	 * costing more than the L3 reads they save there; the backward
	 * 0.85-0.92 x).  The backward runs whole (b, kv head) items, so
	 * its tiles need not spread; the forward's tiles are its items.
	 */
	if (!p->bwd && !(env && *env && strcmp(env, "0")))
		return;
	rt = getenv("ASAM_CPU_KM_RT");
	cap = rt && *rt ? atoi(rt) : KM_RT;
	cap = cap < 1 ? 1 : cap > FAST_RT ? FAST_RT : cap;
	job->rt = fast_rows_tile(job, cap, !p->bwd);
	if ((int64_t)job->rt * km_most(job) * KM_SPAN_PER_PAIR < p->Nk)
		return;
	job->kmajor = true;
	job->kmcap = (int64_t)job->rt * (km_most(job) + 16);
}

/*
 * Tile rows' lists (w->tkeys[t], w->tn[t], t < R) by key: pair slots in
 * w->kmrow (the row) and, if allocated (forward), w->kmpos (its index in
 * the rows' score array, each row's scores starting on a 16-float
 * boundary at w->kmoff[t]); key
 * j's slots end at w->kmcst[j] and start where key j - 1's end (or 0
 * at *lo).  Returns the key span [*lo, *hi], empty when *lo > *hi.
 */
static void km_sort(const struct fast_job *job, struct fast_ws *w, int R,
		    int64_t *lo, int64_t *hi)
{
	int32_t *cst = w->kmcst, *off = w->kmoff;
	int64_t a = job->p->Nk, z = -1, j, s = 0;
	int t, x;

	for (t = 0; t < R; t++) {
		const int32_t *k = w->tkeys[t];

		off[t] = (int32_t)s;
		s += (w->tn[t] + 15) & ~15;
		for (x = 0; x < w->tn[t]; x++) {
			a = k[x] < a ? k[x] : a;
			z = k[x] > z ? k[x] : z;
		}
	}
	*lo = a;
	*hi = z;
	if (a > z)
		return;
	/* counts at j + 1, starts by a prefix sum, then the fill moves
	 * each start to its key's end */
	memset(cst + a, 0, sizeof(int32_t) * (z - a + 2));
	for (t = 0; t < R; t++)
		for (x = 0; x < w->tn[t]; x++)
			cst[w->tkeys[t][x] + 1]++;
	for (j = a + 1; j <= z + 1; j++)
		cst[j] += cst[j - 1];
	for (t = 0; t < R; t++) {
		const int32_t *k = w->tkeys[t];

		if (!w->kmpos) {	/* the backward needs no score slots */
			for (x = 0; x < w->tn[t]; x++)
				w->kmrow[cst[k[x]]++] = t;
			continue;
		}
		for (x = 0; x < w->tn[t]; x++) {
			int32_t slot = cst[k[x]]++;

			w->kmrow[slot] = t;
			w->kmpos[slot] = off[t] + x;
		}
	}
}

/*
 * The forward of the tile's R rows (scaled queries in w->tq, lists in
 * w->tkeys / w->tn): w->tacc the value sums, w->tm and w->tl each row's
 * max and sum, as fwd_tile's row walk leaves them.
 */
void fast_km_fwd(struct fast_job *job, struct fast_ws *w, int R,
		 const float *kb, int64_t ks, const float *vb, int64_t vs)
{
	const struct fast_isa *isa = job->isa;
	int dp = job->dp, t, x, m;
	int64_t lo, hi, j, st;
	float *s = w->kms, *tmp = w->kmt;

	km_sort(job, w, R, &lo, &hi);
	for (t = 0; t < R; t++) {
		w->tm[t] = -INFINITY;
		w->tl[t] = 0;
		memset(w->tacc + (size_t)t * dp, 0, sizeof(float) * dp);
	}
	if (lo > hi)
		return;
	/* scores, key by key, into each row's place */
	for (j = lo, st = 0; j <= hi; st = w->kmcst[j++]) {
		m = (int)(w->kmcst[j] - st);
		if (!m)
			continue;
		isa->dots(kb + j * ks, dp, w->tq, dp, w->kmrow + st, m, tmp);
		for (x = 0; x < m; x++)
			s[w->kmpos[st + x]] = tmp[x];
	}
	/* each row's softmax numerators over its whole list */
	for (t = 0; t < R; t++)
		if (w->tn[t])
			w->tm[t] = isa->row_exp(s + w->kmoff[t], w->tn[t],
						&w->tl[t]);
	/* value rows, key by key, into the rows' sums */
	for (j = lo, st = 0; j <= hi; st = w->kmcst[j++]) {
		m = (int)(w->kmcst[j] - st);
		if (!m)
			continue;
		for (x = 0; x < m; x++)
			tmp[x] = s[w->kmpos[st + x]];
		isa->scatter(tmp, vb + j * vs, w->tacc, w->kmrow + st, m, dp);
	}
}

/*
 * The fused backward of the tile's R rows: scaled queries in w->tq, dO
 * in w->tdo, lse in w->tm, D in w->tl, lists in w->tkeys / w->tn.  Adds
 * into dK, dV rows (w->dK, w->dV, dp apart, the head's keys) and leaves
 * the rows' unscaled dQ in w->tacc.
 */
void fast_km_bwd(struct fast_job *job, struct fast_ws *w, int R,
		 const float *kb, int64_t ks, const float *vb, int64_t vs)
{
	const struct fast_isa *isa = job->isa;
	int dp = job->dp, t, x, m, m16;
	int64_t lo, hi, j, st;
	float *P = w->kmt, *dS = w->kmt2;
	const int32_t *rw;

	km_sort(job, w, R, &lo, &hi);
	for (t = 0; t < R; t++)
		memset(w->tacc + (size_t)t * dp, 0, sizeof(float) * dp);
	for (j = lo, st = 0; j <= hi; st = w->kmcst[j++]) {
		const float *kr = kb + j * ks, *vr = vb + j * vs;

		m = (int)(w->kmcst[j] - st);
		if (!m)
			continue;
		rw = w->kmrow + st;
		m16 = (m + 15) & ~15;
		isa->dots(kr, dp, w->tq, dp, rw, m, P);
		for (x = 0; x < m; x++)
			P[x] -= w->tm[rw[x]];
		for (; x < m16; x++)
			P[x] = 0;
		isa->exp(P, m16);
		isa->dots(vr, dp, w->tdo, dp, rw, m, dS);
		for (x = 0; x < m; x++)
			dS[x] = P[x] * (dS[x] - w->tl[rw[x]]);
		isa->axpys(dS, w->tq, dp, rw, m, dp, w->dK + j * dp);
		isa->axpys(P, w->tdo, dp, rw, m, dp, w->dV + j * dp);
		isa->scatter(dS, kr, w->tacc, rw, m, dp);
	}
}
