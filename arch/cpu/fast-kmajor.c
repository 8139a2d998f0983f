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

/*
 * ... and the backward's where a core has at least KM_RT_L2 bytes of
 * L2: the 16-core Xeon (2 MB), 2026-11-27 15:25, N 4096 d 64, 16 heads:
 * tiles of 1024 rows 0.88 x the time of 512 on RANDOM_ROWS, 0.97 x on
 * USER_INDEX (the build host, 1 MB, measured 1024 slower: cpu11)
 */
#define KM_RT_BIG		1024
#define KM_RT_L2		(2 << 20)

/*
 * The forward goes key-major by default where a core has at least this
 * many bytes of L2 (0: nowhere).  The row walk's forward is bound by L3
 * latency where that is slow (the Xeon: 15.7 ns a pair a thread); on
 * the build host (1 MB L2, fast L3) the key-major scores were about
 * even with it, so the Xeon's run (cpu-device-run.sh: "kmfwd") decides.
 */
#define KM_FWD_L2_MIN		0

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
	if (!p->bwd && !(env && *env && strcmp(env, "0")) &&
	    !(KM_FWD_L2_MIN && fast_l2_bytes() >= KM_FWD_L2_MIN))
		return;
	rt = getenv("ASAM_CPU_KM_RT");
	cap = KM_RT;
	if (p->bwd && fast_l2_bytes() >= KM_RT_L2)
		cap = KM_RT_BIG;
	if (rt && *rt)
		cap = atoi(rt);
	cap = cap < 1 ? 1 : cap > FAST_RT ? FAST_RT : cap;
	job->rt = fast_rows_tile(job, cap, !p->bwd);
	if ((int64_t)job->rt * km_most(job) * KM_SPAN_PER_PAIR < p->Nk)
		return;
	job->kmajor = true;
	job->kmcap = (int64_t)job->rt * (km_most(job) + 16);
}

/*
 * Tile rows' lists (w->tkeys[t], w->tn[t], t < R) by key: pair slots in
 * w->kmrow (the row) and, if allocated (forward), the slot of row t's
 * x-th key at w->kmpos[w->kmoff[t] + x] (written in order: the slots'
 * own order is random); key j's slots end at w->kmcst[j] and start
 * where key j - 1's end (or 0 at *lo).  The keys to walk: [*lo, *hi].
 */
static void km_sort(const struct fast_job *job, struct fast_ws *w, int R,
		    int64_t *lo, int64_t *hi)
{
	int32_t *cst = w->kmcst, *off = w->kmoff, *row = w->kmrow;
	int64_t Nk = job->p->Nk, j, s = 0;
	int t, x;

	/*
	 * Over every key: O(Nk) a tile, which fast_km_setup bounds by the
	 * tile's pairs; finding the span first was a quarter of the sort
	 * (USER_INDEX lists are unordered)
	 */
	*lo = 0;
	*hi = Nk - 1;
	/* counts at j + 1, starts by a prefix sum, then the fill moves
	 * each start to its key's end */
	memset(cst, 0, sizeof(int32_t) * (Nk + 2));
	for (t = 0; t < R; t++) {
		const int32_t *k = w->tkeys[t];

		off[t] = (int32_t)s;
		s += w->tn[t];
		for (x = 0; x < w->tn[t]; x++)
			cst[k[x] + 1]++;
	}
	for (j = 1; j <= Nk; j++)
		cst[j] += cst[j - 1];
	for (t = 0; t < R; t++) {
		const int32_t *k = w->tkeys[t];
		int32_t *pos = w->kmpos ? w->kmpos + off[t] : NULL;
		int n = w->tn[t];

		if (!pos) {	/* the backward needs no score slots */
			for (x = 0; x < n; x++)
				row[cst[k[x]]++] = t;
			continue;
		}
		for (x = 0; x < n; x++) {
			int32_t slot = cst[k[x]]++;

			row[slot] = t;
			pos[x] = slot;		/* in order */
		}
	}
}

/*
 * The forward of the tile's R rows (scaled queries in w->tq, lists in
 * w->tkeys / w->tn): w->tacc the value sums, w->tm and w->tl each row's
 * max and sum, as fwd_tile's row walk leaves them.  Key-major for the
 * scores only: each K row read once against the tile's q rows; then row
 * by row, its scores gathered, its softmax and its value rows summed in
 * registers as the row walk does (adding
 * key by key into the rows' sums instead, a read and a write of a sum
 * row a pair, was 1.45 x the row walk's time on the build host).
 */
void fast_km_fwd(struct fast_job *job, struct fast_ws *w, int R,
		 const float *kb, int64_t ks, const float *vb, int64_t vs)
{
	const struct fast_isa *isa = job->isa;
	int dp = job->dp, t, x, m;
	int64_t lo, hi, j, st;
	float *s = w->kms, *p = w->srow;

	km_sort(job, w, R, &lo, &hi);
	for (t = 0; t < R; t++) {
		w->tm[t] = -INFINITY;
		w->tl[t] = 0;
		memset(w->tacc + (size_t)t * dp, 0, sizeof(float) * dp);
	}
	if (lo > hi)
		return;
	/* scores key by key, in key order */
	for (j = lo, st = 0; j <= hi; st = w->kmcst[j++]) {
		m = (int)(w->kmcst[j] - st);
		if (m)
			isa->dots(kb + j * ks, dp, w->tq, dp, w->kmrow + st, m,
				  s + st);
	}
	/* row by row: its scores gathered, its softmax, its value rows */
	for (t = 0; t < R; t++) {
		const int32_t *pos = w->kmpos + w->kmoff[t];

		if (!w->tn[t])
			continue;
		for (x = 0; x < w->tn[t]; x++)
			p[x] = s[pos[x]];
		w->tm[t] = isa->row_exp(p, w->tn[t], &w->tl[t]);
		isa->axpys(p, vb, vs, w->tkeys[t], w->tn[t], dp,
			   w->tacc + (size_t)t * dp);
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
