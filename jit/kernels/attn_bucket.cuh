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

/*
 * Row r (0: the thread's gr, 1: gr + 8) of a key block's dK (times
 * sigma) and dV, for key token @j of (b, query head: @bh): to the kv
 * head's rows of dK and dV, or with GQA to the head's fp32 partial rows
 * (asam_clus_gqa_sum_kernel adds them in head order).  The includer
 * defines NT_O.
 */
template <class P>
static __device__ __forceinline__ void bucket_store_kv(const P &p, i64 bh,
						       int b, int hk, int j,
						       int r, float (*dk)[4],
						       float (*dv)[4], int tg)
{
	u16 *dkg = (u16 *)p.dk + b * p.dk_sb + hk * p.dk_sh;
	u16 *dvg = (u16 *)p.dv + b * p.dv_sb + hk * p.dv_sh;

#pragma unroll
	for (int n = 0; n < NT_O; n++) {
		const int e = n * 8 + 2 * tg;

		if (p.Hq != p.Hkv) {
			float *pk = p.cl_part_k + (bh * p.Nk + j) * HEAD_DIM + e;
			float *pv = p.cl_part_v + (bh * p.Nk + j) * HEAD_DIM + e;

			pk[0] = dk[n][2 * r] * p.scale;
			pk[1] = dk[n][2 * r + 1] * p.scale;
			pv[0] = dv[n][2 * r];
			pv[1] = dv[n][2 * r + 1];
		} else {
			*(u32 *)(dkg + (i64)j * p.dk_sn + e) =
				pack2(dk[n][2 * r] * p.scale,
				      dk[n][2 * r + 1] * p.scale);
			*(u32 *)(dvg + (i64)j * p.dv_sn + e) =
				pack2(dv[n][2 * r], dv[n][2 * r + 1]);
		}
	}
}

#endif
