/* SPDX-License-Identifier: MIT */
/*
 * STRIDED and HIERARCHICAL forward: after a query tile's band (the main
 * loop of fwd_tile), its sparse state takes the column keys beyond the
 * band, 64 gathered keys a tile, up to the tile's largest key limit.  The
 * column set is the same for every query tile, so nothing is stored per
 * tile.  Included by attn_fwd.cu after its softmax state helpers.
 */
#ifndef ASAM_ATTN_COLS_FWD_CUH
#define ASAM_ATTN_COLS_FWD_CUH

template <int MODE>
static __device__ __forceinline__ void fwd_cols(const attn_fwd_params &p,
						int h, int off, int w0,
						int lim_max, int (*lim)[2],
						const u16 *sq, u16 *sk,
						u16 *sv, const u16 *kg,
						const u16 *vg, sm_state *ss)
{
#if ATTN_HAS_COLS
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int gr = lane >> 2, tg = lane & 3;
	const int nc = cols_below(p, lim_max);
	const int cnt = (nc + BLOCK_N - 1) / BLOCK_N;

	if (MODE == ATTN_G_DENSE || cnt == 0)
		return;
	cp_async_wait_all();
	__syncthreads();	/* the band's last tiles are consumed */
	cols_load<BLOCK_N, ATTN_THREADS>(p, sk, kg, p.k_sn, 0, nc);
	cols_load<BLOCK_N, ATTN_THREADS>(p, sv, vg, p.v_sn, 0, nc);
	cp_async_commit();

	for (int it = 0; it < cnt; it++) {
		const int buf = it & 1, c0 = it * BLOCK_N;
		int jj[NT_S][2];

		cp_async_wait_all();
		__syncthreads();
		if (it + 1 < cnt) {
			cols_load<BLOCK_N, ATTN_THREADS>(p,
				sk + (buf ^ 1) * BLOCK_N * ATTN_LDS, kg,
				p.k_sn, c0 + BLOCK_N, nc);
			cols_load<BLOCK_N, ATTN_THREADS>(p,
				sv + (buf ^ 1) * BLOCK_N * ATTN_LDS, vg,
				p.v_sn, c0 + BLOCK_N, nc);
		}
		cp_async_commit();
#pragma unroll
		for (int n = 0; n < NT_S; n++)
#pragma unroll
			for (int x = 0; x < 2; x++) {
				int c = c0 + n * 8 + 2 * tg + x;

				jj[n][x] = c < nc ? col_key(p, c) : -1;
			}

		const u16 *ck = sk + buf * BLOCK_N * ATTN_LDS;
		const u16 *cv = sv + buf * BLOCK_N * ATTN_LDS;
		float s[MT][NT_S][4];

#pragma unroll
		for (int mt = 0; mt < MT; mt++)
#pragma unroll
			for (int n = 0; n < NT_S; n++)
				s[mt][n][0] = s[mt][n][1] = s[mt][n][2] =
					s[mt][n][3] = 0.f;
#pragma unroll
		for (int ks = 0; ks < KS_D; ks++) {
			u32 qa[MT][4];

#pragma unroll
			for (int mt = 0; mt < MT; mt++) {
				int r = warp * 16 * MT + mt * 16 + (lane & 7) +
					((lane >> 3) & 1) * 8;

				ldsm_x4(qa[mt], sq + r * ATTN_LDS + ks * 16 +
					(lane >> 4) * 8);
			}
#pragma unroll
			for (int n2 = 0; n2 < NT_S / 2; n2++) {
				u32 bk[4];
				int r = n2 * 16 + (lane & 7) + (lane >> 4) * 8;
				int c = ks * 16 + ((lane >> 3) & 1) * 8;

				ldsm_x4(bk, ck + r * ATTN_LDS + c);
#pragma unroll
				for (int mt = 0; mt < MT; mt++) {
					mma16816(s[mt][2 * n2], qa[mt], bk);
					mma16816(s[mt][2 * n2 + 1], qa[mt],
						 bk + 2);
				}
			}
		}
#pragma unroll
		for (int mt = 0; mt < MT; mt++) {
#pragma unroll
			for (int n = 0; n < NT_S; n++)
#pragma unroll
				for (int x = 0; x < 4; x++) {
					int i = w0 + mt * 16 + gr + (x >> 1) * 8;

					s[mt][n][x] = cols_take(p, h, i,
							jj[n][x & 1],
							lim[mt][x >> 1], off) ?
						s[mt][n][x] * p.scale_log2 :
						ATTN_NEG_INF;
				}
			state_softmax(ss[mt], s[mt]);
		}
#pragma unroll
		for (int ks = 0; ks < KS_N; ks++) {
			u32 pa[MT][4];

#pragma unroll
			for (int mt = 0; mt < MT; mt++)
				p_frag(pa[mt], s[mt], ks);
#pragma unroll
			for (int n2 = 0; n2 < NT_O / 2; n2++) {
				u32 bv[4];
				int r = ks * 16 + (lane & 7) +
					((lane >> 3) & 1) * 8;
				int c = n2 * 16 + (lane >> 4) * 8;

				ldsm_x4_t(bv, cv + r * ATTN_LDS + c);
#pragma unroll
				for (int mt = 0; mt < MT; mt++) {
					mma16816(ss[mt].acc[2 * n2], pa[mt], bv);
					mma16816(ss[mt].acc[2 * n2 + 1], pa[mt],
						 bv + 2);
				}
			}
		}
	}
	cp_async_wait_all();
#endif
}

#endif
