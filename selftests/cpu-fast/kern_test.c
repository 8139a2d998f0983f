// SPDX-License-Identifier: MIT
/*
 * The gathered-row kernels of every usable ISA against plain loops in
 * double: dots (one row against scattered key rows), axpys (scattered
 * value rows summed into one), over head dims 16..160 (the AVX-512
 * kernels have register paths for 32, 64 and 128 and a loop for the
 * rest), 0..70 keys (partial 16-key passes), and a row stride wider
 * than the row (keys read in place from a larger tensor); ger2s (two
 * rank-one updates of scattered dK, dV rows) over the same head dims;
 * mm_tn (the backward's dK, dV products, P read transposed); top2t (the
 * cluster screen's running best, runner-up and first argmax) against the
 * scalar scan in order, value for value, with ties, NaNs and masked
 * columns; mm_ntc (mm_nt's first columns) against mm_nt; scatter (one
 * key's row added into the rows that take it) in double; tgather (rows
 * gathered transposed) value for value.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/kselftest.h"
#include "../../arch/cpu/fast.h"

#define STRIDE	176
#define NROWS	300

static float K[NROWS * STRIDE] __attribute__((aligned(64)));
static float q[STRIDE] __attribute__((aligned(64)));
static float s[96] __attribute__((aligned(64)));
static float acc[STRIDE] __attribute__((aligned(64)));
static int32_t keys[80], ukeys[80];	/* ukeys: distinct (ger2s) */
static float G[NROWS * STRIDE], H[NROWS * STRIDE];
static float s_a[80], s_b[80];

/* fp32 lanes a vector of @isa: mm_ntc writes whole vectors */
static int isa_vw(const struct fast_isa *isa)
{
	return !strcmp(isa->name, "avx512") ? 16 :
	       !strcmp(isa->name, "avx2") ? 8 : 4;
}

static double rel(double x, double y)
{
	return fabs(x - y) / (1 + fabs(y));
}

static bool check_isa(const struct fast_isa *isa)
{
	double worst_d = 0, worst_a = 0, worst_g = 0, worst_m = 0, want;
	int dp, n, t, e, i;

	for (dp = 16; dp <= 160; dp += 16)
		for (n = 0; n <= 70; n++) {
			memset(s, 0, sizeof(s));
			isa->dots(q, dp, K, STRIDE, keys, n, s);
			for (t = 0; t < n; t++) {
				want = 0;
				for (e = 0; e < dp; e++)
					want += (double)q[e] *
						K[keys[t] * STRIDE + e];
				if (rel(s[t], want) > worst_d)
					worst_d = rel(s[t], want);
			}
			for (e = 0; e < dp; e++)
				acc[e] = 0.01f * e;
			isa->axpys(q, K, STRIDE, keys, n, dp, acc);
			for (e = 0; e < dp; e++) {
				want = 0.01f * e;
				for (t = 0; t < n; t++)
					want += (double)q[t] *
						K[keys[t] * STRIDE + e];
				if (rel(acc[e], want) > worst_a)
					worst_a = rel(acc[e], want);
			}
		}
	/* ger2s: rows of X (dp wide) += a[t] x and of Y += b[t] y */
	for (dp = 16; dp <= 160; dp += 16)
		for (n = 0; n <= 70; n += 7) {
			int u, j;

			for (i = 0; i < NROWS * dp; i++)
				G[i] = H[i] = 0.001f * (i % 97);
			isa->ger2s(s_a, q, s_b, K, G, H, ukeys, n, dp);
			for (u = 0; u < n; u++)
				for (e = 0; e < dp; e++) {
					j = ukeys[u] * dp + e;
					want = 0.001f * (j % 97) +
					       (double)s_a[u] * q[e];
					if (rel(G[j], want) > worst_g)
						worst_g = rel(G[j], want);
					want = 0.001f * (j % 97) +
					       (double)s_b[u] * K[e];
					if (rel(H[j], want) > worst_g)
						worst_g = rel(H[j], want);
				}
		}
	/*
	 * mm_tn: C[m][dp] += P^T X with P [k rows][64] (the backward's
	 * 16 query rows by 64 keys), m keys, k rows (X and C dp wide)
	 */
	for (dp = 16; dp <= 160; dp += 16)
		for (n = 1; n <= 64; n += 9) {
			int r, kr = 1 + n % 16;

			for (i = 0; i < 64 * dp; i++)
				G[i] = 0.001f * (i % 97);
			isa->mm_tn(K, 64, n, kr, K + 40 * STRIDE, dp, G);
			for (t = 0; t < n; t++)
				for (e = 0; e < dp; e++) {
					want = 0.001f * ((t * dp + e) % 97);
					for (r = 0; r < kr; r++)
						want += (double)K[r * 64 + t] *
							K[40 * STRIDE + r * dp + e];
					if (rel(G[t * dp + e], want) > worst_m)
						worst_m = rel(G[t * dp + e], want);
				}
		}
	ksft_test_result(worst_m < 1e-5, "%s mm_tn worst %.3g\n", isa->name,
			 worst_m);
	ksft_test_result(worst_g < 1e-5, "%s ger2s worst %.3g\n", isa->name,
			 worst_g);
	ksft_test_result(worst_d < 1e-5, "%s dots worst %.3g\n", isa->name,
			 worst_d);
	ksft_test_result(worst_a < 1e-5, "%s axpys worst %.3g\n", isa->name,
			 worst_a);
	return worst_d < 1e-5 && worst_a < 1e-5 && worst_g < 1e-5 &&
	       worst_m < 1e-5;
}

