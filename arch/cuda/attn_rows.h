/* SPDX-License-Identifier: MIT */
/*
 * RANDOM_ROWS and USER_INDEX on the GPU (arch/cuda/attn_rows.c): per-row
 * key lists attended by gathering, jit/kernels/attn_rows.cu.
 * arch/cuda/attn.c hands these two pattern kinds over at its entry points.
 */
#ifndef ASAM_CUDA_ATTN_ROWS_H
#define ASAM_CUDA_ATTN_ROWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <internal/backend.h>
#include <internal/problem.h>

static inline bool attn_rows_kind(const struct asam_problem *p)
{
	return p->pat.kind == ASAM_PATTERN_RANDOM_ROWS ||
	       p->pat.kind == ASAM_PATTERN_USER_INDEX;
}

/*
 * RANDOM_ROWS of @p, rows of min(r, Nk) = @rr keys, into @buf: rows
 * [Hq][Nq][rr] (each ascending), toff [Hq][Nk + 1] (offsets into tlist,
 * from h * Nq * rr), tlist [Hq * Nq * rr] (each key's rows, ascending).
 */
int attn_rows_gen(const struct asam_problem *p, int rr, int32_t *buf);

int asam_cuda_rows_fwd(struct asam_backend *be, const struct asam_problem *p);
int asam_cuda_rows_bwd(struct asam_backend *be, const struct asam_problem *p);
int asam_cuda_rows_workspace_size(struct asam_backend *be,
				  const struct asam_problem *p, size_t *bytes);

#endif
