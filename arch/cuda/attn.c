// SPDX-License-Identifier: MIT
/*
 * Placeholder for the CUDA attention kernels, which the "kernels" work
 * replaces wholesale.  Until then the backend claims no problem, so the
 * core falls through to the next backend with this message.
 */
#include <internal/cuda.h>
#include <internal/err.h>

int asam_cuda_attn_supports(struct asam_backend *be,
			    const struct asam_problem *p)
{
	return asam_err(-EOPNOTSUPP, "CUDA attention kernels are not built yet");
}

int asam_cuda_attn_fwd(struct asam_backend *be, const struct asam_problem *p)
{
	return asam_cuda_attn_supports(be, p);
}

int asam_cuda_attn_bwd(struct asam_backend *be, const struct asam_problem *p)
{
	return asam_cuda_attn_supports(be, p);
}

int asam_cuda_attn_workspace_size(struct asam_backend *be,
				  const struct asam_problem *p, size_t *bytes)
{
	*bytes = 0;
	return asam_cuda_attn_supports(be, p);
}
