/* SPDX-License-Identifier: MIT */
/*
 * The fast backend's inner loops, written once with GCC vector types and
 * compiled once per ISA: the includer defines KERN (the suffix), VW (fp32
 * lanes per vector) and RB (rows per register block), and its object gets
 * that ISA's flags (arch/cpu/x86/Makefile).  Register blocks are sized so
 * that the accumulators stay in registers: RB rows x 64 columns for the
 * scores, RB rows x NV vectors of the head dim for the products.
 */
#include <stdint.h>
#include <string.h>

#include "fast.h"

typedef float vf __attribute__((vector_size(VW * 4), aligned(VW * 4)));
typedef int32_t vi __attribute__((vector_size(VW * 4), aligned(VW * 4)));

#define NC	(FAST_KB / VW)		/* vectors per 64-column row */
#define NV	(64 / VW > 4 ? 4 : 64 / VW)	/* head-dim vectors per block */

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define F(name) CAT(name, KERN)

/* unaligned: K and V rows may be read in place from the caller's tensor */
typedef float vfu __attribute__((vector_size(VW * 4), aligned(4)));

static inline vf F(ld)(const float *p)
{
	return *(const vfu *)p;
}

static inline void F(st)(float *p, vf x)
{
	*(vfu *)p = x;
}

/*
 * x in every lane: one broadcast from memory.  The obvious (vf){ 0 } + x
 * is a scalar add first (0 + -0 is +0, so it cannot be folded) and a
 * register broadcast after: two more uops for each FMA row, on the
 * ports the 512-bit FMAs use on Intel cores.  x - 0 is x for every x,
 * so the compiler drops the subtraction and keeps the broadcast.
 */
static inline __attribute__((always_inline)) vf F(bc)(float x)
{
	return x - (vf){ 0 };
}

/*
 * c[r][c0..c0 + NB VW) = a[r] . bt[.][c0..] for rows r0..r0+nr, nr <= RB:
 * NB (at most 4) vectors of columns a pass, so that RB x NB accumulators,
 * NB column vectors and a broadcast fit the register file (16 on AVX2
 * and SSE, where a whole 64-column row is 8 or 16 vectors).
 */
#define NB	(NC < 4 ? NC : 4)

static inline __attribute__((always_inline)) void
F(nt_block)(const float *a, int dp, const float *bt, float *c, int ldc,
	    const int nr, const int nb)
{
	vf acc[2 * RB][NB];	/* 2 RB rows only when nb <= NB / 2 */
	int r, v, e;

	for (r = 0; r < nr; r++)
		for (v = 0; v < nb; v++)
			acc[r][v] = (vf){ 0 };
	for (e = 0; e < dp; e++) {
		vf b[NB];

		for (v = 0; v < nb; v++)
			b[v] = F(ld)(bt + e * FAST_KB + v * VW);
		for (r = 0; r < nr; r++) {
			vf x = F(bc)(a[r * dp + e]);

			for (v = 0; v < nb; v++)
				acc[r][v] += x * b[v];
		}
	}
	for (r = 0; r < nr; r++)
		for (v = 0; v < nb; v++)
			F(st)(c + r * ldc + v * VW, acc[r][v]);
}

static inline __attribute__((always_inline)) void
F(nt_cols)(const float *a, int m, int dp, const float *bt, float *c, int ldc,
	   const int nb)
{
	int r = 0;

	/* half the columns: twice the rows, the same accumulators */
	if (2 * nb <= NB)
		for (; r + 2 * RB <= m; r += 2 * RB)
			F(nt_block)(a + r * dp, dp, bt, c + r * ldc, ldc,
				    2 * RB, nb);
	for (; r + RB <= m; r += RB)
		F(nt_block)(a + r * dp, dp, bt, c + r * ldc, ldc, RB, nb);
	for (; r < m; r++)
		F(nt_block)(a + r * dp, dp, bt, c + r * ldc, ldc, 1, nb);
}

static void F(mm_nt)(const float *a, int m, int dp, const float *bt, float *c)
{
	int c0;

	for (c0 = 0; c0 < FAST_KB; c0 += NB * VW)
		F(nt_cols)(a, m, dp, bt + c0, c + c0, FAST_KB, NB);
}

/*
 * mm_nt's first @nc columns only (rounded up to whole vectors; the rest
 * of c's rows is left as it was), c's rows @ldc apart: a bucket's last
 * segment need not be scored past its keys, and a whole bucket's scores
 * go into one row a query (fwd_bucket)
 */
static void F(mm_ntc)(const float *a, int m, int dp, const float *bt,
		      float *c, int ldc, int nc)
{
	int c0, nv;

	for (c0 = 0; c0 < nc && c0 < FAST_KB; c0 += NB * VW) {
		nv = (nc - c0 + VW - 1) / VW;
		if (nv >= NB)
			F(nt_cols)(a, m, dp, bt + c0, c + c0, ldc, NB);
#if NB > 1
		else if (nv == 1)
			F(nt_cols)(a, m, dp, bt + c0, c + c0, ldc, 1);
#endif
#if NB > 2
		else if (nv == 2)
			F(nt_cols)(a, m, dp, bt + c0, c + c0, ldc, 2);
#endif
#if NB > 3
		else if (nv == 3)
			F(nt_cols)(a, m, dp, bt + c0, c + c0, ldc, 3);
#endif
	}
}

