/* SPDX-License-Identifier: MIT */
/*
 * Row-list attention: RANDOM_ROWS and USER_INDEX, attended by gathering.
 *
 * Each query row has its own few keys (r of Nk), so no two rows share a
 * key tile and tensor cores have nothing to chew on: the work is reading
 * one K row and one V row per allowed pair, and the kernels are built to
 * keep many such reads in flight.  One warp owns one query row (with
 * USER_INDEX, one row of every query head of a GQA group: they share the
 * list, so K and V are read once for the group).  The row's entries go
 * 32 at a time, one per lane; every lane holds HEAD_DIM / 32 dims of each
 * gathered row, so a row is one coalesced 128- or 256-byte read and the
 * 32 rows of a chunk are loads issued back to back.  Scores: each lane
 * has 32 partial dot products (one per key); a transposing butterfly
 * (31 shuffles) leaves lane e with the whole score of key e.  Then the
 * online softmax, and O += p V with p broadcast key by key.
 *
 * Backward: dQ the same way, with D_i = <dO_i, S_i> = sum_j p_ij dP_ij
 * found on the fly (dQ = sigma (sum p dP K - D sum p K), one pass), and
 * D_i kept for dK, dV.  dK and dV per (b, kv head, key) over transposed
 * lists (each key's rows, ascending): gathering again instead of
 * scattering, so no atomics and bit-identical results run to run.
 *
 * Preamble: HEAD_DIM (64, 128), DTYPE, CAUSAL, GATE_MODE, PATTERN
 * (RANDOM_ROWS or USER_INDEX), GROUP (query heads per warp), NUM_WARPS.
 * The dense branch of SOFT and HARD is the tile kernels' (attn_fwd.cu,
 * attn_bwd.cu): these kernels add the sparse branch to what it wrote.
 */
#include "attn_common.cuh"
#include "attn_rows.cuh"

#ifdef ASAM_JIT
#define GROUP ASAM_GROUP
#endif

#define FULL 0xffffffffu

/*
 * ROTATE: the chunk a warp takes at step cc of row i.  RANDOM_ROWS' rows
 * are sorted, so in order every warp of the grid reads the lowest
 * quarter of K and V at once (the rows of one head run together) and
 * those lines become the bottleneck; starting each row at chunk i mod
 * chunks spreads the reads.  The host's ASAM_CUDA_ROWS_ROT (0 or 1)
 * overrides it for measurements.  The same rotation of the dK/dV walk
 * over the sorted transposed lists was measured and dropped: 1 % slower
 * (RANDOM_ROWS forward + backward 25.9 -> 26.2 ms).
 */
#if defined(ASAM_JIT) && defined(ASAM_ROTATE)
#define ROTATE ASAM_ROTATE
#endif
#ifndef ROTATE
#define ROTATE (PATTERN == ATTN_P_RANDOM_ROWS)
#endif
#define ROW_CHUNK(cc, i, nch) (ROTATE ? ((cc) + (i)) % (nch) : (cc))

/*
 * VBATCH: the forward loads a chunk's 32 V rows before their first use,
 * as K's, rather than each row just before its FMAs: 32 reads in flight
 * a warp instead of one.  With ROTATE, H200, B2 H16 16K d 128 r 128 bf16
 * forward: RANDOM_ROWS 12.95 -> 5.15 ms (VBATCH alone 14.3: the sorted
 * rows' shared lines), USER_INDEX 12.1 -> 5.8 ms.  ASAM_CUDA_ROWS_VB=0
 * on the host turns it off (measurements).
 */
#if defined(ASAM_JIT) && defined(ASAM_VBATCH)
#define VBATCH ASAM_VBATCH
#endif
#ifndef VBATCH
#define VBATCH 1
#endif
#define LD (HEAD_DIM / 32)	/* dims per lane */
#define LW (LD / 2)		/* 32-bit words per lane */
#define THREADS (NUM_WARPS * 32)

