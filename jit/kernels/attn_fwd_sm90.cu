/* SPDX-License-Identifier: MIT */
/*
 * Attention forward for Hopper (sm_90a) on warpgroup MMA.
 *
 * A block of BLOCK_M / 64 warpgroups owns BLOCK_M query rows of one
 * (batch, query head); each warpgroup owns 64 of them, the M of one
 * wgmma.  Q, and BLOCK_N-key tiles of K and V (two stages, cp.async,
 * the next tile in flight while this one computes) sit in shared memory
 * in the 128-byte swizzled layout of attn_sm90.cuh, so both MMAs read
 * their B operand (and the first its A) straight from shared memory by
 * descriptor:
 *
 *	S = Q K^T	wgmma m64n{BLOCK_N}k16, A = Q, B = K (both K-major)
 *	O += P V	wgmma m64n{HEAD_DIM}k16, A = P in registers, B = V
 *			(MN-major: the transpose is the descriptor's)
 *
 * The accumulator of a wgmma gives each warp 16 rows laid out as the
 * m16n8 C fragment of mma.sync, n8 block after n8 block, so the online
 * softmax is the one of attn_fwd.cu and P turns into the A operand of the
 * second MMA with the same packing (p_frag), never touching memory.
 *
 * STAGGER = 1 shifts the second warpgroup by half an iteration (see the
 * main loop) so that one warpgroup's softmax runs while the other's MMAs
 * do, instead of both waiting on the tensor cores and then both on the
 * exponentials.
 *
 * Served: the DENSE pattern with the SPARSE or DENSE gate (one branch;
 * the other branch's lse is -inf, as attn_fwd.cu writes it), causal
 * (bottom-right), per-batch lengths, GQA, d = 64 and 128.
 */
#include "attn_sm90.cuh"

#define NWG (BLOCK_M / 64)
#define ATTN_THREADS (NWG * 128)
#define NT_S (BLOCK_N / 8)
#define NT_O (HEAD_DIM / 8)
#define KS_D (HEAD_DIM / 16)
#define KS_N (BLOCK_N / 16)

#if BLOCK_M % 64 || NWG < 1 || NWG > 3
#error "BLOCK_M must be 64, 128 or 192"
#endif
#if BLOCK_N != 64 && BLOCK_N != 128
#error "BLOCK_N must be 64 or 128"
#endif
#if HEAD_DIM != 64 && HEAD_DIM != 128
#error "HEAD_DIM must be 64 or 128"
#endif
#if PATTERN != ATTN_P_DENSE
#error "the sm_90 forward serves the DENSE pattern"
#endif
#if GATE_MODE != ATTN_G_SPARSE && GATE_MODE != ATTN_G_DENSE
#error "the sm_90 forward serves the SPARSE and DENSE gates"
#endif

/* tile bytes: every tile starts on a 1024-byte boundary */
#define Q_BYTES (BLOCK_M * HEAD_DIM * 2)
#define KV_BYTES (BLOCK_N * HEAD_DIM * 2)

#if BLOCK_N == 128
#define WG_SS wgmma_ss_n128
#else
#define WG_SS wgmma_ss_n64
#endif
#if HEAD_DIM == 128
#define WG_RS wgmma_rs_n128
#else
#define WG_RS wgmma_rs_n64
#endif

#if defined(ASAM_JIT) && defined(ASAM_STAGGER)
#define STAGGER ASAM_STAGGER	/* the preamble's macro, for #if */
#endif
#ifndef STAGGER
#define STAGGER 0
#endif
#if STAGGER && NWG != 2
#error "STAGGER pairs two warpgroups"
#endif
/* V stages: a staggered warpgroup still reads V of the previous tile */
#define V_STAGES (STAGGER ? 3 : 2)

/* one warpgroup's online-softmax state: rows gr and gr + 8 of its warp */
struct wg_state {
	float m[2], l[2];
	float acc[NT_O][4];
	int lim[2];
};

/* S = Q K^T for this warpgroup's 64 rows, K at shared address @ck */
static __device__ __forceinline__ void gemm_s(float (*s)[4], u32 sq, u32 ck,
					      int wg)
{
	wg_fence();
#pragma unroll
	for (int ks = 0; ks < KS_D; ks++) {
		u32 qa = sq + (ks >> 2) * BLOCK_M * 128 + wg * 64 * 128 +
			 (ks & 3) * 32;
		u32 kb = ck + (ks >> 2) * BLOCK_N * 128 + (ks & 3) * 32;

		WG_SS(s, wg_desc(qa, 16, 1024), wg_desc(kb, 16, 1024), ks);
	}
	wg_commit();
	wg_wait<0>();
	wg_pin<NT_S>(s);
}

/*
 * Fold the score tile of keys [k0, k0 + BLOCK_N) into @st and leave P as
 * A fragments in @pa: log2 domain, the mask only on the tiles at its edge
 * (@lim_min: the smallest row limit of the block), running max, rescale.
 */