/*
 * c[r][e0..e0+nv*VW) += p[r][0..k) . x[0..k)[e0..]; with @tr, p is read
 * transposed: p[r][j] at p[j * ldp + r]
 */
static inline __attribute__((always_inline)) void
F(nn_block)(const float *p, int ldp, int k, const float *x, int dp,
	    float *c, const int nr, const int nv, const int tr)
{
	vf acc[RB][NV];
	int r, v, j;

	for (r = 0; r < nr; r++)
		for (v = 0; v < nv; v++)
			acc[r][v] = F(ld)(c + r * dp + v * VW);
	for (j = 0; j < k; j++) {
		vf xv[NV];

		for (v = 0; v < nv; v++)
			xv[v] = F(ld)(x + j * dp + v * VW);
		for (r = 0; r < nr; r++) {
			vf s = F(bc)(tr ? p[j * ldp + r] : p[r * ldp + j]);

			for (v = 0; v < nv; v++)
				acc[r][v] += s * xv[v];
		}
	}
	for (r = 0; r < nr; r++)
		for (v = 0; v < nv; v++)
			F(st)(c + r * dp + v * VW, acc[r][v]);
}

static inline __attribute__((always_inline)) void
F(mm_nn_any)(const float *p, int ldp, int m, int k, const float *x, int dp,
	     float *c, const int tr)
{
	/* row r of p: p + r * ldp, or column r of the transposed p */
	const int rs = tr ? 1 : ldp;
	int r, e;

	for (e = 0; e < dp;) {
		if (e + NV * VW <= dp) {
			for (r = 0; r + RB <= m; r += RB)
				F(nn_block)(p + r * rs, ldp, k, x + e, dp,
					    c + r * dp + e, RB, NV, tr);
			for (; r < m; r++)
				F(nn_block)(p + r * rs, ldp, k, x + e, dp,
					    c + r * dp + e, 1, NV, tr);
			e += NV * VW;
		} else {
			for (r = 0; r + RB <= m; r += RB)
				F(nn_block)(p + r * rs, ldp, k, x + e, dp,
					    c + r * dp + e, RB, 1, tr);
			for (; r < m; r++)
				F(nn_block)(p + r * rs, ldp, k, x + e, dp,
					    c + r * dp + e, 1, 1, tr);
			e += VW;
		}
	}
}

static void F(mm_nn)(const float *p, int ldp, int m, int k, const float *x,
		     int dp, float *c)
{
	F(mm_nn_any)(p, ldp, m, k, x, dp, c, 0);
}

/* the backward's dK, dV: P read transposed, no transposed copy */
static void F(mm_tn)(const float *p, int ldp, int m, int k, const float *x,
		     int dp, float *c)
{
	F(mm_nn_any)(p, ldp, m, k, x, dp, c, 1);
}

/*
 * exp by range reduction x = n ln2 + f, |f| <= ln2/2, and a degree-6
 * polynomial (relative error ~2e-7); branch-free so that it vectorises.
 */
static inline vf F(vexp)(vf v)
{
	const vf lo = (vf){ 0 } - 87.0f, hi = (vf){ 0 } + 88.0f;
	vf k, f, p;
	vi e, m;

	m = v < lo;		/* lanes -1 where true: blend */
	v = (vf)(((vi)v & ~m) | ((vi)lo & m));
	m = v > hi;
	v = (vf)(((vi)v & ~m) | ((vi)hi & m));
	k = v * 1.44269504088896341f + 12582912.0f;
	k = k - 12582912.0f;
	f = v - k * 0.693145751953125f;
	f = f - k * 1.428606765330187045e-06f;
	p = (vf){ 0 } + 1.0f / 720;
	p = p * f + 1.0f / 120;
	p = p * f + 1.0f / 24;
	p = p * f + 1.0f / 6;
	p = p * f + 0.5f;
	p = p * f + 1.0f;
	p = p * f + 1.0f;
	e = (__builtin_convertvector(k, vi) + 127) << 23;
	return p * (vf)e;
}

static void F(exp)(float *x, int n)
{
	int t;

	for (t = 0; t < n; t += VW)
		F(st)(x + t, F(vexp)(F(ld)(x + t)));
}

/* lanes of chunk c selected by the 64-bit mask: -1 / 0 */
static inline vi F(lanes)(uint64_t mask, int c)
{
	vi bit;
	int l;

	for (l = 0; l < VW; l++)
		bit[l] = 1 << l;
	return (bit & ((vi){ 0 } + (int32_t)((mask >> (c * VW)) &
					     ((1ull << VW) - 1)))) != 0;
}