#if HEAD_DIM != 64 && HEAD_DIM != 128
#error "HEAD_DIM must be 64 or 128"
#endif
#if PATTERN != ATTN_P_RANDOM_ROWS && PATTERN != ATTN_P_USER_INDEX
#error "row lists serve RANDOM_ROWS and USER_INDEX"
#endif

/* this lane's LD dims of row @row */
static __device__ __forceinline__ void ld_slice(u32 *w, const u16 *row,
						int lane)
{
#if LW == 2
	uint2 x = __ldg((const uint2 *)(row + lane * LD));

	w[0] = x.x;
	w[1] = x.y;
#else
	w[0] = __ldg((const unsigned int *)(row + lane * LD));
#endif
}

static __device__ __forceinline__ void to_f(float *f, const u32 *w)
{
#pragma unroll
	for (int x = 0; x < LW; x++) {
		f[2 * x] = unpack_lo(w[x]);
		f[2 * x + 1] = unpack_hi(w[x]);
	}
}

static __device__ __forceinline__ void st_slice(u16 *row, const float *f,
						int lane)
{
#if LW == 2
	uint2 x;

	x.x = pack2(f[0], f[1]);
	x.y = pack2(f[2], f[3]);
	*(uint2 *)(row + lane * LD) = x;
#else
	*(u32 *)(row + lane * LD) = pack2(f[0], f[1]);
#endif
}

static __device__ __forceinline__ float dot_slice(const float *a,
						  const u32 *w)
{
	float f[LD], s = 0.f;

	to_f(f, w);
#pragma unroll
	for (int x = 0; x < LD; x++)
		s += a[x] * f[x];
	return s;
}

/* one halving step of the transposing butterfly */
template <int N>
static __device__ __forceinline__ void rs_step(float *v, int lane)
{
	const bool up = lane & N;

#pragma unroll
	for (int k = 0; k < N; k++) {
		float keep = up ? v[k + N] : v[k];
		float give = up ? v[k] : v[k + N];

		v[k] = keep + __shfl_xor_sync(FULL, give, N);
	}
}

/* v[k] on every lane, k < 32 -> lane e gets sum over lanes of v[e] */
static __device__ __forceinline__ float reduce_scatter(float *v, int lane)
{
	rs_step<16>(v, lane);
	rs_step<8>(v, lane);
	rs_step<4>(v, lane);
	rs_step<2>(v, lane);
	rs_step<1>(v, lane);
	return v[0];
}

static __device__ __forceinline__ float warp_sum(float x)
{
#pragma unroll
	for (int o = 16; o > 0; o >>= 1)
		x += __shfl_xor_sync(FULL, x, o);
	return x;
}

static __device__ __forceinline__ float warp_max(float x)
{
#pragma unroll
	for (int o = 16; o > 0; o >>= 1)
		x = fmaxf(x, __shfl_xor_sync(FULL, x, o));
	return x;
}

/* query heads sharing one list: the GQA group's GROUP heads at h0 */
static __device__ __forceinline__ int group_size(const attn_rows_params &p)
{
	return PATTERN == ATTN_P_USER_INDEX ? GROUP : 1;
}

/*
 * Row i's list: RANDOM_ROWS of query head h, USER_INDEX of (b, hkv).
 */
static __device__ __forceinline__ const int *row_list(
	const attn_rows_params &p, int b, int h, int hkv, int i, i64 *st)
{
#if PATTERN == ATTN_P_RANDOM_ROWS
	*st = 1;
	return p.idx + ((i64)h * p.Nq + i) * p.r;
#else
	*st = p.ix_sr;
	return p.idx + b * p.ix_sb + hkv * p.ix_sh + i * p.ix_sn;
#endif
}

/*
 * Entry t of a row (key j), or -1: out of range, or (USER_INDEX) a key
 * the row already named at an earlier slot, since a repeated index counts
 * once.  The caller's tensor is not range-checked on the device, so a
 * bad index is ignored rather than read.
 */
static __device__ __forceinline__ int entry(const int *ix, i64 st, int t,
					    int n, int Nk)
{
	int j = t < n ? __ldg(ix + t * st) : -1;

	if (j < 0 || j >= Nk)
		return -1;
#if PATTERN == ATTN_P_USER_INDEX
	for (int u = 0; u < t; u++)
		if (__ldg(ix + u * st) == j)
			return -1;
#endif
	return j;
}

