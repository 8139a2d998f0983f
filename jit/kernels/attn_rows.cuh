/* SPDX-License-Identifier: MIT */
/*
 * The argument block of the row-list attention kernels (attn_rows.cu):
 * RANDOM_ROWS and USER_INDEX, attended by gathering.  Read by NVRTC and
 * by arch/cuda/attn_rows.c alike, so plain C types only.  Strides count
 * elements.
 *
 * Row lists: query row i of list unit u holds n entries idx[u][i][t]
 * (key indices, -1 none).  RANDOM_ROWS: u = query head, host-built,
 * sorted ascending, [Hq][Nq][r] contiguous; USER_INDEX: u = (b, kv head),
 * the caller's [B, Hkv, Nq, r] tensor with its strides.
 *
 * Transposed lists (backward's dK, dV): key j of unit u holds the rows
 * tlist[toff[u * (Nk + 1) + j] .. toff[u * (Nk + 1) + j + 1]), ascending
 * and each row once.
 */
#ifndef ASAM_ATTN_ROWS_CUH
#define ASAM_ATTN_ROWS_CUH

struct attn_rows_params {
	const void *q, *k, *v, *d_o;
	void *o, *dq, *dk, *dv;
	float *lse_s, *lse_d;		/* [B, Hq, Nq]; strides l_sb, l_sh */
	float *dsum;			/* [B, Hq, Nq]: <dO_i, S_i> */
	const float *gate;
	float *dgate;
	const int *len_q, *len_k;
	const int *idx;
	int *toff, *tlist, *tcur;

	long long ix_sb, ix_sh, ix_sn, ix_sr;
	long long q_sb, q_sh, q_sn;
	long long k_sb, k_sh, k_sn;
	long long v_sb, v_sh, v_sn;
	long long o_sb, o_sh, o_sn;
	long long do_sb, do_sh, do_sn;
	long long dq_sb, dq_sh, dq_sn;
	long long dk_sb, dk_sh, dk_sn;
	long long dv_sb, dv_sh, dv_sn;
	long long l_sb, l_sh;
	long long g_sb, g_sh;
	long long dg_sb, dg_sh;
	long long lq_s, lk_s;

	int B, Hq, Hkv, Nq, Nk;
	int r;				/* entries per row */
	int mix;			/* SOFT: add to the dense pass's */
	float scale_log2;		/* sigma * log2(e) */
	float scale;			/* sigma */
	float hard_tau;
};

#endif
