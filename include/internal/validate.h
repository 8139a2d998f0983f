/* SPDX-License-Identifier: MIT */
#ifndef ASAM_INTERNAL_VALIDATE_H
#define ASAM_INTERNAL_VALIDATE_H

#include <internal/problem.h>

struct asam_ctx;

/*
 * Fill @p from the caller's structs; 0 or -errno with a message.  @ctx
 * (or NULL): whose pool screens large host tensors' values (USER_INDEX).
 */
int asam_problem_fwd(struct asam_problem *p, struct asam_ctx *ctx,
		     const struct asam_attn_params *params,
		     const struct asam_fwd_args *a);
int asam_problem_bwd(struct asam_problem *p, struct asam_ctx *ctx,
		     const struct asam_attn_params *params,
		     const struct asam_bwd_args *a);
/* q and k only (shapes, and values for CLUSTERED); no outputs. */
int asam_problem_stats(struct asam_problem *p, struct asam_ctx *ctx,
		       const struct asam_attn_params *params,
		       const struct asam_fwd_args *a);

#endif
