/* SPDX-License-Identifier: MIT */
/*
 * What the CLUSTERED bucket kernels (attn_bucket_fwd.cuh,
 * attn_bucket_bwd.cuh) share.
 */
#ifndef ASAM_ATTN_BUCKET_CUH
#define ASAM_ATTN_BUCKET_CUH

/*
 * SOFT cluster mode: whether <a_i, b_j> > theta, from the mask that
 * attn_clus.cu computed in fp64 (bit j % 32 of word j / 32 of row i);
 * ARGMAX has no mask, and its buckets are the whole predicate.  i and j
 * are original indices, in range.
 */
static __device__ __forceinline__ bool bucket_bit(const unsigned *mask,
						  int mw, i64 bh, int Nq,
						  int i, int j)
{
	return !mask ||
	       ((mask[(bh * Nq + i) * mw + (j >> 5)] >> (j & 31)) & 1);
}

#endif