/*
 * The lanes' max (NaN lanes left out, as a scan in order never takes
 * them) and sum by butterflies, every lane ending with the result: a
 * scan over the lanes is a chain of VW dependent steps, and row_step
 * took two a row a block (~100 cycles of latency at VW 16).
 */
static inline vf F(bmax)(vf mx)
{
	const vf ninf = (vf){ 0 } - __builtin_inff();
	vi lane;
	int l;

	for (l = 0; l < VW; l++)
		lane[l] = l;
	mx = (vf)(((vi)mx & (mx == mx)) | ((vi)ninf & ~(mx == mx)));
	for (l = VW / 2; l; l /= 2) {
		vf o = __builtin_shuffle(mx, lane ^ l);
		vi gt = o > mx;

		mx = (vf)(((vi)o & gt) | ((vi)mx & ~gt));
	}
	return mx;
}

static inline float F(bsum)(vf acc)
{
	vi lane;
	int l;

	for (l = 0; l < VW; l++)
		lane[l] = l;
	for (l = VW / 2; l; l /= 2)
		acc += __builtin_shuffle(acc, lane ^ l);
	return acc[0];
}

/*
 * One row of the online softmax over a 64-key block: with @find_max, the
 * new running max is max(@m, max of s on the mask), else @m is used as
 * is (a saved log-sum-exp).  P = exp(s - max) on the mask, 0 elsewhere;
 * *sum gets the sum of P.  Returns the max used.
 */
static float F(row_step)(const float *s, uint64_t mask, float m, bool find_max,
			 float *P, float *sum)
{
	const vf ninf = (vf){ 0 } - __builtin_inff();
	vf acc = (vf){ 0 };
	int c, nv;

	if (mask == ~0ull) {
		/* a full block (dense, band interiors): no lane selects */
		if (find_max) {
			vf mx = F(ld)(s);

			for (c = 1; c < NC; c++) {
				vf x = F(ld)(s + c * VW);
				vi gt = x > mx;

				mx = (vf)(((vi)x & gt) | ((vi)mx & ~gt));
			}
			mx = F(bmax)(mx);
			m = mx[0] > m ? mx[0] : m;
		}
		for (c = 0; c < NC; c++) {
			vf x = F(vexp)(F(ld)(s + c * VW) - m);

			acc += x;
			F(st)(P + c * VW, x);
		}
		*sum = F(bsum)(acc);
		return m;
	}
	/*
	 * vectors past the mask's last key (a partial segment's tail, a
	 * row's causal end) hold no key: zeros, no exp
	 */
	nv = mask ? (64 - __builtin_clzll(mask) + VW - 1) / VW : 0;
	for (c = nv; c < NC; c++)
		F(st)(P + c * VW, (vf){ 0 });
	if (find_max) {
		vf mx = ninf;

		for (c = 0; c < nv; c++) {
			vi sel = F(lanes)(mask, c);
			vf x = (vf)(((vi)F(ld)(s + c * VW) & sel) |
				    ((vi)ninf & ~sel));
			vi gt = x > mx;

			mx = (vf)(((vi)x & gt) | ((vi)mx & ~gt));
		}
		mx = F(bmax)(mx);
		m = mx[0] > m ? mx[0] : m;
	}
	for (c = 0; c < nv; c++) {
		vi sel = F(lanes)(mask, c);
		vf x = F(ld)(s + c * VW) - m;

		x = (vf)((vi)F(vexp)(x) & sel);
		acc += x;
		F(st)(P + c * VW, x);
	}
	*sum = F(bsum)(acc);
	return m;
}

/*
 * One level of a transposing reduction: @a and @b each hold VW / P keys
 * with P partial sums apiece (contiguous lanes); the result holds the
 * keys of @a then of @b, with P / 2 partial sums apiece.  The masks are
 * constants once inlined and unrolled.
 */
static inline __attribute__((always_inline)) vf F(hpair)(vf a, vf b,
							 const int P)
{
	vi m1, m2;
	int l;

	for (l = 0; l < VW; l++) {
		int half = l / (VW / 2), o = l % (VW / 2);
		int src = o / (P / 2) * P + o % (P / 2) + half * VW;

		m1[l] = src;
		m2[l] = src + P / 2;
	}
	return __builtin_shuffle(a, b, m1) + __builtin_shuffle(a, b, m2);
}

#if VW == 16 && defined(__AVX512F__)
#include <immintrin.h>

/*
 * AVX-512 dots: 16 keys a pass with the query row held in registers
 * when dp is 32, 64 or 128 (NQ vectors; one load per FMA, none for q),
 * and the 16 partial-sum vectors reduced by immediate shuffles: 30
 * shuffles and 15 adds leave key x's sum in lane x.  The reduction's
 * lane order is a 4 x 4 transpose of the slot order, so slot x takes
 * key 4 (x % 4) + x / 4.  On the AMD EPYC build host about 20 % faster
 * than the generic form, whose shuffle masks lived on the stack.
 */