/* the scan top2t replaces: centroids in order, token by token */
static void top2_scan(const float *c, int n, int nc, const float *rx,
		      const float *cn, float *best, float *second,
		      int32_t *arg)
{
	int r, t;

	for (r = 0; r < n; r++) {
		best[r] = second[r] = -INFINITY;
		arg[r] = 0;
	}
	for (t = 0; t < nc; t++)
		for (r = 0; r < n; r++) {
			float cs = c[t * 64 + r] * rx[r] * cn[t];
			bool up = cs > best[r];
			float lo = up ? best[r] : cs;

			second[r] = lo > second[r] ? lo : second[r];
			arg[r] = up ? t : arg[r];
			best[r] = up ? cs : best[r];
		}
}

static float C2[192 * 64] __attribute__((aligned(64)));
static float cn2[192] __attribute__((aligned(64)));

/*
 * 1..192 centroids x 1..64 tokens, values from a few levels so that
 * ties are common, a NaN now and then, tokens scaled by 0 (all zeros of
 * either sign: equal, though a tie may keep the other zero); every
 * result must equal the scan's
 */
static bool check_top2(const struct fast_isa *isa)
{
	float b1[64], s1[64], b2[64], s2[64], rx[64];
	int32_t a1[64], a2[64];
	int nc, n, r, i, bad = 0, runs = 0;

	for (nc = 1; nc <= 192; nc += nc < 70 ? 1 : 11)
		for (n = 1 + nc % 3; n <= 64; n += 7 + nc % 5) {
			for (i = 0; i < 64 * nc; i++)
				C2[i] = (float)(rand() % 9) - 4;
			if (nc % 5 == 0)
				C2[rand() % (64 * nc)] = NAN;
			for (i = 0; i < nc; i++)
				cn2[i] = 0.25f * (1 + rand() % 3);
			for (r = 0; r < 64; r++)
				rx[r] = r % 7 ? 0.5f : 0;
			top2_scan(C2, n, nc, rx, cn2, b1, s1, a1);
			isa->top2t(C2, n, nc, rx, cn2, b2, s2, a2);
			for (r = 0; r < n; r++, runs++)
				bad += b1[r] != b2[r] || s1[r] != s2[r] ||
				       a1[r] != a2[r];
		}
	ksft_test_result(!bad, "%s top2t %d of %d tokens differ\n",
			 isa->name, bad, runs);
	/*
	 * mm_ntc: mm_nt's first nc columns, the same sums in the same
	 * order, c's rows 64 apart and wider (a bucket's scores, whose
	 * columns past nc's vectors stay as they were)
	 */
	for (nc = 1, runs = 0; nc <= 64; nc++) {
		static float full[13 * 64], part[13 * 200];
		int dp = 16 * (1 + nc % 5), m = 1 + nc % 13;
		int ldc = nc % 2 ? 64 : 64 + 16 * (nc % 9), nv;

		isa->mm_nt(K, m, dp, K + 50 * STRIDE, full);
		for (i = 0; i < 13 * 200; i++)
			part[i] = -7;
		isa->mm_ntc(K, m, dp, K + 50 * STRIDE, part, ldc, nc);
		nv = (nc + isa_vw(isa) - 1) / isa_vw(isa) * isa_vw(isa);
		for (r = 0; r < m; r++)
			for (i = 0; i < ldc; i++)
				runs += i < nc ?
					full[r * 64 + i] != part[r * ldc + i] :
					i >= nv && part[r * ldc + i] != -7;
	}
	ksft_test_result(!runs, "%s mm_ntc %d values differ\n", isa->name,
			 runs);
	/* scatter: rows ukeys[t] of G (dp wide) += s_a[t] q, in double */
	{
		double worst = 0, want;
		int dp, e, u, j;

		for (dp = 16; dp <= 160; dp += 16)
			for (nc = 0; nc <= 70; nc += 7) {
				for (i = 0; i < NROWS * dp; i++)
					G[i] = 0.001f * (i % 97);
				isa->scatter(s_a, q, G, ukeys, nc, dp);
				for (u = 0; u < NROWS; u++)
					for (e = 0; e < dp; e++) {
						j = u * dp + e;
						want = 0.001f * (j % 97);
						for (i = 0; i < nc; i++)
							if (ukeys[i] == u)
								want += (double)s_a[i] * q[e];
						if (rel(G[j], want) > worst)
							worst = rel(G[j], want);
					}
			}
		ksft_test_result(worst < 1e-5, "%s scatter worst %.3g\n",
				 isa->name, worst);
		bad += worst >= 1e-5;
	}
	/* tgather: keyed and contiguous rows, transposed, zero padded */
	{
		static float T[160 * 64];
		int dp, nt, e, t, k, wrong = 0;

		for (dp = 16; dp <= 160; dp += 16)
			for (nt = 0; nt <= 64; nt += (nt < 20 ? 1 : 7))
				for (k = 0; k < 2; k++) {
					for (i = 0; i < dp * 64; i++)
						T[i] = NAN;
					isa->tgather(K, STRIDE, k ? keys : NULL,
						     nt, dp, T);
					for (e = 0; e < dp; e++)
						for (t = 0; t < 64; t++)
							wrong += T[e * 64 + t] !=
								 (t >= nt ? 0 :
								  K[(k ? keys[t] : t) *
								    STRIDE + e]);
				}
		ksft_test_result(!wrong, "%s tgather %d values wrong\n",
				 isa->name, wrong);
		bad += wrong != 0;
	}
	return !bad && !runs;
}

int main(void)
{
	static const char *isas[] = { "avx512", "avx2", "generic" };
	int i;

	ksft_print_header();
	srand(7);
	for (i = 0; i < NROWS * STRIDE; i++)
		K[i] = (float)rand() / RAND_MAX - 0.5f;
	for (i = 0; i < STRIDE; i++)
		q[i] = (float)rand() / RAND_MAX;
	for (i = 0; i < 80; i++) {
		keys[i] = rand() % NROWS;
		ukeys[i] = (i * 37 + 11) % NROWS;	/* distinct */
		s_a[i] = (float)rand() / RAND_MAX - 0.5f;
		s_b[i] = (float)rand() / RAND_MAX - 0.5f;
	}
	for (i = 0; i < 3; i++) {
		if (fast_isa_force(isas[i])) {
			ksft_test_result_skip("%s: not usable here\n", isas[i]);
			continue;
		}
		check_isa(fast_isa_select());
		check_top2(fast_isa_select());
	}
	fast_isa_force(NULL);
	ksft_finished();
}
