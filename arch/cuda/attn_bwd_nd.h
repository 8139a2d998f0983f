/* SPDX-License-Identifier: MIT */
/*
 * The non-deterministic backward of the tile-list patterns (DENSE, LOCAL,
 * RANDOM): dK, dV and dQ in one kernel, dQ summed in an fp32 workspace
 * with atomic reductions (jit/kernels/attn_bwd_nd.cuh).
 */
#ifndef ASAM_CUDA_ATTN_BWD_ND_H
#define ASAM_CUDA_ATTN_BWD_ND_H

#include <stdbool.h>
#include <stddef.h>

#include "attn_int.h"

/* whether @p's backward takes the non-deterministic kernel */
bool attn_bwd_nd_use(const struct asam_problem *p);
/*
 * Workspace bytes of the tile-list backward: the row sums (2 x B Hq Nq
 * floats) and, when attn_bwd_nd_use(), dQ's fp32 sums at offset
 * attn_bwd_nd_offset() (256-byte aligned, for vector reductions).
 */
size_t attn_bwd_ws_bytes(const struct asam_problem *p);
size_t attn_bwd_nd_offset(const struct asam_problem *p);
/*
 * Zero the workspace @acc, launch the fused kernel and the conversion of
 * dQ on @s; @a is filled as for the deterministic kernels, @spec is the
 * attn_bwd specialisation.
 */
int attn_bwd_nd_launch(struct asam_cuda_device *d,
		       const struct asam_jit_spec *spec, bool cap,
		       struct attn_bwd_params *a, const struct asam_problem *p,
		       CUdeviceptr acc, CUstream s);

#endif
