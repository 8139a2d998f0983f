/* SPDX-License-Identifier: MIT */
/*
 * CLUSTERED on the CUDA backend (arch/cuda/attn_clus.c): the bucket
 * attention forward and backward, its scratch, and online k-means.
 */
#ifndef ASAM_CUDA_ATTN_CLUS_H
#define ASAM_CUDA_ATTN_CLUS_H

#include <stddef.h>
#include <stdint.h>

#include <internal/cuda.h>

#include <internal/backend.h>
#include <internal/problem.h>

/* what the CUDA kernels of CLUSTERED take (0, or -EOPNOTSUPP + message) */
int asam_cuda_clus_supports(const struct asam_problem *p);
/* device scratch of a CLUSTERED call (sortings, row sums, GQA partials) */
size_t asam_cuda_clus_workspace(const struct asam_problem *p);
int asam_cuda_clus_fwd(struct asam_backend *be, const struct asam_problem *p);
int asam_cuda_clus_bwd(struct asam_backend *be, const struct asam_problem *p);
/* asam_cluster_update() on the GPU: the reference's result, in fp64 */
int asam_cuda_cluster_update(struct asam_backend *be,
			     const struct asam_problem *p, float decay);
/* for the selftests: the GPU's assignment, [B, Hq, N] int32 on the host */
int asam_cuda_clus_assign_to_host(struct asam_cuda_device *d,
				  const struct asam_problem *p, int32_t *cq,
				  int32_t *ck);

#endif
