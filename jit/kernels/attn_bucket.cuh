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

/*
 * Query tile @t of (b, h)'s cluster table (bh = b * Hq + h): its slots'
 * tokens, its cluster, the cluster's key slots, and the key limits of its
 * first and last live rows (a cluster's slots ascend in token order, so
 * those are the smallest and the largest).  False past the table's end.
 */
struct bucket_q {
	const int *qp;		/* the tile's tokens, slot by slot */
	const int *kp;		/* (b, h)'s key tokens by slot: the cluster's
				 * from kbeg */
	int c, nrows, kbeg, nkc;	/* cluster, rows, first key slot, keys */
	int lim_min, lim_max;
};

template <class P>
static __device__ __forceinline__ bool bucket_qtile(const P &p, i64 bh,
						    int t, int lq, int lk,
						    bucket_q &q)
{
	if (t >= p.cl_nqtiles[bh])
		return false;

	const int *tl = p.cl_qtiles + 2 * (bh * p.cl_ntq + t);
	const int *qo = p.cl_qoff + bh * (p.cl_C + 1);
	const int *ko = p.cl_koff + bh * (p.cl_C + 1);
	const int s0 = tl[0];
	int qf, ql;

	q.c = tl[1];
	q.nrows = min((int)BLOCK_M, qo[q.c + 1] - s0);
	q.qp = p.cl_qperm + bh * p.Nq + s0;
	q.kp = p.cl_kperm + bh * p.Nk;
	q.kbeg = ko[q.c];
	q.nkc = ko[q.c + 1] - q.kbeg;
	qf = q.qp[0];
	ql = q.qp[q.nrows - 1];
	q.lim_min = qf < lq ? row_limit(qf, lq, lk, p.Nq, p.Nk) : 0;
	q.lim_max = qf < lq ? row_limit(min(ql, lq - 1), lq, lk, p.Nq, p.Nk) :
		    0;
	return true;
}

#endif