static inline __attribute__((always_inline)) void
F(dots16)(const float *q, int dp, const float *base, int64_t stride,
	  const int32_t *keys, int n, float *s, const int nq)
{
	__m512 qv[8], a[16];
	int t, e, x;

	for (x = 0; x < nq; x++)
		qv[x] = _mm512_loadu_ps(q + 16 * x);
	for (t = 0; t < n; t += 16) {
		int nk = n - t < 16 ? n - t : 16;

#pragma GCC unroll 16
		for (x = 0; x < 16; x++) {
			int k = 4 * (x % 4) + x / 4;
			const float *kr = base + (int64_t)keys[t + (k < nk ?
							     k : 0)] * stride;
			__m512 u, w;

			if (nq) {
				/* two chains: half the latency of one */
				u = _mm512_mul_ps(qv[0], _mm512_loadu_ps(kr));
				w = nq > 1 ? _mm512_mul_ps(qv[1],
						_mm512_loadu_ps(kr + 16)) :
					     _mm512_setzero_ps();
				for (e = 2; e < nq; e += 2) {
					u = _mm512_fmadd_ps(qv[e],
						_mm512_loadu_ps(kr + 16 * e), u);
					w = _mm512_fmadd_ps(qv[e + 1],
						_mm512_loadu_ps(kr + 16 * e + 16),
						w);
				}
			} else {
				u = _mm512_setzero_ps();
				w = u;
				for (e = 0; e < dp; e += 16)
					u = _mm512_fmadd_ps(_mm512_loadu_ps(q + e),
							    _mm512_loadu_ps(kr + e),
							    u);
			}
			a[x] = _mm512_add_ps(u, w);
		}
		/* 16 -> 8 vectors: two slots' 8 partials each */
		for (x = 0; x < 8; x++)
			a[x] = _mm512_add_ps(
				_mm512_shuffle_f32x4(a[2 * x], a[2 * x + 1], 0x44),
				_mm512_shuffle_f32x4(a[2 * x], a[2 * x + 1], 0xee));
		/* 8 -> 4: four slots' 4 partials, one a 128-bit lane */
		for (x = 0; x < 4; x++)
			a[x] = _mm512_add_ps(
				_mm512_shuffle_f32x4(a[2 * x], a[2 * x + 1], 0x88),
				_mm512_shuffle_f32x4(a[2 * x], a[2 * x + 1], 0xdd));
		/* 4 -> 2 -> 1, within the 128-bit lanes */
		for (x = 0; x < 2; x++)
			a[x] = _mm512_add_ps(
				_mm512_unpacklo_ps(a[2 * x], a[2 * x + 1]),
				_mm512_unpackhi_ps(a[2 * x], a[2 * x + 1]));
		a[0] = _mm512_add_ps(_mm512_shuffle_ps(a[0], a[1], 0x44),
				     _mm512_shuffle_ps(a[0], a[1], 0xee));
		if (nk == 16)
			_mm512_storeu_ps(s + t, a[0]);
		else
			_mm512_mask_storeu_ps(s + t,
					      (__mmask16)((1u << nk) - 1), a[0]);
	}
}

static void F(dots)(const float *q, int dp, const float *base,
		    int64_t stride, const int32_t *keys, int n, float *s)
{
	if (dp == 64)
		F(dots16)(q, dp, base, stride, keys, n, s, 4);
	else if (dp == 128)
		F(dots16)(q, dp, base, stride, keys, n, s, 8);
	else if (dp == 32)
		F(dots16)(q, dp, base, stride, keys, n, s, 2);
	else
		F(dots16)(q, dp, base, stride, keys, n, s, 0);
}
#elif VW == 8 && defined(__AVX2__)
#include <immintrin.h>

/*
 * AVX2 dots: 8 keys a pass, each q vector loaded once for all 8 (16
 * registers hold 8 accumulators but not a d = 64 query as well), and
 * the 8 partial-sum vectors reduced with immediate shuffles (12
 * shuffles, 7 adds); slot x takes key 4 (x % 2) + x / 2, the order the
 * reduction leaves its lanes in.
 */
