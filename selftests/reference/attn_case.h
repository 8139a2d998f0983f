/* SPDX-License-Identifier: MIT */
/*
 * One attention problem with all its host tensors, for the reference
 * selftests: build it, run forward and backward, free it.
 */
#ifndef ASAM_SELFTEST_ATTN_CASE_H
#define ASAM_SELFTEST_ATTN_CASE_H

#include <asam/asam.h>

#include "../lib/testutil.h"

struct attn_case {
	int B, Hq, Hkv, Nq, Nk, d;
	DLDataType dt;
	struct asam_pattern pat;
	struct asam_attn_params prm;
	struct tt *q, *k, *v, *o, *lse_s, *lse_d, *gate, *len_q, *len_k;
	struct tt *d_o, *dq, *dk, *dv, *dgate, *cent, *index;
	float weights[64];
};

/* Shapes, a pattern kind with small parameters that make it non-trivial
 * at these sizes, fresh random inputs; gate values in [0.2, 0.8]. */
void ac_init(struct attn_case *c, DLDataType dt, int B, int Hq, int Hkv,
	     int Nq, int Nk, int d, enum asam_pattern_kind kind,
	     enum asam_gate_mode mode, bool causal);
void ac_set_lengths(struct attn_case *c, const int *lq, const int *lk);
void ac_free(struct attn_case *c);
int ac_fwd(struct asam_ctx *ctx, struct attn_case *c);
int ac_bwd(struct asam_ctx *ctx, struct attn_case *c);
struct asam_fwd_args ac_fwd_args(struct attn_case *c);
struct asam_bwd_args ac_bwd_args(struct attn_case *c);

#endif