/*
 * entry() for a warp walking a row 32 slots at a time, lane l at slot c0
 * + l: the repeat test by shuffles instead of each lane's loop over the
 * earlier slots (up to r - 1 loads behind a branch a lane; H200, B2 H16
 * 16K d 128 r 128: USER_INDEX forward 18.0 -> 12.1 ms, forward +
 * backward 58.8 -> 40.0, before VBATCH): a key against the lower lanes
 * of its chunk (__match_any_sync) and every slot of the earlier chunks.
 */
static __device__ __forceinline__ int entry_w(const int *ix, i64 st, int c0,
					      int n, int Nk, int lane)
{
	const int t = c0 + lane;
	int j = t < n ? __ldg(ix + t * st) : -1;

#if PATTERN == ATTN_P_USER_INDEX
	unsigned same = __match_any_sync(FULL, j);
	bool dup = (same & ((1u << lane) - 1)) != 0;

	for (int p0 = 0; p0 < c0; p0 += 32) {
		int pj = __ldg(ix + (p0 + lane) * st);

#pragma unroll
		for (int k = 0; k < 32; k++)
			dup |= __shfl_sync(FULL, pj, k) == j;
	}
	if (dup)
		j = -1;
#endif
	return j < 0 || j >= Nk ? -1 : j;
}

/*
 * The warp's 32 rows of @base (@ld elements apart), row j of lane k into
 * w[k], this lane's slice of each; zeros where @mask has no bit k.  The
 * loads all go out before any use.
 */
static __device__ __forceinline__ void gather(u32 (*w)[LW], const u16 *base,
					      i64 ld, int j, unsigned mask,
					      int lane)
{
#pragma unroll
	for (int k = 0; k < 32; k++) {
		int jk = __shfl_sync(FULL, j, k);

		if (mask >> k & 1)
			ld_slice(w[k], base + (i64)jk * ld, lane);
		else
#pragma unroll
			for (int x = 0; x < LW; x++)
				w[k][x] = 0;
	}
}

/* ------------------------------------------------------------------------ */
/* forward                                                                  */

