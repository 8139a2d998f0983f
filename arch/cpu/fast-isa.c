// SPDX-License-Identifier: MIT
/*
 * Run-time choice of the kernel set.  Each candidate has a score from
 * CPUID (0: unusable); the highest wins.  This file is compiled for the
 * baseline ISA, so probing can never execute an instruction the CPU lacks.
 * The x86 variants exist on every x86-64 target (arch/cpu/Makefile); on
 * other targets only the portable kernels remain.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <internal/err.h>
#include <internal/log.h>

#include "fast.h"


static int score_generic(void)
{
	return 1;
}

static int score_avx2(void)
{
#if defined(__x86_64__)
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2") &&
	       __builtin_cpu_supports("fma") ? 20 : 0;
#else
	return 0;
#endif
}

static int score_avx512(void)
{
#if defined(__x86_64__)
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx512f") &&
	       __builtin_cpu_supports("fma") ? 30 : 0;
#else
	return 0;
#endif
}

struct isa_cand {
	const struct fast_isa *isa;
	int (*score)(void);
};

static const struct fast_isa *_Atomic chosen, *_Atomic forced;

static int cands(struct isa_cand *c)
{
	int n = 0;

	c[n++] = (struct isa_cand){ &fast_isa_generic, score_generic };
#if defined(__x86_64__)
	c[n++] = (struct isa_cand){ &fast_isa_avx2, score_avx2 };
	c[n++] = (struct isa_cand){ &fast_isa_avx512, score_avx512 };
#endif
	return n;
}

const struct fast_isa *fast_isa_select(void)
{
	struct isa_cand c[3];
	const struct fast_isa *best = forced;
	const char *cap = getenv("ASAM_CPU_ISA");
	int i, n, bs = 0;

	if (best)
		return best;
	best = chosen;
	if (best)
		return best;
	n = cands(c);
	for (i = 0; i < n; i++) {
		int s = c[i].score();

		if (s > bs) {
			bs = s;
			best = c[i].isa;
		}
		/* the cap names the most capable kernels allowed */
		if (s && cap && !strcmp(cap, c[i].isa->name)) {
			best = c[i].isa;
			break;
		}
	}
	pr_info("cpu: %s kernels", best->name);
	chosen = best;
	return best;
}

int fast_isa_force(const char *name)
{
	struct isa_cand c[3];
	int i, n;

	if (!name) {
		forced = NULL;
		return 0;
	}
	n = cands(c);
	for (i = 0; i < n; i++)
		if (!strcmp(c[i].isa->name, name)) {
			if (!c[i].score())
				return -ENODEV;
			forced = c[i].isa;
			return 0;
		}
	return -ENOENT;
}

const char *asam_cpu_bench_isa(void)
{
	return fast_isa_select()->name;
}

double asam_cpu_bench_peak(long iters)
{
	return fast_isa_select()->peak(iters);
}

double asam_cpu_bench_kernel(int which, int dp, long iters)
{
	const struct fast_isa *isa = fast_isa_select();
	size_t n = (size_t)FAST_KB * FAST_MAXD;
	float *a = aligned_alloc(64, sizeof(float) * n);
	float *b = aligned_alloc(64, sizeof(float) * n);
	float *c = aligned_alloc(64, sizeof(float) * n);
	size_t i;
	long it;

	if (!a || !b || !c || dp % 16 || dp > FAST_MAXD) {
		free(a);
		free(b);
		free(c);
		return 0;
	}
	for (i = 0; i < n; i++) {
		a[i] = (float)(i % 7) * 0.01f;
		b[i] = (float)(i % 5) * 0.01f;
		c[i] = 0;
	}
	for (it = 0; it < iters; it++) {
		if (which == 0)
			isa->mm_nt(a, FAST_TQ, dp, b, c);
		else
			isa->mm_nn(a, FAST_KB, FAST_TQ, FAST_KB, b, dp, c);
		__asm__ volatile("" : : "r"(c) : "memory");
	}
	free(a);
	free(b);
	free(c);
	return 2.0 * FAST_TQ * FAST_KB * dp * iters;
}
