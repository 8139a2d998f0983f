// SPDX-License-Identifier: MIT
/*
 * Key-tile lists for the CUDA attention kernels (see attn_plan.h and
 * jit/kernels/attn_params.cuh for the entry format).
 *
 * LOCAL: a query tile's band is one range of key tiles; the tiles wholly
 * inside the band for every row are full.  RANDOM (block form): the key
 * tile is the 64-key block, each 64-query group of the tile draws its own
 * blocks (SPEC 3.1), and an entry records which groups took it; it is full
 * when every group of the tile did.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <internal/err.h>
#include <internal/pattern.h>

#include "attn_plan.h"
#include "../../jit/kernels/attn_params.cuh"

void attn_plan_free(struct attn_plan *pl)
{
	free(pl->off);
	free(pl->list);
	pl->off = NULL;
	pl->list = NULL;
}

size_t attn_plan_bytes(const struct attn_plan *pl)
{
	size_t n = (size_t)pl->nh * pl->nqt + 1;

	return sizeof(int) * (n + (size_t)pl->off[n - 1]);
}

static int local_count(const struct asam_pat *pat, int q0, int q1, int Nq,
		       int Nk, int bn, int *lo, int *hi)
{
	int64_t off = Nk - Nq, plo = q0 + off - pat->radius,
		phi = q1 + off + pat->radius;

	if (plo < 0)
		plo = 0;
	if (phi > Nk - 1)
		phi = Nk - 1;
	if (phi < plo)
		return 0;
	*lo = plo / bn;
	*hi = phi / bn;
	return *hi - *lo + 1;
}

static int cmp_int(const void *a, const void *b)
{
	int x = ATTN_E_TILE(*(const int *)a), y = ATTN_E_TILE(*(const int *)b);

	return (x > y) - (x < y);
}

int attn_plan_build(struct attn_plan *pl, const struct asam_pat *pat,
		    int Hq, int Nq, int Nk, int bm, int bn)
{
	int nqt = (Nq + bm - 1) / bm, nkt = (Nk + bn - 1) / bn;
	int groups = bm / ASAM_RANDOM_BLOCK, rb = 0, h, t, n, cap;
	int64_t *blk = NULL;

	memset(pl, 0, sizeof(*pl));
	pl->nqt = nqt;
	pl->nh = pat->kind == ASAM_PATTERN_RANDOM ? Hq : 1;
	if (pat->kind == ASAM_PATTERN_RANDOM) {
		if (bn != ASAM_RANDOM_BLOCK || bm % ASAM_RANDOM_BLOCK ||
		    groups > 2)
			return asam_err(-EINVAL, "attn plan: tile %dx%d does not fit RANDOM blocks",
					bm, bn);
		rb = (pat->r + ASAM_RANDOM_BLOCK - 1) / ASAM_RANDOM_BLOCK;
		cap = groups * rb;
		blk = malloc(sizeof(*blk) * (rb ? rb : 1));
		if (!blk)
			return -ENOMEM;
	} else if (pat->kind == ASAM_PATTERN_LOCAL) {
		cap = 0;
		for (t = 0; t < nqt; t++) {
			int lo, hi, q1 = (t + 1) * bm - 1;

			n = local_count(pat, t * bm, q1 < Nq ? q1 : Nq - 1,
					Nq, Nk, bn, &lo, &hi);
			cap = n > cap ? n : cap;
		}
	} else {
		return asam_err(-EOPNOTSUPP, "attn plan: pattern %s has no tile list",
				asam_pattern_name(pat->kind));
	}
	pl->off = calloc((size_t)pl->nh * nqt + 1, sizeof(int));
	pl->list = malloc(sizeof(int) * ((size_t)pl->nh * nqt * cap + 1));
	if (!pl->off || !pl->list) {
		free(blk);
		attn_plan_free(pl);
		return -ENOMEM;
	}
	n = 0;
	for (h = 0; h < pl->nh; h++) {
		for (t = 0; t < nqt; t++) {
			int q0 = t * bm, q1 = q0 + bm - 1, *row = pl->list + n;
			int m = 0, lo, hi, k, g;

			if (q1 > Nq - 1)
				q1 = Nq - 1;
			pl->off[h * nqt + t] = n;
			if (pat->kind == ASAM_PATTERN_LOCAL) {
				int64_t off = Nk - Nq;
				int cntl = local_count(pat, q0, q1, Nq, Nk, bn,
						       &lo, &hi);

				for (k = 0; k < cntl; k++) {
					int64_t k0 = (int64_t)(lo + k) * bn;
					int64_t k1 = k0 + bn - 1 < Nk ?
						     k0 + bn - 1 : Nk - 1;
					int full = q1 + off - k0 <= pat->radius &&
						   k1 - (q0 + off) <= pat->radius;

					row[m++] = (lo + k) |
						   (full ? ATTN_E_FULL : 0);
				}
			} else {
				int ng = 0, all = 0;

				for (g = 0; g < groups; g++) {
					int64_t I = q0 / ASAM_RANDOM_BLOCK + g;
					int c, x;

					if (I * ASAM_RANDOM_BLOCK >= Nq)
						break;
					ng++;
					all |= 1 << g;
					c = asam_random_blocks(pat->seed, h, I,
							       rb, nkt, blk);
					for (x = 0; x < c; x++) {
						int y;

						for (y = 0; y < m; y++)
							if (ATTN_E_TILE(row[y]) ==
							    blk[x])
								break;
						if (y == m)
							row[m++] = (int)blk[x];
						row[y] |= 1 << (ATTN_E_GROUPS_SHIFT + g);
					}
				}
				for (k = 0; k < m; k++)
					if (((row[k] >> ATTN_E_GROUPS_SHIFT) &
					     all) == all)
						row[k] |= ATTN_E_FULL;
				(void)ng;
			}
			qsort(row, m, sizeof(int), cmp_int);
			n += m;
		}
	}
	pl->off[pl->nh * nqt] = n;
	free(blk);
	return 0;
}

/*
 * The lists by key tile, for the backward's dK/dV pass: entry = query tile
 * with the same flags, sorted by query tile.
 */
int attn_plan_transpose(const struct attn_plan *pl, int nkt,
			struct attn_plan *t)
{
	int h, q, x, n = pl->off[pl->nh * pl->nqt];
	int *fill;

	memset(t, 0, sizeof(*t));
	t->nqt = nkt;
	t->nh = pl->nh;
	t->off = calloc((size_t)pl->nh * nkt + 1, sizeof(int));
	t->list = malloc(sizeof(int) * ((size_t)n + 1));
	fill = calloc((size_t)pl->nh * nkt + 1, sizeof(int));
	if (!t->off || !t->list || !fill) {
		free(fill);
		attn_plan_free(t);
		return -ENOMEM;
	}
	for (h = 0; h < pl->nh; h++)
		for (q = 0; q < pl->nqt; q++)
			for (x = pl->off[h * pl->nqt + q];
			     x < pl->off[h * pl->nqt + q + 1]; x++)
				t->off[h * nkt + ATTN_E_TILE(pl->list[x]) + 1]++;
	for (x = 0; x < pl->nh * nkt; x++)
		t->off[x + 1] += t->off[x];
	for (h = 0; h < pl->nh; h++)
		for (q = 0; q < pl->nqt; q++)
			for (x = pl->off[h * pl->nqt + q];
			     x < pl->off[h * pl->nqt + q + 1]; x++) {
				int e = pl->list[x], k = h * nkt + ATTN_E_TILE(e);

				t->list[t->off[k] + fill[k]++] =
					q | (e & ~0xffffff);
			}
	free(fill);
	return 0;
}