static void F(dots)(const float *q, int dp, const float *base,
		    int64_t stride, const int32_t *keys, int n, float *s)
{
	int t, e, x;

	for (t = 0; t < n; t += 8) {
		const float *kr[8];
		__m256 a[8];
		int nk = n - t < 8 ? n - t : 8;

		for (x = 0; x < 8; x++) {
			int k = 4 * (x % 2) + x / 2;

			kr[x] = base + (int64_t)keys[t + (k < nk ? k : 0)] *
				stride;
			a[x] = _mm256_setzero_ps();
		}
		for (e = 0; e < dp; e += 8) {
			__m256 qv = _mm256_loadu_ps(q + e);

			for (x = 0; x < 8; x++)
				a[x] = _mm256_fmadd_ps(qv,
						_mm256_loadu_ps(kr[x] + e), a[x]);
		}
		/* 8 -> 4: two slots' 4 partials, one a 128-bit lane */
		for (x = 0; x < 4; x++)
			a[x] = _mm256_add_ps(
				_mm256_permute2f128_ps(a[2 * x], a[2 * x + 1],
						       0x20),
				_mm256_permute2f128_ps(a[2 * x], a[2 * x + 1],
						       0x31));
		/* 4 -> 2 -> 1, within the 128-bit lanes */
		for (x = 0; x < 2; x++)
			a[x] = _mm256_add_ps(
				_mm256_unpacklo_ps(a[2 * x], a[2 * x + 1]),
				_mm256_unpackhi_ps(a[2 * x], a[2 * x + 1]));
		a[0] = _mm256_add_ps(_mm256_shuffle_ps(a[0], a[1], 0x44),
				     _mm256_shuffle_ps(a[0], a[1], 0xee));
		if (nk == 8) {
			_mm256_storeu_ps(s + t, a[0]);
		} else {
			float tmp[8];

			_mm256_storeu_ps(tmp, a[0]);
			for (x = 0; x < nk; x++)
				s[t + x] = tmp[x];
		}
	}
}
#else
/*
 * One query row against scattered key rows (row t at base + keys[t] *
 * stride): s[t] = <q, k_t>, VW keys at a time, each key's lanes summed
 * by a butterfly of shuffles instead of VW dependent scalar adds.
 */
static void F(dots)(const float *q, int dp, const float *base,
		    int64_t stride, const int32_t *keys, int n, float *s)
{
	int t, e, c;

	for (t = 0; t < n; t += VW) {
		vf acc[VW];
		int nk = n - t < VW ? n - t : VW;

		/* four keys at a time: four row pointers live, not VW */
		for (c = 0; c < VW; c += 4) {
			const float *k0, *k1, *k2, *k3;
			vf a0 = (vf){ 0 }, a1 = a0, a2 = a0, a3 = a0;

#define KROW(x) (base + (int64_t)keys[t + (c + (x) < nk ? c + (x) : 0)] * \
		 stride)
			k0 = KROW(0);
			k1 = KROW(1);
			k2 = KROW(2);
			k3 = KROW(3);
#undef KROW
			for (e = 0; e < dp; e += VW) {
				vf x = F(ld)(q + e);

				a0 += x * F(ld)(k0 + e);
				a1 += x * F(ld)(k1 + e);
				a2 += x * F(ld)(k2 + e);
				a3 += x * F(ld)(k3 + e);
			}
			acc[c] = a0;
			acc[c + 1] = a1;
			acc[c + 2] = a2;
			acc[c + 3] = a3;
		}
		/* P vectors in, P / 2 out; P constant so the masks fold */
#define HLEVEL(P)							\
		_Pragma("GCC unroll 16")				\
		for (c = 0; c < (P) / 2; c++)				\
			acc[c] = F(hpair)(acc[2 * c], acc[2 * c + 1], (P))
		if (VW >= 16)
			HLEVEL(16);
		if (VW >= 8)
			HLEVEL(8);
		HLEVEL(4);
		HLEVEL(2);
#undef HLEVEL
		if (nk == VW) {
			F(st)(s + t, acc[0]);
		} else {
			for (c = 0; c < nk; c++)
				s[t + c] = acc[0][c];
		}
	}
}

#endif

#if VW == 16 && defined(__AVX512F__)
/*
 * AVX-512 value sums for dp 32, 64, 128 (NV vectors): the accumulator
 * row in registers, two keys a step into two sets (the FMA latency),
 * no masks for a partial column pass.
 */
static inline __attribute__((always_inline)) void
F(axpys16)(const float *P, const float *base, int64_t stride,
	   const int32_t *keys, int n, float *acc, const int nv)
{
	__m512 a[8], b[8];
	int t, c;

	for (c = 0; c < nv; c++) {
		a[c] = _mm512_loadu_ps(acc + 16 * c);
		b[c] = _mm512_setzero_ps();
	}
	for (t = 0; t + 1 < n; t += 2) {
		const float *v0 = base + (int64_t)keys[t] * stride;
		const float *v1 = base + (int64_t)keys[t + 1] * stride;
		__m512 p0 = _mm512_set1_ps(P[t]), p1 = _mm512_set1_ps(P[t + 1]);

		for (c = 0; c < nv; c++) {
			a[c] = _mm512_fmadd_ps(p0, _mm512_loadu_ps(v0 + 16 * c),
					       a[c]);
			b[c] = _mm512_fmadd_ps(p1, _mm512_loadu_ps(v1 + 16 * c),
					       b[c]);
		}
	}
	if (t < n) {
		const float *v0 = base + (int64_t)keys[t] * stride;
		__m512 p0 = _mm512_set1_ps(P[t]);

		for (c = 0; c < nv; c++)
			a[c] = _mm512_fmadd_ps(p0, _mm512_loadu_ps(v0 + 16 * c),
					       a[c]);
	}
	for (c = 0; c < nv; c++)
		_mm512_storeu_ps(acc + 16 * c, _mm512_add_ps(a[c], b[c]));
}
#endif