extern "C" __global__ void __launch_bounds__(THREADS)
asam_rows_fwd_kernel(const attn_rows_params p)
{
	const int lane = threadIdx.x & 31;
	const int i = blockIdx.x * NUM_WARPS + (threadIdx.x >> 5);
	const int b = blockIdx.z, h0 = blockIdx.y * group_size(p);
	const int hkv = h0 / (p.Hq / p.Hkv);
	const int G = group_size(p);
	const int lq = p.len_q ? p.len_q[b * p.lq_s] : p.Nq;
	const int lk = p.len_k ? p.len_k[b * p.lk_s] : p.Nk;
	const u16 *kg = (const u16 *)p.k + b * p.k_sb + hkv * p.k_sh;
	const u16 *vg = (const u16 *)p.v + b * p.v_sb + hkv * p.v_sh;
	float qf[GROUP][LD], acc[GROUP][LD], m[GROUP], ls[GROUP], wg[GROUP];
	bool act[GROUP];
	int lim, n, any = 0;
	const int *ix;
	i64 st;

	if (i >= p.Nq)
		return;
	lim = row_limit(i, lq, lk, p.Nq, p.Nk);
	ix = row_list(p, b, h0, hkv, i, &st);
	n = p.r;
#pragma unroll
	for (int g = 0; g < GROUP; g++) {
		float gv = 1.f;

		act[g] = g < G;
		if (GATE_MODE == ATTN_G_SOFT || GATE_MODE == ATTN_G_HARD)
			gv = g < G ? p.gate[b * p.g_sb + (h0 + g) * p.g_sh] :
				     0.f;
		if (GATE_MODE == ATTN_G_HARD)
			act[g] = act[g] && gv >= p.hard_tau;
		wg[g] = GATE_MODE == ATTN_G_SOFT ? gv : 1.f;
		any |= act[g];
		m[g] = ATTN_NEG_INF;
		ls[g] = 0.f;
#pragma unroll
		for (int x = 0; x < LD; x++) {
			acc[g][x] = 0.f;
			qf[g][x] = 0.f;
		}
		if (act[g]) {
			u32 w[LW];

			ld_slice(w, (const u16 *)p.q + b * p.q_sb +
				 (h0 + g) * p.q_sh + (i64)i * p.q_sn, lane);
			to_f(qf[g], w);
#pragma unroll
			for (int x = 0; x < LD; x++)
				qf[g][x] *= p.scale_log2;
		}
	}
	if (!any)	/* HARD: every head of the warp went dense */
		return;

	for (int cc = 0, nch = (n + 31) / 32; cc < nch && lim > 0; cc++) {
		const int c0 = ROW_CHUNK(cc, i, nch) * 32;
		int j = entry_w(ix, st, c0, n, p.Nk, lane);
		bool ok = j >= 0 && j < lim;
		unsigned mask = __ballot_sync(FULL, ok);
		u32 kw[32][LW];

#if PATTERN == ATTN_P_RANDOM_ROWS
		/* sorted rows: in order, the rest lies past the mask's limit */
		if (!ROTATE && __shfl_sync(FULL, j, 0) >= lim)
			break;
#endif
		if (!mask)
			continue;
		gather(kw, kg, p.k_sn, j, mask, lane);
		float pr[GROUP];

#pragma unroll
		for (int g = 0; g < GROUP; g++) {
			float part[32], s, mx, mn, al;

			pr[g] = 0.f;
			if (!act[g])
				continue;
#pragma unroll
			for (int k = 0; k < 32; k++)
				part[k] = dot_slice(qf[g], kw[k]);
			s = reduce_scatter(part, lane);
			s = ok ? s : ATTN_NEG_INF;
			mx = warp_max(s);
			mn = fmaxf(m[g], mx);
			al = fast_exp2(m[g] - mn);
			pr[g] = ok ? fast_exp2(s - mn) : 0.f;
			m[g] = mn;
			ls[g] = ls[g] * al + pr[g];
#pragma unroll
			for (int x = 0; x < LD; x++)
				acc[g][x] *= al;
		}
#if VBATCH
		/* into K's registers, free now */
		gather(kw, vg, p.v_sn, j, mask, lane);
#endif
#pragma unroll
		for (int k = 0; k < 32; k++) {
			float f[LD];
#if VBATCH
			to_f(f, kw[k]);
#else
			int jk = __shfl_sync(FULL, j, k);
			u32 w[LW];

			if (!(mask >> k & 1))
				continue;
			ld_slice(w, vg + (i64)jk * p.v_sn, lane);
			to_f(f, w);
#endif
#pragma unroll
			for (int g = 0; g < GROUP; g++) {
				float pk = __shfl_sync(FULL, pr[g], k);

#pragma unroll
				for (int x = 0; x < LD; x++)
					acc[g][x] += pk * f[x];
			}
		}
	}

#pragma unroll
	for (int g = 0; g < GROUP; g++) {
		const int h = h0 + g;
		float l, inv, o[LD];
		u16 *og;

		if (!act[g])
			continue;
		l = warp_sum(ls[g]);
		inv = l > 0.f ? 1.f / l : 0.f;
		og = (u16 *)p.o + b * p.o_sb + h * p.o_sh + (i64)i * p.o_sn;
#pragma unroll
		for (int x = 0; x < LD; x++)
			o[x] = acc[g][x] * inv;
		if (GATE_MODE == ATTN_G_SOFT) {
			/* the dense pass left A here (rounded once) */
			u32 w[LW];
			float a[LD];

			ld_slice(w, og, lane);
			to_f(a, w);
#pragma unroll
			for (int x = 0; x < LD; x++)
				o[x] = wg[g] * o[x] + (1.f - wg[g]) * a[x];
		}
		st_slice(og, o, lane);
		if (lane == 0) {
			i64 lo = b * p.l_sb + h * p.l_sh + i;
			float vs = l > 0.f ? (m[g] + fast_log2(l)) * ATTN_LN2 :
				   ATTN_NEG_INF;

			if (p.lse_s)
				p.lse_s[lo] = vs;
			/* HARD: the dense branch was not computed */
			if (GATE_MODE == ATTN_G_HARD && p.lse_d)
				p.lse_d[lo] = lim > 0 ?
					      __int_as_float(0x7fc00000) :
					      ATTN_NEG_INF;
		}
	}
}

