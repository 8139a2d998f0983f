/* SPDX-License-Identifier: MIT */
/*
 * The non-deterministic backward (included by attn_bwd.cu): one kernel per
 * (b, kv head, 64-key tile), the dK/dV kernel's loop plus, for each query
 * tile it visits, that tile's share of dQ,
 *
 *	dQ[q0 .. q0 + 63] += dS K_tile		(64 x 64 by 64 x d)
 *
 * added in fp32 into the workspace p.dq_acc [B, Hq, Nq, d] with atomic
 * reductions: the order of the additions varies run to run, so the bits
 * of dQ do.  It saves the dQ kernel's recomputation of S = Q K^T and
 * dP = dO V^T (7 tile GEMMs become 5).  A last kernel scales the
 * workspace by sigma into dQ's dtype.  The host side is
 * arch/cuda/attn_bwd_nd.c.
 */
#ifndef ASAM_ATTN_BWD_ND_CUH
#define ASAM_ATTN_BWD_ND_CUH

/* dS^T staged in shared memory: [64 keys][64 queries], rows padded */
#define ND_LDS (BLOCK_M + 8)
#define ND_DC 64		/* dQ columns a pass: 32 accumulators a thread */

/* *g += x, g[1] += y: one vector reduction where sm_90 has it */
static __device__ __forceinline__ void red_add_f32x2(float *g, float x,
						     float y)
{
#if __CUDA_ARCH__ >= 900
	asm volatile("red.global.add.v2.f32 [%0], {%1, %2};\n"
		     :: "l"(g), "f"(x), "f"(y) : "memory");
#else
	asm volatile("red.global.add.f32 [%0], %1;\n"
		     :: "l"(g), "f"(x) : "memory");
	asm volatile("red.global.add.f32 [%0], %1;\n"
		     :: "l"(g + 1), "f"(y) : "memory");
#endif
}

/*
 * The warp's 16 keys x 64 queries of dS (unscaled, as the mma fragments
 * hold them: row = key, column = query) into sds[key][query] as 16-bit.
 */
static __device__ __forceinline__ void nd_store_ds(u16 *sds, float (*ds)[4],
						   int warp, int lane)
{
	const int gr = lane >> 2, tg = lane & 3;

#pragma unroll
	for (int n = 0; n < NT_S; n++)
#pragma unroll
		for (int r = 0; r < 2; r++)
			*(u32 *)(sds + (warp * 16 + gr + r * 8) * ND_LDS +
				 n * 8 + 2 * tg) =
				pack2(ds[n][2 * r], ds[n][2 * r + 1]);
}

/*
 * Rows qr .. qr + 15 of dQ (this warp's queries of the tile) += dS K:
 * A = dS[query][key] read transposed from sds, B = K[key][d] from sk.
 */
static __device__ __forceinline__ void nd_add_dq(const attn_bwd_params &p,
						 const u16 *sds, const u16 *sk,
						 int b, int h, int qr,
						 int warp, int lane)
{
	const int gr = lane >> 2, tg = lane & 3;
	float *acc_g = p.dq_acc + (((i64)b * p.Hq + h) * p.Nq) * HEAD_DIM;

#pragma unroll
	for (int dc = 0; dc < HEAD_DIM; dc += ND_DC) {
		float acc[ND_DC / 8][4];

#pragma unroll
		for (int n = 0; n < ND_DC / 8; n++)
			acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
#pragma unroll
		for (int ks = 0; ks < KS_N; ks++) {
			u32 a[4];
			/* matrix lane/8: queries +8 (bit 0), keys +8 (bit 1) */
			int kr = ks * 16 + (lane & 7) + (lane >> 4) * 8;
			int qc = warp * 16 + ((lane >> 3) & 1) * 8;

			ldsm_x4_t(a, sds + kr * ND_LDS + qc);
#pragma unroll
			for (int n2 = 0; n2 < ND_DC / 16; n2++) {
				u32 bk[4];
				int r = ks * 16 + (lane & 7) +
					((lane >> 3) & 1) * 8;
				int c = dc + n2 * 16 + (lane >> 4) * 8;

				ldsm_x4_t(bk, sk + r * ATTN_LDS + c);
				mma16816(acc[2 * n2], a, bk);
				mma16816(acc[2 * n2 + 1], a, bk + 2);
			}
		}
#pragma unroll
		for (int r = 0; r < 2; r++) {
			int i = qr + gr + r * 8;

			if (i >= p.Nq)
				continue;
#pragma unroll
			for (int n = 0; n < ND_DC / 8; n++)
				red_add_f32x2(acc_g + (i64)i * HEAD_DIM + dc +
					      n * 8 + 2 * tg, acc[n][2 * r],
					      acc[n][2 * r + 1]);
		}
	}
}

/* dQ = sigma * the workspace, in dQ's dtype: two elements a thread */
extern "C" __global__ void __launch_bounds__(256)
asam_attn_bwd_dqcvt_kernel(const attn_bwd_params p)
{
	const int b = blockIdx.z, h = blockIdx.y;
	const i64 t = (i64)blockIdx.x * 256 + threadIdx.x;
	const i64 i = t / (HEAD_DIM / 2), c = t % (HEAD_DIM / 2) * 2;
	const float *a = p.dq_acc + (((i64)b * p.Hq + h) * p.Nq + i) *
			 HEAD_DIM + c;

	if (i >= p.Nq)
		return;
	*(u32 *)((u16 *)p.dq + b * p.dq_sb + h * p.dq_sh + i * p.dq_sn + c) =
		pack2(a[0] * p.scale, a[1] * p.scale);
}

#endif