/*
 * acc[0..dp) += sum_t P[t] v_t over scattered value rows; two keys at a
 * time into two accumulator sets, so that the FMA chains are not bound
 * by their latency.
 */
static void F(axpys)(const float *P, const float *base, int64_t stride,
		     const int32_t *keys, int n, int dp, float *acc)
{
	int t, e;

#if VW == 16 && defined(__AVX512F__)
	if (dp == 64) {
		F(axpys16)(P, base, stride, keys, n, acc, 4);
		return;
	}
	if (dp == 128) {
		F(axpys16)(P, base, stride, keys, n, acc, 8);
		return;
	}
	if (dp == 32) {
		F(axpys16)(P, base, stride, keys, n, acc, 2);
		return;
	}
#endif
	for (e = 0; e < dp; e += 4 * VW) {
		int w = dp - e < 4 * VW ? (dp - e) / VW : 4, c;
		vf a[4], b[4];

		for (c = 0; c < w; c++) {
			a[c] = F(ld)(acc + e + c * VW);
			b[c] = (vf){ 0 };
		}
		for (t = 0; t + 1 < n; t += 2) {
			const float *v0 = base + (int64_t)keys[t] * stride + e;
			const float *v1 = base + (int64_t)keys[t + 1] * stride +
					  e;
			vf p0 = F(bc)(P[t]), p1 = F(bc)(P[t + 1]);

			for (c = 0; c < w; c++) {
				a[c] += p0 * F(ld)(v0 + c * VW);
				b[c] += p1 * F(ld)(v1 + c * VW);
			}
		}
		if (t < n) {
			const float *v0 = base + (int64_t)keys[t] * stride + e;
			vf p0 = F(bc)(P[t]);

			for (c = 0; c < w; c++)
				a[c] += p0 * F(ld)(v0 + c * VW);
		}
		for (c = 0; c < w; c++)
			F(st)(acc + e + c * VW, a[c] + b[c]);
	}
}

/*
 * Two rank-one updates of scattered rows (one query's share of dV and
 * dK): X[keys[t]] += a[t] x, Y[keys[t]] += b[t] y, with x and y held in
 * registers over 4 VW columns at a time.
 */
#if VW == 16 && defined(__AVX512F__)
/* AVX-512 ger2s for dp 32, 64, 128: x and y held in NV registers each */
static inline __attribute__((always_inline)) void
F(ger2s16)(const float *a, const float *x, const float *b, const float *y,
	   float *X, float *Y, const int32_t *keys, int n, int dp,
	   const int nv)
{
	__m512 xv[8], yv[8];
	int t, c;

	for (c = 0; c < nv; c++) {
		xv[c] = _mm512_loadu_ps(x + 16 * c);
		yv[c] = _mm512_loadu_ps(y + 16 * c);
	}
	for (t = 0; t < n; t++) {
		float *rx = X + (int64_t)keys[t] * dp;
		float *ry = Y + (int64_t)keys[t] * dp;
		__m512 pa = _mm512_set1_ps(a[t]), pb = _mm512_set1_ps(b[t]);

		for (c = 0; c < nv; c++) {
			_mm512_storeu_ps(rx + 16 * c, _mm512_fmadd_ps(pa, xv[c],
					 _mm512_loadu_ps(rx + 16 * c)));
			_mm512_storeu_ps(ry + 16 * c, _mm512_fmadd_ps(pb, yv[c],
					 _mm512_loadu_ps(ry + 16 * c)));
		}
	}
}
#endif

static void F(ger2s)(const float *a, const float *x, const float *b,
		     const float *y, float *X, float *Y, const int32_t *keys,
		     int n, int dp)
{
	int t, e, c;

#if VW == 16 && defined(__AVX512F__)
	if (dp == 64) {
		F(ger2s16)(a, x, b, y, X, Y, keys, n, dp, 4);
		return;
	}
	if (dp == 128) {
		F(ger2s16)(a, x, b, y, X, Y, keys, n, dp, 8);
		return;
	}
	if (dp == 32) {
		F(ger2s16)(a, x, b, y, X, Y, keys, n, dp, 2);
		return;
	}
#endif

	for (e = 0; e < dp; e += 4 * VW) {
		int w = dp - e < 4 * VW ? (dp - e) / VW : 4;
		vf xv[4], yv[4];

		for (c = 0; c < w; c++) {
			xv[c] = F(ld)(x + e + c * VW);
			yv[c] = F(ld)(y + e + c * VW);
		}
		for (t = 0; t < n; t++) {
			float *rx = X + (int64_t)keys[t] * dp + e;
			float *ry = Y + (int64_t)keys[t] * dp + e;
			vf pa = F(bc)(a[t]), pb = F(bc)(b[t]);

			for (c = 0; c < w; c++) {
				F(st)(rx + c * VW, F(ld)(rx + c * VW) +
				      pa * xv[c]);
				F(st)(ry + c * VW, F(ld)(ry + c * VW) +
				      pb * yv[c]);
			}
		}
	}
}