/* ------------------------------------------------------------------------ */
/* backward: dQ and D_i                                                     */

extern "C" __global__ void __launch_bounds__(THREADS)
asam_rows_dq_kernel(const attn_rows_params p)
{
	const int lane = threadIdx.x & 31;
	const int i = blockIdx.x * NUM_WARPS + (threadIdx.x >> 5);
	const int b = blockIdx.z, h0 = blockIdx.y * group_size(p);
	const int hkv = h0 / (p.Hq / p.Hkv);
	const int lq = p.len_q ? p.len_q[b * p.lq_s] : p.Nq;
	const int lk = p.len_k ? p.len_k[b * p.lk_s] : p.Nk;
	const u16 *kg = (const u16 *)p.k + b * p.k_sb + hkv * p.k_sh;
	const u16 *vg = (const u16 *)p.v + b * p.v_sb + hkv * p.v_sh;
	float qf[GROUP][LD], df[GROUP][LD], X[GROUP][LD], Y[GROUP][LD];
	float L2[GROUP], Dl[GROUP];
	int lim, n;
	const int *ix;
	i64 st;

	if (i >= p.Nq)
		return;
	lim = row_limit(i, lq, lk, p.Nq, p.Nk);
	ix = row_list(p, b, h0, hkv, i, &st);
	n = p.r;
#pragma unroll
	for (int g = 0; g < GROUP; g++) {
		const int h = h0 + g;
		u32 w[LW];

		ld_slice(w, (const u16 *)p.q + b * p.q_sb + h * p.q_sh +
			 (i64)i * p.q_sn, lane);
		to_f(qf[g], w);
		ld_slice(w, (const u16 *)p.d_o + b * p.do_sb + h * p.do_sh +
			 (i64)i * p.do_sn, lane);
		to_f(df[g], w);
#pragma unroll
		for (int x = 0; x < LD; x++) {
			qf[g][x] *= p.scale_log2;
			X[g][x] = Y[g][x] = 0.f;
		}
		L2[g] = lim > 0 ? p.lse_s[b * p.l_sb + h * p.l_sh + i] *
				  ATTN_LOG2E : 0.f;
		Dl[g] = 0.f;
	}

	for (int cc = 0, nch = (n + 31) / 32; cc < nch && lim > 0; cc++) {
		const int c0 = ROW_CHUNK(cc, i, nch) * 32;
		int j = entry_w(ix, st, c0, n, p.Nk, lane);
		bool ok = j >= 0 && j < lim;
		unsigned mask = __ballot_sync(FULL, ok);
		u32 kw[32][LW], vw[32][LW];
		float pr[GROUP], pd[GROUP];

#if PATTERN == ATTN_P_RANDOM_ROWS
		if (!ROTATE && __shfl_sync(FULL, j, 0) >= lim)
			break;
#endif
		if (!mask)
			continue;
#pragma unroll
		for (int k = 0; k < 32; k++) {
			int jk = __shfl_sync(FULL, j, k);

			if (mask >> k & 1) {
				ld_slice(kw[k], kg + (i64)jk * p.k_sn, lane);
				ld_slice(vw[k], vg + (i64)jk * p.v_sn, lane);
			} else {
#pragma unroll
				for (int x = 0; x < LW; x++)
					kw[k][x] = vw[k][x] = 0;
			}
		}
#pragma unroll
		for (int g = 0; g < GROUP; g++) {
			float part[32], s, dp;

#pragma unroll
			for (int k = 0; k < 32; k++)
				part[k] = dot_slice(qf[g], kw[k]);
			s = reduce_scatter(part, lane);
#pragma unroll
			for (int k = 0; k < 32; k++)
				part[k] = dot_slice(df[g], vw[k]);
			dp = reduce_scatter(part, lane);
			pr[g] = ok ? fast_exp2(s - L2[g]) : 0.f;
			pd[g] = pr[g] * dp;
			Dl[g] += pd[g];
		}
#pragma unroll
		for (int k = 0; k < 32; k++) {
			float f[LD];

			if (!(mask >> k & 1))
				continue;
			to_f(f, kw[k]);
#pragma unroll
			for (int g = 0; g < GROUP; g++) {
				float pk = __shfl_sync(FULL, pr[g], k);
				float dk = __shfl_sync(FULL, pd[g], k);

#pragma unroll
				for (int x = 0; x < LD; x++) {
					X[g][x] += dk * f[x];
					Y[g][x] += pk * f[x];
				}
			}
		}
	}

#pragma unroll
	for (int g = 0; g < GROUP; g++) {
		const int h = h0 + g;
		float D = warp_sum(Dl[g]), w = 1.f, o[LD];
		u16 *dq = (u16 *)p.dq + b * p.dq_sb + h * p.dq_sh +
			  (i64)i * p.dq_sn;

		if (GATE_MODE == ATTN_G_SOFT)
			w = p.gate[b * p.g_sb + h * p.g_sh];
#pragma unroll
		for (int x = 0; x < LD; x++)
			o[x] = w * p.scale * (X[g][x] - D * Y[g][x]);
		if (p.mix) {
			u32 ww[LW];
			float a[LD];

			ld_slice(ww, dq, lane);
			to_f(a, ww);
#pragma unroll
			for (int x = 0; x < LD; x++)
				o[x] += a[x];
		}
		st_slice(dq, o, lane);
		if (lane == 0)
			p.dsum[((i64)b * p.Hq + h) * p.Nq + i] = D;
	}
}

