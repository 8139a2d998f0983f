/* SPDX-License-Identifier: MIT */
/*
 * One CUDA attention case against the fp64 reference (gpu_case.c), for
 * the attention-cuda selftests.
 */
#ifndef ASAM_SELFTEST_GPU_CASE_H
#define ASAM_SELFTEST_GPU_CASE_H

#include <stdbool.h>

#include <internal/ctx.h>
#include <internal/cuda.h>
#include <internal/err.h>

#include "../lib/kselftest.h"
#include "../lib/testutil.h"

extern struct asam_cuda_device *gc_dev;
extern struct asam_ctx *gc_ctx;

/* a tensor with a host copy and a device copy */
struct gt {
	struct tt *h;		/* host copy */
	DLTensor dl;		/* device view */
	CUdeviceptr p;
};

void gt_up(struct gt *g, struct tt *h);		/* takes @h */
void gt_down(struct gt *g);
void gt_free(struct gt *g);

struct gpu_case {
	int kind;		/* pattern kind with defaults, when !pat */
	const struct asam_pattern *pat;	/* for the GPU call, or NULL */
	const struct asam_pattern *pat_ref; /* host twin for the reference
					     * (device tensors inside pat) */
	int dt16;		/* 1: bf16, 0: fp16 */
	int d, gate, causal, B, Hq, Hkv, Nq, Nk;
	bool lens;		/* random per-batch lengths */
	bool fwd_only;
	unsigned int flags;	/* ASAM_F_* */
	bool nondet_ok;		/* without DETERMINISTIC, skip the bit check */
	double qamp;		/* Q's standard deviation (0: 1); large ones
				 * make each row's maximum jump from tile to
				 * tile (the forward's rescale) */
};

/*
 * The column patterns the GPU tests share: STRIDED and HIERARCHICAL with
 * their defaults, STRIDED with s 7 and L 5, HIERARCHICAL with per-head
 * weights over (4, 16, 64) (head 0 takes every 4th key, head 1 every
 * 64th, head 2 every 16th, head 3 uniform: four heads at least)
 */
void gc_cols_patterns(struct asam_pattern *st, struct asam_pattern *hi,
		      struct asam_pattern *st2, struct asam_pattern *hw);

/* context and first CUDA device, or ksft_exit_skip() */
void gpu_case_setup(void);
void gpu_case_teardown(void);
/* run @c, report one ksft result */
bool gpu_case_skips(const struct gpu_case *c);
/* ASAM_TEST_SHARD=k/n: run cases k, k + n, ... (else k 0, n 1) */
void gc_shard(int *k, int *n);
/*
 * The whole selftest over @cases: this process's shard of them, then one
 * result that the wgmma backward ran as often as @expected says each
 * case makes it; ksft_finished()
 */
void gc_run_shard(const struct gpu_case *cases, int ncases,
		  unsigned long (*expected)(const struct gpu_case *));
void gpu_case_run(const struct gpu_case *c);

#endif
