// SPDX-License-Identifier: MIT
/*
 * The gathered-row kernels of every usable ISA against plain loops in
 * double: dots (one row against scattered key rows), axpys (scattered
 * value rows summed into one), over head dims 16..160 (the AVX-512
 * kernels have register paths for 32, 64 and 128 and a loop for the
 * rest), 0..70 keys (partial 16-key passes), and a row stride wider
 * than the row (keys read in place from a larger tensor).
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
static int32_t keys[80];

static double rel(double x, double y)
{
	return fabs(x - y) / (1 + fabs(y));
}

static bool check_isa(const struct fast_isa *isa)
{
	double worst_d = 0, worst_a = 0, want;
	int dp, n, t, e;

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
	ksft_test_result(worst_d < 1e-5, "%s dots worst %.3g\n", isa->name,
			 worst_d);
	ksft_test_result(worst_a < 1e-5, "%s axpys worst %.3g\n", isa->name,
			 worst_a);
	return worst_d < 1e-5 && worst_a < 1e-5;
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
	for (i = 0; i < 80; i++)
		keys[i] = rand() % NROWS;
	for (i = 0; i < 3; i++) {
		if (fast_isa_force(isas[i])) {
			ksft_test_result_skip("%s: not usable here\n", isas[i]);
			continue;
		}
		check_isa(fast_isa_select());
	}
	fast_isa_force(NULL);
	ksft_finished();
}