/* ------------------------------------------------------------------------ */
/* backward: dK and dV over the transposed lists                            */

extern "C" __global__ void __launch_bounds__(THREADS)
asam_rows_dkdv_kernel(const attn_rows_params p)
{
	const int lane = threadIdx.x & 31;
	const int j = blockIdx.x * NUM_WARPS + (threadIdx.x >> 5);
	const int b = blockIdx.z, hkv = blockIdx.y;
	const int G = p.Hq / p.Hkv;
	const int lq = p.len_q ? p.len_q[b * p.lq_s] : p.Nq;
	const int lk = p.len_k ? p.len_k[b * p.lk_s] : p.Nk;
	float kf[LD], vf[LD], dK[LD], dV[LD], o[LD];
	u32 w[LW];

	if (j >= p.Nk)
		return;
	ld_slice(w, (const u16 *)p.k + b * p.k_sb + hkv * p.k_sh +
		 (i64)j * p.k_sn, lane);
	to_f(kf, w);
	ld_slice(w, (const u16 *)p.v + b * p.v_sb + hkv * p.v_sh +
		 (i64)j * p.v_sn, lane);
	to_f(vf, w);
#pragma unroll
	for (int x = 0; x < LD; x++) {
		kf[x] *= p.scale_log2;
		dK[x] = dV[x] = 0.f;
	}

	for (int g = 0; g < G && j < lk; g++) {
		const int h = hkv * G + g;
		const int u = PATTERN == ATTN_P_RANDOM_ROWS ? h :
			      b * p.Hkv + hkv;
		const int t0 = p.toff[(i64)u * (p.Nk + 1) + j];
		const int t1 = p.toff[(i64)u * (p.Nk + 1) + j + 1];
		const u16 *qg = (const u16 *)p.q + b * p.q_sb + h * p.q_sh;
		const u16 *dg = (const u16 *)p.d_o + b * p.do_sb + h * p.do_sh;
		const float *lse = p.lse_s + b * p.l_sb + h * p.l_sh;
		const float *dsum = p.dsum + ((i64)b * p.Hq + h) * p.Nq;
		const float wg = GATE_MODE == ATTN_G_SOFT ?
				 p.gate[b * p.g_sb + h * p.g_sh] : 1.f;

		for (int c0 = t0; c0 < t1; c0 += 32) {
			int i = c0 + lane < t1 ? p.tlist[c0 + lane] : -1;
			bool ok = i >= 0 && j < row_limit(i, lq, lk, p.Nq,
							   p.Nk);
			unsigned mask = __ballot_sync(FULL, ok);
			u32 qw[32][LW], dw[32][LW];
			float part[32], s, dp, pr, ds, L2 = 0.f, D = 0.f;

			if (!mask)
				continue;
			if (ok) {
				L2 = lse[i] * ATTN_LOG2E;
				D = dsum[i];
			}
#pragma unroll
			for (int k = 0; k < 32; k++) {
				int ik = __shfl_sync(FULL, i, k);

				if (mask >> k & 1) {
					ld_slice(qw[k], qg + (i64)ik * p.q_sn,
						 lane);
					ld_slice(dw[k], dg + (i64)ik * p.do_sn,
						 lane);
				} else {
#pragma unroll
					for (int x = 0; x < LW; x++)
						qw[k][x] = dw[k][x] = 0;
				}
			}
#pragma unroll
			for (int k = 0; k < 32; k++)
				part[k] = dot_slice(kf, qw[k]);
			s = reduce_scatter(part, lane);
#pragma unroll
			for (int k = 0; k < 32; k++)
				part[k] = dot_slice(vf, dw[k]);
			dp = reduce_scatter(part, lane);
			pr = ok ? wg * fast_exp2(s - L2) : 0.f;
			ds = pr * (dp - D);
#pragma unroll
			for (int k = 0; k < 32; k++) {
				float fq[LD], fd[LD];
				float pk = __shfl_sync(FULL, pr, k);
				float dk = __shfl_sync(FULL, ds, k);

				if (!(mask >> k & 1))
					continue;
				to_f(fq, qw[k]);
				to_f(fd, dw[k]);
#pragma unroll
				for (int x = 0; x < LD; x++) {
					dV[x] += pk * fd[x];
					dK[x] += dk * fq[x];
				}
			}
		}
	}

	{
		u16 *dk = (u16 *)p.dk + b * p.dk_sb + hkv * p.dk_sh +
			  (i64)j * p.dk_sn;
		u16 *dv = (u16 *)p.dv + b * p.dv_sb + hkv * p.dv_sh +
			  (i64)j * p.dv_sn;
		float a[LD];

#pragma unroll
		for (int x = 0; x < LD; x++)
			o[x] = p.scale * dK[x];
		if (p.mix) {
			ld_slice(w, dk, lane);
			to_f(a, w);
#pragma unroll
			for (int x = 0; x < LD; x++)
				o[x] += a[x];
		}
		st_slice(dk, o, lane);
#pragma unroll
		for (int x = 0; x < LD; x++)
			o[x] = dV[x];
		if (p.mix) {
			ld_slice(w, dv, lane);
			to_f(a, w);
#pragma unroll
			for (int x = 0; x < LD; x++)
				o[x] += a[x];
		}
		st_slice(dv, o, lane);
	}
}