/*
 * A whole row's softmax numerators: s[0..n) becomes exp(s - max), lanes
 * past n of the last vector become 0; returns the max and *sum the sum,
 * both reduced in vectors (the scalar loops serialise on their adds).
 */
static float F(row_exp)(float *s, int n, float *sum)
{
	const vf ninf = (vf){ 0 } - __builtin_inff();
	vf mx = ninf, acc = (vf){ 0 };
	vi lane, lim;
	float m;
	int t, l;

	for (l = 0; l < VW; l++)
		lane[l] = l;
	for (t = 0; t < n; t += VW) {
		vf x = F(ld)(s + t);
		vi in = lane < (vi){ 0 } + (n - t);

		x = (vf)(((vi)x & in) | ((vi)ninf & ~in));
		mx = (vf)(((vi)x & (x > mx)) | ((vi)mx & ~(x > mx)));
	}
	/*
	 * the lanes' max and sum by butterflies: every lane ends with the
	 * whole vector's (scalar loops over the lanes were two chains of VW
	 * dependent steps a row, ~7 % of a RANDOM_ROWS forward at r 128).
	 * NaN lanes are -inf first, as the scan in order never took them.
	 */
	mx = (vf)(((vi)mx & (mx == mx)) | ((vi)ninf & ~(mx == mx)));
	for (l = VW / 2; l; l /= 2) {
		vf o = __builtin_shuffle(mx, lane ^ l);
		vi gt = o > mx;

		mx = (vf)(((vi)o & gt) | ((vi)mx & ~gt));
	}
	m = mx[0];
	for (t = 0; t < n; t += VW) {
		vf x = F(vexp)(F(ld)(s + t) - m);

		lim = lane < (vi){ 0 } + (n - t);
		x = (vf)((vi)x & lim);
		acc += x;
		F(st)(s + t, x);
	}
	for (l = VW / 2; l; l /= 2)
		acc += __builtin_shuffle(acc, lane ^ l);
	*sum = acc[0];
	return m;
}

/*
 * X[rows[t]][0..dp) += a[t] x for t < n (X rows dp apart, rows[] may not
 * repeat within a call): one key's row into the accumulators of the
 * query rows that take it (fast-kmajor.c).  x is held in registers for
 * up to 4 vectors a pass.
 */
static void F(scatter)(const float *a, const float *x, float *X,
		       const int32_t *rows, int n, int dp)
{
	int t, e, c;

	for (e = 0; e < dp; e += 4 * VW) {
		int w = dp - e < 4 * VW ? (dp - e) / VW : 4;
		vf xv[4];

		for (c = 0; c < w; c++)
			xv[c] = F(ld)(x + e + c * VW);
		for (t = 0; t < n; t++) {
			float *r = X + (int64_t)rows[t] * dp + e;
			vf s = F(bc)(a[t]);

			for (c = 0; c < w; c++)
				F(st)(r + c * VW, F(ld)(r + c * VW) +
				      s * xv[c]);
		}
	}
}

#if VW == 16
/*
 * One step of a 16 x 16 transpose in registers: rows a, b (b = a + h,
 * a's row bit h clear) swap the h-wide blocks off the diagonal, i.e.
 * exchange bit h of the row and of the column index; the four steps h =
 * 8, 4, 2, 1 make the transpose.
 */
#define TM_LO(j, h)	(((j) & (h)) ? 16 + (j) - (h) : (j))
#define TM_HI(j, h)	(((j) & (h)) ? 16 + (j) : (j) + (h))
#define TMASK(M, h) (vi){ M(0, h), M(1, h), M(2, h), M(3, h), M(4, h), \
	M(5, h), M(6, h), M(7, h), M(8, h), M(9, h), M(10, h), M(11, h), \
	M(12, h), M(13, h), M(14, h), M(15, h) }

static inline __attribute__((always_inline)) void F(tstep)(vf *r, int h,
							   vi lo, vi hi)
{
	int i;

	for (i = 0; i < 16; i++)
		if (!(i & h)) {
			vf a = r[i], b = r[i + h];

			r[i] = __builtin_shuffle(a, b, lo);
			r[i + h] = __builtin_shuffle(a, b, hi);
		}
}

static inline __attribute__((always_inline)) void F(t16)(vf *r)
{
	F(tstep)(r, 8, TMASK(TM_LO, 8), TMASK(TM_HI, 8));
	F(tstep)(r, 4, TMASK(TM_LO, 4), TMASK(TM_HI, 4));
	F(tstep)(r, 2, TMASK(TM_LO, 2), TMASK(TM_HI, 2));
	F(tstep)(r, 1, TMASK(TM_LO, 1), TMASK(TM_HI, 1));
}
#endif

