// SPDX-License-Identifier: MIT
/*
 * Which calls the Hopper forward takes (arch/cuda/attn_sm90.c), against
 * the rules written here from Documentation/arch/cuda-kernels.rst: on an
 * sm_90 device, for d 64 and 128 and a 16-bit dtype, a one-launch call of
 * the DENSE pattern or the DENSE gate, and LOCAL, RANDOM, STRIDED and
 * HIERARCHICAL with SPARSE and HARD; SOFT never as one launch, but its
 * dense launch always and its sparse launch for those four patterns; the
 * row patterns' sparse branch never (their own kernels), the cluster
 * pattern's through its bucket walk only, SPARSE and HARD in ARGMAX mode.
 * Nothing on sm_80 or sm_100, at d 96, in fp32, with too little shared
 * memory, or with ASAM_CUDA_SM90=0.  Host only: runs without a GPU.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <internal/cuda.h>
#include <internal/problem.h>

#include "../../arch/cuda/attn_sm90.h"
#include "../lib/kselftest.h"

static bool list_kind(int k)
{
	return k == ASAM_PATTERN_LOCAL || k == ASAM_PATTERN_RANDOM ||
	       k == ASAM_PATTERN_STRIDED || k == ASAM_PATTERN_HIERARCHICAL;
}

/* every (pattern, gate) on @d at head dim @hd and dtype @dt: 0 or a count */
static int table(const struct asam_cuda_device *d, int hd,
		 enum asam_dtype dt, bool on, const char *what)
{
	struct asam_problem p;
	int k, g, bad = 0;

	for (k = 0; k < ASAM_PATTERN_NR_KINDS; k++)
		for (g = ASAM_GATE_SPARSE; g <= ASAM_GATE_HARD; g++) {
			bool one, lst, dns, cls;
			int cm;

			/* CLUSTERED's bucket walk: SPARSE in ARGMAX mode */
			for (cm = ASAM_CLUSTER_ARGMAX; cm <= ASAM_CLUSTER_SOFT;
			     cm++) {
				memset(&p, 0, sizeof(p));
				p.pat.kind = k;
				p.pat.cmode = cm;
				p.gate_mode = g;
				p.d = hd;
				p.dt = dt;
				cls = on && k == ASAM_PATTERN_CLUSTERED &&
				      (g == ASAM_GATE_SPARSE ||
				       g == ASAM_GATE_HARD) &&
				      cm == ASAM_CLUSTER_ARGMAX;
				if (attn_sm90_serves_clus(d, &p) != cls) {
					ksft_print_msg("%s: pattern %d gate %d cmode %d: clustered walk %d, want %d\n",
						       what, k, g, cm,
						       attn_sm90_serves_clus(d, &p),
						       cls);
					bad++;
				}
			}

			memset(&p, 0, sizeof(p));
			p.pat.kind = k;
			p.gate_mode = g;
			p.d = hd;
			p.dt = dt;
			one = on && g != ASAM_GATE_SOFT &&
			      (k == ASAM_PATTERN_DENSE ||
			       g == ASAM_GATE_DENSE || list_kind(k));
			lst = on && list_kind(k);
			dns = on;
			if (attn_sm90_serves(d, &p) != one ||
			    attn_sm90_serves_list(d, &p) != lst ||
			    attn_sm90_serves_dense(d, &p) != dns) {
				ksft_print_msg("%s: pattern %d gate %d: serves %d list %d dense %d, want %d %d %d\n",
					       what, k, g,
					       attn_sm90_serves(d, &p),
					       attn_sm90_serves_list(d, &p),
					       attn_sm90_serves_dense(d, &p),
					       one, lst, dns);
				bad++;
			}
		}
	return bad;
}

int main(void)
{
	struct asam_cuda_device d;

	ksft_print_header();
	ksft_set_plan(9);
	unsetenv("ASAM_CUDA_SM90");
	memset(&d, 0, sizeof(d));
	d.cc_major = 9;
	d.cc_minor = 0;
	d.smem_per_block_optin = 227 * 1024;
	ksft_test_result(!table(&d, 128, ASAM_DT_BF16, true, "sm_90 d128 bf16"),
			 "sm_90, d 128, bf16: every (pattern, gate)\n");
	ksft_test_result(!table(&d, 64, ASAM_DT_F16, true, "sm_90 d64 f16"),
			 "sm_90, d 64, fp16: every (pattern, gate)\n");
	ksft_test_result(!table(&d, 96, ASAM_DT_BF16, false, "d96"),
			 "d 96: none\n");
	ksft_test_result(!table(&d, 128, ASAM_DT_F32, false, "fp32"),
			 "fp32: none\n");
	setenv("ASAM_CUDA_SM90", "0", 1);
	ksft_test_result(!table(&d, 128, ASAM_DT_BF16, false, "SM90=0"),
			 "ASAM_CUDA_SM90=0: none\n");
	setenv("ASAM_CUDA_SM90", "1", 1);
	ksft_test_result(!table(&d, 128, ASAM_DT_BF16, true, "SM90=1"),
			 "ASAM_CUDA_SM90=1: as by default\n");
	unsetenv("ASAM_CUDA_SM90");
	/* the staggered dense d 128 tiles: (128 + 5 x 128) x 128 x 2 + 1 K */
	d.smem_per_block_optin = 100 * 1024;
	ksft_test_result(!table(&d, 128, ASAM_DT_BF16, false, "100 KB"),
			 "100 KB of shared memory a block: none\n");
	d.smem_per_block_optin = 227 * 1024;
	d.cc_minor = 0;
	d.cc_major = 8;
	ksft_test_result(!table(&d, 128, ASAM_DT_BF16, false, "sm_80"),
			 "sm_80: none\n");
	d.cc_major = 10;
	ksft_test_result(!table(&d, 128, ASAM_DT_BF16, false, "sm_100"),
			 "sm_100: none\n");
	ksft_finished();
}