/* SOFT: dg_bh += sum_i <dO_i, S_i>, one warp per (b, h), fixed order */
extern "C" __global__ void __launch_bounds__(32)
asam_rows_dg_kernel(const attn_rows_params p)
{
	const int b = blockIdx.y, h = blockIdx.x, lane = threadIdx.x;
	const float *s = p.dsum + ((i64)b * p.Hq + h) * p.Nq;
	float sum = 0.f;

	for (int i = lane; i < p.Nq; i += 32)
		sum += s[i];
	sum = warp_sum(sum);
	if (lane == 0)
		p.dgate[b * p.dg_sb + h * p.dg_sh] += sum;
}

/* ------------------------------------------------------------------------ */
/* USER_INDEX: transposed lists per call (counting sort, then each key's   */
/* rows sorted, so the order, and so every sum, is fixed)                   */

/*
 * Slot @t of a row for a thread per slot: when r is a multiple of 32 a
 * warp is 32 aligned slots of one row (and whole warps end the grid), so
 * the warp's shuffle test serves; otherwise each thread loops.
 */
static __device__ __forceinline__ int slot_entry(const attn_rows_params &p,
						 const int *ix, i64 st, int t)
{
	if (p.r % 32 == 0)
		return entry_w(ix, st, t & ~31, p.r, p.Nk, threadIdx.x & 31);
	return entry(ix, st, t, p.r, p.Nk);
}

