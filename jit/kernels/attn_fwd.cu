/* SPDX-License-Identifier: MIT */
/*
 * Attention forward on tensor cores, in the FlashAttention-2 manner.
 *
 * A block owns BLOCK_M query rows of one (batch, query head); each of its
 * NUM_WARPS warps owns 16 or 32 rows (MT m16 tiles).  Q stays in registers
 * when a warp owns 16 rows, else it is re-read per tile; K and V tiles of
 * BLOCK_N keys are staged in shared memory through cp.async, two deep, and
 * the scores never leave registers: S = Q K^T by mma.sync, an online
 * softmax per row, then O += P V with P re-packed from the accumulators
 * into A fragments.  Nothing N x N exists anywhere.
 *
 * Which key tiles a query tile visits comes from the host-built list of
 * the pattern (DENSE walks the range up to the mask's limit): "full"
 * entries skip the token predicate, partial ones evaluate it.  The SOFT
 * gate walks the dense range once and keeps two online-softmax states that
 * share each score tile; the sparse one is updated only on tiles of the
 * list and only on allowed entries.  HARD picks one branch per (b, h).
 */
#include "attn_common.cuh"

#define ATTN_THREADS (NUM_WARPS * 32)
#define NT_S (BLOCK_N / 8)	/* n8 tiles of a score tile */
#define NT_O (HEAD_DIM / 8)	/* n8 tiles of an output row block */
#define KS_D (HEAD_DIM / 16)	/* k16 steps over the head dim */
#define KS_N (BLOCK_N / 16)	/* k16 steps over a key tile */

/* each warp owns MT m16 row tiles: MT = 2 halves the shared-memory
 * traffic of the K and V fragments per mma */
#define MT (BLOCK_M / (16 * NUM_WARPS))
#if BLOCK_M != 16 * MT * NUM_WARPS || MT < 1 || MT > 2
#error "BLOCK_M must be 16 or 32 rows per warp"
#endif
/* Q fragments live in registers unless two row tiles or two states
 * already fill them */
#define Q_IN_REGS (MT == 1 && GATE_MODE != ATTN_G_SOFT)

#if BLOCK_N != 64
#error "BLOCK_N must be 64 (the RANDOM key block)"
#endif
#if HEAD_DIM % 16
#error "HEAD_DIM must be a multiple of 16"
#endif

#ifndef BWD_PRE
#define BWD_PRE 0	/* 1: the backward's preprocess, see the epilogue */
#endif

struct sm_state {
	float m[2], l[2];
	float acc[NT_O][4];
};

static __device__ __forceinline__ void state_init(sm_state &st)
{
	st.m[0] = st.m[1] = ATTN_NEG_INF;
	st.l[0] = st.l[1] = 0.f;
#pragma unroll
	for (int n = 0; n < NT_O; n++)
		st.acc[n][0] = st.acc[n][1] = st.acc[n][2] = st.acc[n][3] = 0.f;
}

/*
 * Fold a masked score tile (log2 domain, -inf where not allowed) into a
 * state: new running max, rescale, and P (unnormalised) in place of s.
 */
static __device__ __forceinline__ void state_softmax(sm_state &st,
						     float (*s)[4])
{
	float alpha[2];

#pragma unroll
	for (int r = 0; r < 2; r++) {
		float mx = st.m[r], base, sum = 0.f;

#pragma unroll
		for (int n = 0; n < NT_S; n++)
			mx = fmaxf(mx, fmaxf(s[n][2 * r], s[n][2 * r + 1]));
		mx = quad_max(mx);
		/* an empty row so far keeps -inf: exp2(-inf - 0) = 0 */
		base = mx == ATTN_NEG_INF ? 0.f : mx;
		alpha[r] = fast_exp2(st.m[r] - base);
		st.m[r] = mx;
#pragma unroll
		for (int n = 0; n < NT_S; n++) {
			s[n][2 * r] = fast_exp2(s[n][2 * r] - base);
			s[n][2 * r + 1] = fast_exp2(s[n][2 * r + 1] - base);
			sum += s[n][2 * r] + s[n][2 * r + 1];
		}
		st.l[r] = st.l[r] * alpha[r] + sum;	/* quad-reduced later */
	}
	/* once the running max settles, most tiles need no rescale */
	if (__any_sync(0xffffffffu, alpha[0] != 1.f || alpha[1] != 1.f))
		acc_rescale<NT_O>(st.acc, alpha[0], alpha[1]);
}