/*
 * T[e][t] = row t's e-th value for t < n <= 64, e < dp (T rows FAST_KB
 * apart, columns n..63 zero), row t at base + keys[t] * stride, or at
 * base + t * stride without keys: the gathered keys' K (or V) block
 * transposed for mm_nt.  By scalar copies each value was a load and a
 * store (64 a key at d = 64, the largest cost of CLUSTERED's gather);
 * AVX-512 moves 16 x 16 tiles through registers instead.
 */
static void F(tgather)(const float *base, int64_t stride,
		       const int32_t *keys, int n, int dp, float *T)
{
	int t0, e, i;

#if VW == 16
	for (t0 = 0; t0 < n; t0 += 16) {
		int nt = n - t0 < 16 ? n - t0 : 16;
		const float *rp[16];

		for (i = 0; i < 16; i++)
			rp[i] = i >= nt ? NULL : base + stride *
				(int64_t)(keys ? keys[t0 + i] : t0 + i);
		for (e = 0; e < dp; e += 16) {
			vf r[16];

			for (i = 0; i < 16; i++)
				r[i] = rp[i] ? F(ld)(rp[i] + e) : (vf){ 0 };
			F(t16)(r);
			for (i = 0; i < 16; i++)
				F(st)(T + (size_t)(e + i) * FAST_KB + t0, r[i]);
		}
	}
	t0 = (n + 15) & ~15;
#else
	for (t0 = 0; t0 < n; t0++) {
		const float *row = base + stride *
				   (int64_t)(keys ? keys[t0] : t0);

		for (e = 0; e < dp; e++)
			T[(size_t)e * FAST_KB + t0] = row[e];
	}
#endif
	for (e = 0; e < dp && t0 < FAST_KB; e++)
		for (i = t0; i < FAST_KB; i++)
			T[(size_t)e * FAST_KB + i] = 0;
}

/*
 * The cluster screen's top two (fast-plan.c), token by token: column r
 * of c holds token r's products with the centroids, c[t][r] for t < nc
 * (rows FAST_KB apart), r < n <= 64; cs = c[t][r] * rx[r] * cn[t].
 * best[r], second[r], arg[r] come out exactly as a scan of t in order
 * from (-inf, -inf, 0) leaves them: arg the first of equal bests, second
 * the runner-up counting a tie, NaNs never taken.  A lane a token, so
 * the scan is in order with no merging (the tokens-as-rows form needed
 * shuffle butterflies per token, 6 % of a CLUSTERED forward).  rx must
 * hold n rounded up to a whole vector.
 */
static void F(top2t)(const float *c, int n, int nc, const float *rx,
		     const float *cn, float *best, float *second,
		     int32_t *arg)
{
	const vf ninf = (vf){ 0 } - __builtin_inff();
	int r, t, l;

	for (r = 0; r < n; r += VW) {
		vf bv = ninf, sv = ninf, x, lo, sx = F(ld)(rx + r);
		vi av = (vi){ 0 }, up, gt;

		for (t = 0; t < nc; t++) {
			x = F(ld)(c + (size_t)t * FAST_KB + r) * sx *
			    F(bc)(cn[t]);
			up = x > bv;
			lo = (vf)(((vi)bv & up) | ((vi)x & ~up));
			gt = lo > sv;
			sv = (vf)(((vi)lo & gt) | ((vi)sv & ~gt));
			av = (((vi){ 0 } + t) & up) | (av & ~up);
			bv = (vf)(((vi)x & up) | ((vi)bv & ~up));
		}
		for (l = 0; l < VW && r + l < n; l++) {
			best[r + l] = bv[l];
			second[r + l] = sv[l];
			arg[r + l] = av[l];
		}
	}
}

/* FMA throughput probe: 12 independent chains; returns the flops done */
static double F(peak)(long iters)
{
	vf acc[12], x = (vf){ 0 } + 0.999999f, y = (vf){ 0 } + 1e-7f;
	float sink = 0;
	long it;
	int a, l;

	for (a = 0; a < 12; a++)
		acc[a] = (vf){ 0 } + (float)a;
	for (it = 0; it < iters; it++)
		for (a = 0; a < 12; a++)
			acc[a] = acc[a] * x + y;
	for (a = 0; a < 12; a++)
		for (l = 0; l < VW; l++)
			sink += acc[a][l];
	__asm__ volatile("" : : "x"(sink));
	return 2.0 * VW * 12 * iters;
}

const struct fast_isa CAT(fast_isa_, KERN) = {
	.peak = F(peak),
	.dots = F(dots),
	.axpys = F(axpys),
	.ger2s = F(ger2s),
	.name = KERN_NAME,
	.mm_nt = F(mm_nt),
	.mm_ntc = F(mm_ntc),
	.mm_nn = F(mm_nn),
	.mm_tn = F(mm_tn),
	.exp = F(exp),
	.row_step = F(row_step),
	.row_exp = F(row_exp),
	.top2t = F(top2t),
	.scatter = F(scatter),
	.tgather = F(tgather),
};