/* thread per (u, i, t): count the valid, first-seen entries per key */
extern "C" __global__ void __launch_bounds__(256)
asam_rows_tcount_kernel(const attn_rows_params p)
{
	const i64 e = (i64)blockIdx.x * 256 + threadIdx.x;
	const i64 per = (i64)p.Nq * p.r;
	const int u = blockIdx.y, b = u / p.Hkv, hkv = u % p.Hkv;
	const int i = (int)(e / p.r), t = (int)(e % p.r);
	const int *ix;
	i64 st;
	int j;

	if (e >= per)
		return;
	ix = row_list(p, b, 0, hkv, i, &st);
	j = slot_entry(p, ix, st, t);
	if (j >= 0)
		atomicAdd(p.toff + (i64)u * (p.Nk + 1) + j, 1);
}

/*
 * Block per unit: counts -> offsets (exclusive, from u * Nq * r).  The
 * 4 KB of totals are dynamic shared memory: the loader opts every
 * function into the device's whole dynamic size, which static shared
 * memory would push past the limit.
 */
extern "C" __global__ void __launch_bounds__(1024)
asam_rows_tscan_kernel(const attn_rows_params p)
{
	extern __shared__ int tot[];
	const int u = blockIdx.x, tid = threadIdx.x, n = p.Nk + 1;
	const int per = (n + 1023) / 1024, a = tid * per;
	int *c = p.toff + (i64)u * n, sum = 0, x;

	for (x = a; x < a + per && x < n; x++)
		sum += c[x];
	tot[tid] = sum;
	__syncthreads();
	for (int o = 1; o < 1024; o <<= 1) {
		int v = tid >= o ? tot[tid - o] : 0;

		__syncthreads();
		tot[tid] += v;
		__syncthreads();
	}
	sum = (int)((i64)u * p.Nq * p.r) + tot[tid] - sum;
	for (x = a; x < a + per && x < n; x++) {
		int v = c[x];

		c[x] = sum;
		sum += v;
	}
}

extern "C" __global__ void __launch_bounds__(256)
asam_rows_tfill_kernel(const attn_rows_params p)
{
	const i64 e = (i64)blockIdx.x * 256 + threadIdx.x;
	const i64 per = (i64)p.Nq * p.r;
	const int u = blockIdx.y, b = u / p.Hkv, hkv = u % p.Hkv;
	const int i = (int)(e / p.r), t = (int)(e % p.r);
	const int *ix;
	i64 st, at;
	int j;

	if (e >= per)
		return;
	ix = row_list(p, b, 0, hkv, i, &st);
	j = slot_entry(p, ix, st, t);
	if (j < 0)
		return;
	at = (i64)u * (p.Nk + 1) + j;
	p.tlist[p.toff[at] + atomicAdd(p.tcur + at, 1)] = i;
}

/* thread per (u, key): insertion sort of the key's rows */
extern "C" __global__ void __launch_bounds__(256)
asam_rows_tsort_kernel(const attn_rows_params p)
{
	const int j = blockIdx.x * 256 + threadIdx.x, u = blockIdx.y;
	const i64 at = (i64)u * (p.Nk + 1) + j;
	int a, e, x, y;

	if (j >= p.Nk)
		return;
	a = p.toff[at];
	e = p.toff[at + 1];
	for (x = a + 1; x < e; x++) {
		int v = p.tlist[x];

		for (y = x - 1; y >= a && p.tlist[y] > v; y--)
			p.tlist[y + 1] = p.tlist[y];
		p.tlist[y + 1] = v;
	}
}