#include "attn_cols_fwd.cuh"

/* P as A fragments for k16 step ks of the key tile */
/*
 * One query tile against its key tiles.  MODE is SPARSE, DENSE or SOFT
 * (HARD resolves to one of the first two per (b, h) before calling).
 */
template <int MODE>
static __device__ __forceinline__ void fwd_tile(const attn_fwd_params &p,
						int b, int h, int qt,
						u16 *smem, float g)
{
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int gr = lane >> 2, tg = lane & 3;
	const int hk = h / (p.Hq / p.Hkv);
	const int lq = p.len_q ? p.len_q[b * p.lq_s] : p.Nq;
	const int lk = p.len_k ? p.len_k[b * p.lk_s] : p.Nk;
	const int q0 = qt * BLOCK_M, off = p.Nk - p.Nq;
	const int w0 = q0 + warp * 16 * MT;	/* this warp's first row */
	const int lim_min = q0 < lq ? row_limit(q0, lq, lk, p.Nq, p.Nk) : 0;
	const int qlast = (q0 + BLOCK_M < lq ? q0 + BLOCK_M : lq) - 1;
	const int lim_max = q0 < lq ? row_limit(qlast, lq, lk, p.Nq, p.Nk) : 0;
	const int nkt = (lim_max + BLOCK_N - 1) / BLOCK_N;
	const u16 *qg = (const u16 *)p.q + b * p.q_sb + h * p.q_sh;
	const u16 *kg = (const u16 *)p.k + b * p.k_sb + hk * p.k_sh;
	const u16 *vg = (const u16 *)p.v + b * p.v_sb + hk * p.v_sh;
	u16 *sq = smem;
	u16 *sk = sq + BLOCK_M * ATTN_LDS;
	u16 *sv = sk + 2 * BLOCK_N * ATTN_LDS;
	const bool use_list = PATTERN != ATTN_P_DENSE && MODE != ATTN_G_DENSE;
	const int *list = 0;
	int nlist = 0, cnt, lp = 0, lim[MT][2];
#if Q_IN_REGS
	u32 qf[KS_D][4];
#endif
	sm_state sd[MODE == ATTN_G_SPARSE ? 1 : MT];
	sm_state ss[MODE == ATTN_G_DENSE ? 1 : MT];

#pragma unroll
	for (int mt = 0; mt < MT; mt++) {
		lim[mt][0] = row_limit(w0 + mt * 16 + gr, lq, lk, p.Nq, p.Nk);
		lim[mt][1] = row_limit(w0 + mt * 16 + gr + 8, lq, lk, p.Nq,
				       p.Nk);
	}
	if (use_list)
		list = tile_list(p, h, qt, nkt, &nlist);
	cnt = MODE == ATTN_G_SPARSE && use_list ? nlist : nkt;
#pragma unroll
	for (int mt = 0; mt < (MODE == ATTN_G_SPARSE ? 1 : MT); mt++)
		state_init(sd[mt]);
#pragma unroll
	for (int mt = 0; mt < (MODE == ATTN_G_DENSE ? 1 : MT); mt++)
		state_init(ss[mt]);

	load_tile<BLOCK_M, ATTN_THREADS>(sq, qg, p.q_sn, q0, p.Nq);
	if (cnt > 0) {
		int kt0 = MODE == ATTN_G_SPARSE && use_list ?
			  ATTN_E_TILE(list[0]) : 0;

		load_tile<BLOCK_N, ATTN_THREADS>(sk, kg, p.k_sn,
						 kt0 * BLOCK_N, p.Nk);
		load_tile<BLOCK_N, ATTN_THREADS>(sv, vg, p.v_sn,
						 kt0 * BLOCK_N, p.Nk);
	}
	cp_async_commit();

	for (int it = 0; it < cnt; it++) {
		const int buf = it & 1;
		int e, kt;
		bool in_s;

		if (MODE == ATTN_G_SPARSE && use_list) {
			e = list[it];
			kt = ATTN_E_TILE(e);
			in_s = true;
		} else {
			kt = it;
			e = ATTN_E_FULL;
			in_s = MODE != ATTN_G_DENSE;
			if (MODE == ATTN_G_SOFT && use_list) {
				while (lp < nlist && ATTN_E_TILE(list[lp]) < kt)
					lp++;
				in_s = lp < nlist && ATTN_E_TILE(list[lp]) == kt;
				if (in_s)
					e = list[lp];
			}
		}

		cp_async_wait_all();
		__syncthreads();
#if Q_IN_REGS
		if (it == 0) {
#pragma unroll
			for (int ks = 0; ks < KS_D; ks++) {
				int r = warp * 16 + (lane & 7) +
					((lane >> 3) & 1) * 8;
				int c = ks * 16 + (lane >> 4) * 8;

				ldsm_x4(qf[ks], sq + r * ATTN_LDS + c);
			}
		}
#endif
		if (it + 1 < cnt) {
			int nk = MODE == ATTN_G_SPARSE && use_list ?
				 ATTN_E_TILE(list[it + 1]) : it + 1;

			load_tile<BLOCK_N, ATTN_THREADS>(
				sk + (buf ^ 1) * BLOCK_N * ATTN_LDS, kg,
				p.k_sn, nk * BLOCK_N, p.Nk);
			load_tile<BLOCK_N, ATTN_THREADS>(
				sv + (buf ^ 1) * BLOCK_N * ATTN_LDS, vg,
				p.v_sn, nk * BLOCK_N, p.Nk);
		}
		cp_async_commit();

		const u16 *ck = sk + buf * BLOCK_N * ATTN_LDS;
		const u16 *cv = sv + buf * BLOCK_N * ATTN_LDS;
		const int k0 = kt * BLOCK_N;
		float s[MT][NT_S][4];

#pragma unroll
		for (int mt = 0; mt < MT; mt++)
#pragma unroll
			for (int n = 0; n < NT_S; n++)
				s[mt][n][0] = s[mt][n][1] = s[mt][n][2] =
					s[mt][n][3] = 0.f;
#pragma unroll
		for (int ks = 0; ks < KS_D; ks++) {
#if Q_IN_REGS
			u32 (*qa)[4] = &qf[ks];
#else
			u32 qa[MT][4];
#pragma unroll
			for (int mt = 0; mt < MT; mt++) {
				int r = warp * 16 * MT + mt * 16 + (lane & 7) +
					((lane >> 3) & 1) * 8;
				int c = ks * 16 + (lane >> 4) * 8;

				ldsm_x4(qa[mt], sq + r * ATTN_LDS + c);
			}
#endif
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

		/*
		 * Scale into the log2 domain; mask what the user mask and the
		 * pattern hide.  Most tiles need neither: the per-element
		 * predicates run only on the tiles at the edges.
		 */
		const bool umask = k0 + BLOCK_N > lim_min;
		const bool pmask = !(e & ATTN_E_FULL);
		const bool want_s = MODE == ATTN_G_SOFT && in_s;
		float ps[MODE == ATTN_G_SOFT ? MT : 1][NT_S][4];

#pragma unroll
		for (int mt = 0; mt < MT; mt++) {
#pragma unroll
			for (int n = 0; n < NT_S; n++)
#pragma unroll
				for (int x = 0; x < 4; x++)
					s[mt][n][x] *= p.scale_log2;
			if (umask) {
#pragma unroll
				for (int n = 0; n < NT_S; n++)
#pragma unroll
					for (int x = 0; x < 4; x++) {
						int j = k0 + n * 8 + 2 * tg +
							(x & 1);

						if (j >= lim[mt][x >> 1])
							s[mt][n][x] =
								ATTN_NEG_INF;
					}
			}
			if (want_s) {
#pragma unroll
				for (int n = 0; n < NT_S; n++)
#pragma unroll
					for (int x = 0; x < 4; x++)
						ps[mt][n][x] = s[mt][n][x];
			}
			if ((MODE == ATTN_G_SPARSE || want_s) && pmask) {
#pragma unroll
				for (int n = 0; n < NT_S; n++)
#pragma unroll
					for (int x = 0; x < 4; x++) {
						int j = k0 + n * 8 + 2 * tg +
							(x & 1);
						int i = w0 + mt * 16 + gr +
							(x >> 1) * 8;

						if (pat_allows(e, i, j, q0, off,
							       p.radius) &&
						    cols_band(p, h, i, j, off))
							continue;
						if (MODE == ATTN_G_SOFT)
							ps[mt][n][x] =
								ATTN_NEG_INF;
						else
							s[mt][n][x] =
								ATTN_NEG_INF;
					}
			}
			if (MODE == ATTN_G_SOFT) {
				state_softmax(sd[mt], s[mt]);
				if (want_s)
					state_softmax(ss[mt], ps[mt]);
			} else if (MODE == ATTN_G_SPARSE) {
				state_softmax(ss[mt], s[mt]);
			} else {
				state_softmax(sd[mt], s[mt]);
			}
		}

#pragma unroll
		for (int ks = 0; ks < KS_N; ks++) {
			u32 pa[MT][4], pb[MODE == ATTN_G_SOFT ? MT : 1][4];

#pragma unroll
			for (int mt = 0; mt < MT; mt++) {
				p_frag(pa[mt], s[mt], ks);
				if (MODE == ATTN_G_SOFT)
					p_frag(pb[mt], ps[mt], ks);
			}
#pragma unroll
			for (int n2 = 0; n2 < NT_O / 2; n2++) {
				u32 bv[4];
				int r = ks * 16 + (lane & 7) +
					((lane >> 3) & 1) * 8;
				int c = n2 * 16 + (lane >> 4) * 8;

				ldsm_x4_t(bv, cv + r * ATTN_LDS + c);
#pragma unroll
				for (int mt = 0; mt < MT; mt++) {
					sm_state &st = MODE == ATTN_G_SPARSE ?
						       ss[mt] : sd[mt];

					mma16816(st.acc[2 * n2], pa[mt], bv);
					mma16816(st.acc[2 * n2 + 1], pa[mt],
						 bv + 2);
					if (MODE == ATTN_G_SOFT && in_s) {
						mma16816(ss[mt].acc[2 * n2],
							 pb[mt], bv);
						mma16816(ss[mt].acc[2 * n2 + 1],
							 pb[mt], bv + 2);
					}
				}
			}
		}
	}
	cp_async_wait_all();
	/* STRIDED, HIERARCHICAL: the column keys beyond the band */
	fwd_cols<MODE>(p, h, off, w0, lim_max, lim, sq, sk, sv, kg, vg, ss);

	/* epilogue: normalise, mix, store; padding rows get 0 and -inf */
	float ws = MODE == ATTN_G_SPARSE ? 1.f : MODE == ATTN_G_DENSE ? 0.f : g;

	if (p.mix == ATTN_MIX_DENSE || p.mix == ATTN_MIX_SPARSE)
		ws = g;
	u16 *og = (u16 *)p.o + b * p.o_sb + h * p.o_sh;

	(void)og;	/* unused by the preprocess */

#pragma unroll
	for (int mt = 0; mt < MT; mt++) {
#pragma unroll
	for (int r = 0; r < 2; r++) {
		const int i = w0 + mt * 16 + gr + r * 8;
		const sm_state &S_ = ss[MODE == ATTN_G_DENSE ? 0 : mt];
		const sm_state &D_ = sd[MODE == ATTN_G_SPARSE ? 0 : mt];
		float ls = MODE == ATTN_G_DENSE ? 0.f : quad_sum(S_.l[r]);
		float ld = MODE == ATTN_G_SPARSE ? 0.f : quad_sum(D_.l[r]);
		float is = ls > 0.f ? ws / ls : 0.f;
		float id = ld > 0.f ? (1.f - ws) / ld : 0.f;
		bool live = i < lq;

#if !BWD_PRE
		if (i >= p.Nq)
			continue;
#endif
		if (!live)
			is = id = 0.f;
#if BWD_PRE
		/*
		 * Backward's preprocess: <dO_i, S_i> and <dO_i, A_i> of the
		 * branches, recomputed in fp32 (SOFT needs them apart, and O
		 * holds only their mix).
		 */
		{
			/*
			 * rows past Nq read nothing and store nothing, but
			 * stay for the quad's full-mask shuffles
			 */
			const bool in = i < p.Nq;
			const u16 *dg = (const u16 *)p.d_o + b * p.do_sb +
					h * p.do_sh + (i64)(in ? i : 0) * p.do_sn;
			float ds = 0.f, dd = 0.f;

			is = ls > 0.f && live ? 1.f / ls : 0.f;
			id = ld > 0.f && live ? 1.f / ld : 0.f;
#pragma unroll
			for (int n = 0; n < NT_O; n++) {
				u32 w = in ? *(const u32 *)(dg + n * 8 + 2 * tg) :
					0u;
				float a = unpack_lo(w), c = unpack_hi(w);

				if (MODE != ATTN_G_DENSE)
					ds += (S_.acc[n][2 * r] * a +
					       S_.acc[n][2 * r + 1] * c) * is;
				if (MODE != ATTN_G_SPARSE)
					dd += (D_.acc[n][2 * r] * a +
					       D_.acc[n][2 * r + 1] * c) * id;
			}
			ds = quad_sum(ds);
			dd = quad_sum(dd);
			if (tg == 0 && in) {
				i64 at = ((i64)b * p.Hq + h) * p.Nq + i;

				if (p.dsum_s)
					p.dsum_s[at] = ds;
				if (p.dsum_d)
					p.dsum_d[at] = dd;
			}
		}
#else
#pragma unroll
		for (int n = 0; n < NT_O; n++) {
			float o0 = 0.f, o1 = 0.f;

			if (MODE != ATTN_G_DENSE) {
				o0 += S_.acc[n][2 * r] * is;
				o1 += S_.acc[n][2 * r + 1] * is;
			}
			if (MODE != ATTN_G_SPARSE) {
				o0 += D_.acc[n][2 * r] * id;
				o1 += D_.acc[n][2 * r + 1] * id;
			}
			u32 *at = (u32 *)(og + (i64)i * p.o_sn + n * 8 + 2 * tg);

			if (MODE == ATTN_G_SPARSE && p.mix == ATTN_MIX_SPARSE) {
				/* the dense launch left (1 - g) A here */
				u32 w = *at;

				o0 += unpack_lo(w);
				o1 += unpack_hi(w);
			}
			*at = pack2(o0, o1);
		}
		if (tg == 0) {
			i64 lo = b * p.l_sb + h * p.l_sh + i;
			int lm = live ? lim[mt][r] : 0;
			float nan = __int_as_float(0x7fc00000);
			float vs = ls > 0.f ?
				   (S_.m[r] + fast_log2(ls)) * ATTN_LN2 :
				   ATTN_NEG_INF;
			float vd = ld > 0.f ?
				   (D_.m[r] + fast_log2(ld)) * ATTN_LN2 :
				   ATTN_NEG_INF;

			if (MODE == ATTN_G_DENSE && p.mix == ATTN_MIX_SAME)
				vs = vd;
			if (!live) {
				vs = vd = ATTN_NEG_INF;
			} else if (GATE_MODE == ATTN_G_HARD) {
				/* the branch not computed, as the reference */
				if (MODE == ATTN_G_SPARSE)
					vd = lm ? nan : ATTN_NEG_INF;
				else
					vs = lm ? nan : ATTN_NEG_INF;
			}
			if (p.lse_s)
				p.lse_s[lo] = vs;
			if (p.lse_d)
				p.lse_d[lo] = vd;
		}
#endif
	}
	}
}

#if PATTERN == ATTN_P_CLUSTERED
#include "attn_bucket_fwd.cuh"
#endif

extern "C" __global__ void __launch_bounds__(ATTN_THREADS)
asam_attn_fwd_kernel(const attn_fwd_params p)
{
	extern __shared__ __align__(16) u16 attn_smem[];
#if PATTERN == ATTN_P_CLUSTERED && GATE_MODE != ATTN_G_DENSE
	bucket_fwd(p, attn_smem);	/* sorted by cluster, own grid */
	return;
#endif
	const int b = blockIdx.z, h = blockIdx.y;
	const int qt = p.reverse ? p.nqt - 1 - blockIdx.x : blockIdx.x;
	float g = 0.f;

	if (GATE_MODE == ATTN_G_SOFT || GATE_MODE == ATTN_G_HARD ||
	    p.mix == ATTN_MIX_DENSE || p.mix == ATTN_MIX_SPARSE)
		g = p.gate[b * p.g_sb + h * p.g_sh];
#if GATE_MODE == ATTN_G_HARD
	if (g >= p.hard_tau)
		fwd_tile<ATTN_G_SPARSE>(p, b, h, qt, attn_smem, 1.f);
	else
		fwd_tile<ATTN_G_DENSE>(p, b, h, qt, attn_smem, 0.f);
#else
	fwd_tile<GATE_MODE>(p, b, h, qt, attn_smem, g);
#endif
}

/*
 * Backward's row sums when one branch is all there is (SPARSE or DENSE):
 * D_i = <dO_i, O_i> from the forward's output, HEAD_DIM / 8 lanes a row
 * (16 bytes a lane: the memory's rate), instead of recomputing the
 * forward.  SOFT needs <dO, S> and <dO, A> apart, which O
 * (their mix) cannot give: it keeps the recomputing preprocess above.
 */
extern "C" __global__ void __launch_bounds__(256)
asam_attn_rowdot_kernel(const attn_fwd_params p)
{
	/* 8 elements a thread (16-byte loads): HEAD_DIM / 8 threads a row */
	constexpr int TR = HEAD_DIM / 8;
	const int b = blockIdx.z, h = blockIdx.y, t = threadIdx.x % TR;
	const int i = blockIdx.x * (256 / TR) + threadIdx.x / TR;
	const bool ok = i < p.Nq;
	float sum = 0.f;

	if (ok) {
		uint4 x = *(const uint4 *)((const u16 *)p.o + b * p.o_sb +
					   h * p.o_sh + (i64)i * p.o_sn + 8 * t);
		uint4 y = *(const uint4 *)((const u16 *)p.d_o + b * p.do_sb +
					   h * p.do_sh + (i64)i * p.do_sn +
					   8 * t);

		sum = unpack_lo(x.x) * unpack_lo(y.x) +
		      unpack_hi(x.x) * unpack_hi(y.x) +
		      unpack_lo(x.y) * unpack_lo(y.y) +
		      unpack_hi(x.y) * unpack_hi(y.y) +
		      unpack_lo(x.z) * unpack_lo(y.z) +
		      unpack_hi(x.z) * unpack_hi(y.z) +
		      unpack_lo(x.w) * unpack_lo(y.w) +
		      unpack_hi(x.w) * unpack_hi(y.w);
	}
	/* a row's TR lanes are aligned within the warp */
#pragma unroll
	for (int m = TR / 2; m > 0; m >>= 1)
		sum += __shfl_xor_sync(0xffffffffu, sum, m);
	if (ok && t == 0) {
		i64 at = ((i64)b * p.Hq + h) * p.Nq + i;

		if (p.dsum_s)
			p.dsum_s[at] = sum;
		if (p.dsum_d)
			p.dsum_d[at] = sum;
	}
}