static __device__ __forceinline__ void softmax(wg_state &st, float (*s)[4],
					       u32 (*pa)[4], int k0,
					       int lim_min, float scale_log2)
{
	const int tg = threadIdx.x & 3;
	const bool umask = k0 + BLOCK_N > lim_min;
	float alpha[2];

#pragma unroll
	for (int n = 0; n < NT_S; n++)
#pragma unroll
		for (int x = 0; x < 4; x++) {
			s[n][x] *= scale_log2;
			if (umask && k0 + n * 8 + 2 * tg + (x & 1) >=
				     st.lim[x >> 1])
				s[n][x] = ATTN_NEG_INF;
		}
#pragma unroll
	for (int r = 0; r < 2; r++) {
		float mx = st.m[r], bs, sum = 0.f;

#pragma unroll
		for (int n = 0; n < NT_S; n++)
			mx = fmaxf(mx, fmaxf(s[n][2 * r], s[n][2 * r + 1]));
		mx = quad_max(mx);
		/* an empty row so far keeps -inf: exp2(-inf - 0) = 0 */
		bs = mx == ATTN_NEG_INF ? 0.f : mx;
		alpha[r] = fast_exp2(st.m[r] - bs);
		st.m[r] = mx;
#pragma unroll
		for (int n = 0; n < NT_S; n++) {
			s[n][2 * r] = fast_exp2(s[n][2 * r] - bs);
			s[n][2 * r + 1] = fast_exp2(s[n][2 * r + 1] - bs);
			sum += s[n][2 * r] + s[n][2 * r + 1];
		}
		/* quad-reduced in the epilogue */
		st.l[r] = st.l[r] * alpha[r] + sum;
	}
#pragma unroll
	for (int n = 0; n < NT_O; n++) {
		st.acc[n][0] *= alpha[0];
		st.acc[n][1] *= alpha[0];
		st.acc[n][2] *= alpha[1];
		st.acc[n][3] *= alpha[1];
	}
#pragma unroll
	for (int ks = 0; ks < KS_N; ks++)
		p_frag(pa[ks], s, ks);
}

/* O += P V, 16 keys a step, V at shared address @cv */
static __device__ __forceinline__ void gemm_pv(wg_state &st, u32 (*pa)[4],
					       u32 cv)
{
	wg_fence();
#pragma unroll
	for (int ks = 0; ks < KS_N; ks++)
		WG_RS(st.acc, pa[ks],
		      wg_desc(cv + ks * 16 * 128, BLOCK_N * 128, 1024));
	wg_commit();
	wg_wait<0>();
	wg_pin<NT_O>(st.acc);
}

extern "C" __global__ void __launch_bounds__(ATTN_THREADS, 1)
asam_attn_fwd_sm90_kernel(const attn_fwd_params p)
{
	extern __shared__ __align__(1024) unsigned char attn_smem[];
	const int b = blockIdx.z, h = blockIdx.y;
	const int qt = p.reverse ? p.nqt - 1 - blockIdx.x : blockIdx.x;
	const int tid = threadIdx.x, lane = tid & 31;
	const int wg = tid >> 7, wq = (tid >> 5) & 3;
	const int gr = lane >> 2, tg = lane & 3;
	const int hk = h / (p.Hq / p.Hkv);
	const int lq = p.len_q ? p.len_q[b * p.lq_s] : p.Nq;
	const int lk = p.len_k ? p.len_k[b * p.lk_s] : p.Nk;
	const int q0 = qt * BLOCK_M;
	/* this warp's first row */
	const int w0 = q0 + wg * 64 + wq * 16;
	const int lim_min = q0 < lq ? row_limit(q0, lq, lk, p.Nq, p.Nk) : 0;
	const int qlast = (q0 + BLOCK_M < lq ? q0 + BLOCK_M : lq) - 1;
	const int lim_max = q0 < lq ? row_limit(qlast, lq, lk, p.Nq, p.Nk) : 0;
	const int nkt = (lim_max + BLOCK_N - 1) / BLOCK_N;
	const u16 *qg = (const u16 *)p.q + b * p.q_sb + h * p.q_sh;
	const u16 *kg = (const u16 *)p.k + b * p.k_sb + hk * p.k_sh;
	const u16 *vg = (const u16 *)p.v + b * p.v_sb + hk * p.v_sh;
	/* the dynamic window is 16-byte aligned: round up to 1024 */
	const u32 base = (smem_u32(attn_smem) + 1023) & ~1023u;
	const u32 sq = base, sk = sq + Q_BYTES, sv = sk + 2 * KV_BYTES;
	/* the staggered warpgroup runs one iteration behind on P V */
	const int lag = STAGGER && wg == 1;
	wg_state st;
	float s[NT_S][4];
	u32 pa[KS_N][4];

	st.lim[0] = row_limit(w0 + gr, lq, lk, p.Nq, p.Nk);
	st.lim[1] = row_limit(w0 + gr + 8, lq, lk, p.Nq, p.Nk);
	st.m[0] = st.m[1] = ATTN_NEG_INF;
	st.l[0] = st.l[1] = 0.f;
#pragma unroll
	for (int n = 0; n < NT_O; n++)
		st.acc[n][0] = st.acc[n][1] = st.acc[n][2] =
			st.acc[n][3] = 0.f;

	load_sw<BLOCK_M, ATTN_THREADS>(sq, qg, p.q_sn, q0, p.Nq);
	if (nkt > 0) {
		load_sw<BLOCK_N, ATTN_THREADS>(sk, kg, p.k_sn, 0, p.Nk);
		load_sw<BLOCK_N, ATTN_THREADS>(sv, vg, p.v_sn, 0, p.Nk);
	}
	cp_async_commit();

	/*
	 * Iteration kt: tile kt is in shared memory (K in stage kt % 2, V in
	 * stage kt % V_STAGES) and tile kt + 1 goes in flight.  Without
	 * STAGGER both warpgroups run S, softmax, P V on tile kt.  With it
	 * the second runs softmax and P V of tile kt - 1, then S of tile
	 * kt, so its softmax overlaps the first's MMAs and the other way
	 * round; it needs one more iteration at the end, and V of tile
	 * kt - 1 must survive iteration kt (three V stages).
	 */
	for (int kt = 0; kt < nkt + STAGGER; kt++) {
		const u32 ck = sk + (kt & 1) * KV_BYTES;

		/* tile kt landed (each thread its own copies), then all */
		cp_async_wait_all();
		fence_proxy_async();
		__syncthreads();
		/* the stages refilled were last read by MMAs waited for
		 * before the barrier above */
		if (kt + 1 < nkt) {
			int nx = kt + 1;

			load_sw<BLOCK_N, ATTN_THREADS>(sk + (nx & 1) * KV_BYTES,
						       kg, p.k_sn,
						       nx * BLOCK_N, p.Nk);
			load_sw<BLOCK_N, ATTN_THREADS>(
				sv + (nx % V_STAGES) * KV_BYTES, vg, p.v_sn,
				nx * BLOCK_N, p.Nk);
		}
		cp_async_commit();

		if (!lag) {
			if (kt < nkt) {
				gemm_s(s, sq, ck, wg);
				softmax(st, s, pa, kt * BLOCK_N, lim_min,
					p.scale_log2);
				gemm_pv(st, pa,
					sv + (kt % V_STAGES) * KV_BYTES);
			}
		} else {
			if (kt > 0) {
				int pv = kt - 1;

				softmax(st, s, pa, pv * BLOCK_N, lim_min,
					p.scale_log2);
				gemm_pv(st, pa,
					sv + (pv % V_STAGES) * KV_BYTES);
			}
			if (kt < nkt)
				gemm_s(s, sq, ck, wg);
		}
	}
	cp_async_wait_all();

	/*
	 * epilogue: normalise and store; padding rows get 0 and -inf.  As
	 * SOFT's dense launch (attn_params.cuh, ATTN_MIX_*), O carries the
	 * (1 - g) share; with the DENSE pattern both lse are the one.
	 */
	u16 *og = (u16 *)p.o + b * p.o_sb + h * p.o_sh;
	const float share = p.mix == ATTN_MIX_DENSE ?
			    1.f - p.gate[b * p.g_sb + h * p.g_sh] : 1.f;

#pragma unroll
	for (int r = 0; r < 2; r++) {
		const int i = w0 + gr + r * 8;
		float ls = quad_sum(st.l[r]);
		bool live = i < lq;
		float inv = ls > 0.f && live ? share / ls : 0.f;

		if (i >= p.Nq)
			continue;
#pragma unroll
		for (int n = 0; n < NT_O; n++)
			*(u32 *)(og + (i64)i * p.o_sn + n * 8 + 2 * tg) =
				pack2(st.acc[n][2 * r] * inv,
				      st.acc[n][2 * r + 1] * inv);
		if (tg == 0) {
			i64 lo = b * p.l_sb + h * p.l_sh + i;
			float v = ls > 0.f && live ?
				  (st.m[r] + fast_log2(ls)) * ATTN_LN2 :
				  ATTN_NEG_INF;
			float *mine = GATE_MODE == ATTN_G_SPARSE ? p.lse_s :
				      p.lse_d;
			float *other = GATE_MODE == ATTN_G_SPARSE ? p.lse_d :
				       p.lse_s;

			if (mine)
				mine[lo] = v;
			if (other)
				other[lo] = p.mix == ATTN_MIX_SAME ? v :
					    ATTN_NEG_INF;
		}
	}
}
