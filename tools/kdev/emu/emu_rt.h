// SPDX-License-Identifier: MIT
//
// kdev emu: the attention kernels compiled by g++ for the CPU.  Included
// first by every generated translation unit (fakecuda.c writes them): the
// CUDA keywords and built-ins the kernels use, and C++ versions of the
// inline-PTX helpers of attn_common.cuh (patch.py removes the originals).
// Warp-wide operations go through a per-warp exchange buffer between two
// warp barriers; the fake driver runs each thread of a block as a fiber.
#pragma once
#include <cstdint>
#include <cmath>
#include <cstring>
#include <type_traits>

struct uint4 { unsigned x, y, z, w; };
struct float4 { float x, y, z, w; };
struct float2 { float x, y; };

static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z,
			       unsigned w)
{
	return uint4{ x, y, z, w };
}

static inline float2 make_float2(float x, float y)
{
	return float2{ x, y };
}
struct emu_dim { unsigned x, y, z; };

struct emu_api {
	emu_dim *bid, *bdim;
	emu_dim *(*tid)(void);
	void *(*smem)(void);
	void (*sync)(void);
	void (*wsync)(void);
	uint64_t *(*xch)(void);		/* this warp's 32 x 8 slots */
	emu_dim *gdim;
};
static emu_api *E;
extern "C" void emu_bind(emu_api *a) { E = a; }

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(x)
#define threadIdx (*E->tid())
#define blockIdx (*E->bid)
#define blockDim (*E->bdim)
#define gridDim (*E->gdim)
#define __syncthreads() E->sync()
#define __syncwarp(...) E->wsync()
#define emu_smem() E->smem()

static inline int emu_lane() { return threadIdx.x & 31; }
static inline float __int_as_float(int x) { float f; memcpy(&f, &x, 4); return f; }
static inline float __uint_as_float(unsigned x) { float f; memcpy(&f, &x, 4); return f; }
static inline int __float_as_int(float x) { int f; memcpy(&f, &x, 4); return f; }
static inline unsigned __float_as_uint(float x) { unsigned f; memcpy(&f, &x, 4); return f; }
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __ffs(unsigned x) { return __builtin_ffs(x); }
template <class T> static inline T __ldg(const T *p) { return *p; }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline double __dadd_rn(double a, double b) { volatile double r = a + b; return r; }
static inline double __dsub_rn(double a, double b) { volatile double r = a - b; return r; }
static inline double __dmul_rn(double a, double b) { volatile double r = a * b; return r; }
static inline double __ddiv_rn(double a, double b) { volatile double r = a / b; return r; }
static inline double __dsqrt_rn(double a) { return sqrt(a); }
static inline float __double2float_rn(double a) { return (float)a; }

/* every lane posts @v, then reads lane @src(lane)'s */
template <class T, class F> static inline T emu_shfl(T v, F src)
{
	uint64_t *b = E->xch();
	int l = emu_lane();
	T r;

	memcpy(&b[l * 8], &v, sizeof(v));
	E->wsync();
	memcpy(&r, &b[(src(l) & 31) * 8], sizeof(r));
	E->wsync();
	return r;
}

template <class T> static inline T __shfl_xor_sync(unsigned, T v, int o)
{
	return emu_shfl(v, [o](int l) { return l ^ o; });
}

template <class T> static inline T __shfl_sync(unsigned, T v, int src)
{
	return emu_shfl(v, [src](int) { return src; });
}

static inline bool __any_sync(unsigned, bool p)
{
	uint64_t *b = E->xch();
	int l = emu_lane(), i;
	bool r = false;

	b[l * 8] = p;
	E->wsync();
	for (i = 0; i < 32; i++)
		r |= b[i * 8] != 0;
	E->wsync();
	return r;
}

static inline unsigned __match_any_sync(unsigned, int v)
{
	uint64_t *b = E->xch();
	int l = emu_lane(), i;
	unsigned m = 0;

	b[l * 8] = (uint32_t)v;
	E->wsync();
	for (i = 0; i < 32; i++)
		if ((uint32_t)b[i * 8] == (uint32_t)v)
			m |= 1u << i;
	E->wsync();
	return m;
}

/* ---- the inline-PTX helpers of attn_common.cuh ---- */
static inline float fast_exp2(float x) { return exp2f(x); }
static inline float fast_log2(float x) { return log2f(x); }

static inline void cp_async16(void *dst, const void *src, bool valid)
{
	if (valid)
		memcpy(dst, src, 16);
	else
		memset(dst, 0, 16);
}
static inline void cp_async_commit(void) {}
static inline void cp_async_wait_all(void) {}

static inline float emu_h2f(uint16_t h)
{
#if ASAM_DTYPE == 2
	return __uint_as_float((uint32_t)h << 16);
#else
	_Float16 f;

	memcpy(&f, &h, 2);
	return (float)f;
#endif
}

static inline uint16_t emu_f2h(float x)
{
#if ASAM_DTYPE == 2
	uint32_t u = __float_as_uint(x);

	if ((u & 0x7fffffff) > 0x7f800000)
		return 0x7fc0;
	u += 0x7fff + ((u >> 16) & 1);
	return u >> 16;
#else
	_Float16 f = (_Float16)x;
	uint16_t h;

	memcpy(&h, &f, 2);
	return h;
#endif
}

static inline uint32_t pack2(float lo, float hi)
{
	return emu_f2h(lo) | ((uint32_t)emu_f2h(hi) << 16);
}
static inline float unpack_lo(uint32_t x) { return emu_h2f(x & 0xffff); }
static inline float unpack_hi(uint32_t x) { return emu_h2f(x >> 16); }
static inline void prefetch_l2(const void *) { }
static inline uint32_t fma2(uint32_t a, uint32_t b, uint32_t c)
{
	return pack2(fmaf(unpack_lo(a), unpack_lo(b), unpack_lo(c)),
		     fmaf(unpack_hi(a), unpack_hi(b), unpack_hi(c)));
}

/* ldmatrix x4: lane l addresses row l % 8 of matrix l / 8 */
static inline void emu_ldsm(uint32_t *r, const void *p, bool trans)
{
	uint64_t *b = E->xch();
	int l = emu_lane(), m;

	b[l * 8] = (uint64_t)(uintptr_t)p;
	E->wsync();
	for (m = 0; m < 4; m++) {
		uint16_t e0, e1;

		if (!trans) {
			const uint16_t *row = (const uint16_t *)(uintptr_t)
				b[(m * 8 + l / 4) * 8];

			e0 = row[2 * (l % 4)];
			e1 = row[2 * (l % 4) + 1];
		} else {
			const uint16_t *r0 = (const uint16_t *)(uintptr_t)
				b[(m * 8 + 2 * (l % 4)) * 8];
			const uint16_t *r1 = (const uint16_t *)(uintptr_t)
				b[(m * 8 + 2 * (l % 4) + 1) * 8];

			e0 = r0[l / 4];
			e1 = r1[l / 4];
		}
		r[m] = e0 | ((uint32_t)e1 << 16);
	}
	E->wsync();
}
static inline void ldsm_x4(uint32_t *r, const void *p) { emu_ldsm(r, p, false); }
static inline void ldsm_x4_t(uint32_t *r, const void *p) { emu_ldsm(r, p, true); }

/* m16n8k16 row.col, fp32 accumulate */
static inline void mma16816(float *c, const uint32_t *a, const uint32_t *bb)
{
	uint64_t *x = E->xch();
	int l = emu_lane(), g = l / 4, t = l % 4, i, k;

	x[l * 8 + 0] = a[0]; x[l * 8 + 1] = a[1];
	x[l * 8 + 2] = a[2]; x[l * 8 + 3] = a[3];
	x[l * 8 + 4] = bb[0]; x[l * 8 + 5] = bb[1];
	E->wsync();
	for (i = 0; i < 4; i++) {
		int row = g + (i >> 1) * 8, col = 2 * t + (i & 1);
		float s = 0.f;

		for (k = 0; k < 16; k++) {
			int al = (row % 8) * 4 + (k % 8) / 2;
			int ar = (row >= 8) + 2 * (k >= 8);
			uint32_t aw = (uint32_t)x[al * 8 + ar];
			float av = (k & 1) ? unpack_hi(aw) : unpack_lo(aw);
			int bl = col * 4 + (k % 8) / 2;
			uint32_t bw = (uint32_t)x[bl * 8 + 4 + (k >= 8)];
			float bv = (k & 1) ? unpack_hi(bw) : unpack_lo(bw);

			s += av * bv;
		}
		c[i] += s;
	}
	E->wsync();
}

/* red.global.add (attn_bwd_nd.cuh): fibers take turns, so a plain add */
static inline void red_add_f32x2(float *g, float x, float y)
{
	g[0] += x;
	g[1] += y;
}
static inline void red_add_f32x4(float *g, float a, float b, float c, float d)
{
	g[0] += a;
	g[1] += b;
	g[2] += c;
	g[3] += d;
}

/* ---- the Hopper helpers of attn_sm90.cuh (patch.py removes them) ---- */
/* shared-window addresses are offsets into the block's buffer */
static inline uint32_t smem_u32(const void *p)
{
	return (uint32_t)((const char *)p - (const char *)E->smem());
}
static inline char *emu_sp(uint32_t a) { return (char *)E->smem() + a; }

static inline void wg_fence(void) {}
static inline void wg_commit(void) {}
template <int N> static inline void wg_wait(void) {}
template <int NT> static inline void wg_pin(float (*)[4]) {}
static inline void fence_proxy_async(void) {}
static inline void cp_async16_s(uint32_t dst, const void *src, bool valid)
{
	cp_async16(emu_sp(dst), src, valid);
}

static inline void cp_async16_all(uint32_t dst, const void *src)
{
	cp_async16(emu_sp(dst), src, true);
}

/*
 * One 16-bit element of a 128B-swizzled operand through its descriptor
 * (start, LBO, SBO in 16-byte units; Swizzle<3,4,3> on the byte
 * address): the PTX ISA's canonical layouts, as
 * tools/kdev/sm90-layout-check.py models them.  K-major: element (mn, k);
 * MN-major: element (k, mn).
 */
static inline float emu_desc_at(uint64_t d, uint32_t off)
{
	uint32_t a = (uint32_t)(d & 0x3fff) * 16 + off;
	uint16_t h;

	a ^= ((a >> 7) & 7) << 4;
	memcpy(&h, emu_sp(a), 2);
	return emu_h2f(h);
}
static inline float emu_kmaj(uint64_t d, int mn, int k)
{
	uint32_t sbo = (uint32_t)((d >> 32) & 0x3fff) * 16;

	return emu_desc_at(d, 128 * (mn % 8) + 2 * k + sbo * (mn / 8));
}
static inline float emu_mnmaj(uint64_t d, int k, int mn)
{
	uint32_t lbo = (uint32_t)((d >> 16) & 0x3fff) * 16;
	uint32_t sbo = (uint32_t)((d >> 32) & 0x3fff) * 16;

	return emu_desc_at(d, 2 * (mn % 64) + lbo * (mn / 64) +
			   128 * (k % 8) + sbo * (k / 8));
}

/*
 * wgmma.mma_async m64nNk16, fp32 accumulators: warp w of the warpgroup
 * owns rows 16w .. 16w + 15, a thread rows g and g + 8 and columns 2t,
 * 2t + 1 of every 8-column block (d[n][0..3], as mma.sync's C).  A from
 * registers (@a: mma.sync's A fragment, the warp's 16 rows) or shared
 * memory (@da; @ta: MN-major), B from shared memory (@tb: MN-major).
 * Run at issue: the kernels wait before reading D and keep the operands
 * until then, so this is one legal order.
 */
template <int N>
static inline void emu_wgmma(float (*d)[4], const uint32_t *a, uint64_t da,
			     int ta, uint64_t db, int tb, int acc)
{
	int l = emu_lane(), w = (threadIdx.x >> 5) & 3, g = l / 4, t = l % 4;
	float A[2][16];
	int r, k, n, i;

	if (a) {
		uint64_t *x = E->xch();

		for (i = 0; i < 4; i++)
			x[l * 8 + i] = a[i];
		E->wsync();
		for (r = 0; r < 2; r++)
			for (k = 0; k < 16; k++) {
				uint32_t wd = (uint32_t)x[(g * 4 + (k % 8) / 2) *
							  8 + r + 2 * (k >= 8)];

				A[r][k] = (k & 1) ? unpack_hi(wd) : unpack_lo(wd);
			}
		E->wsync();
	} else {
		for (r = 0; r < 2; r++)
			for (k = 0; k < 16; k++) {
				int m = 16 * w + g + 8 * r;

				A[r][k] = ta ? emu_mnmaj(da, k, m) :
					  emu_kmaj(da, m, k);
			}
	}
	for (n = 0; n < N / 8; n++)
		for (i = 0; i < 4; i++) {
			int c = n * 8 + 2 * t + (i & 1);
			float s = 0.f;

			for (k = 0; k < 16; k++)
				s += A[i >> 1][k] * (tb ? emu_mnmaj(db, k, c) :
						     emu_kmaj(db, c, k));
			d[n][i] = acc ? d[n][i] + s : s;
		}
}
static inline void wgmma_ss_n128(float (*d)[4], uint64_t da, uint64_t db,
				 int acc)
{
	emu_wgmma<128>(d, nullptr, da, 0, db, 0, acc);
}
template <int TA = 0, int TB = 0>
static inline void wgmma_ss_n64(float (*d)[4], uint64_t da, uint64_t db,
				int acc)
{
	emu_wgmma<64>(d, nullptr, da, TA, db, TB, acc);
}
template <int TA = 0, int TB = 0>
static inline void wgmma_ss_n32(float (*d)[4], uint64_t da, uint64_t db,
				int acc)
{
	emu_wgmma<32>(d, nullptr, da, TA, db, TB, acc);
}
static inline void wgmma_rs_n128(float (*d)[4], const uint32_t *a,
				 uint64_t db)
{
	emu_wgmma<128>(d, a, 0, 0, db, 1, 1);
}
static inline void wgmma_rs_n64(float (*d)[4], const uint32_t *a,
				uint64_t db)
{
	emu_wgmma<64>(d, a, 0, 0, db, 1, 1);
}

/* every kernel registers itself (patch.py adds the registration) */
typedef void (*emu_fn)(void *);
struct emu_reg {
	const char *n;
	emu_fn f;
	emu_reg *next;
	emu_reg(const char *n_, emu_fn f_);
};
static emu_reg *emu_regs;
inline emu_reg::emu_reg(const char *n_, emu_fn f_) : n(n_), f(f_), next(emu_regs)
{
	emu_regs = this;
}
extern "C" emu_fn emu_lookup(const char *n)
{
	for (emu_reg *r = emu_regs; r; r = r->next)
		if (!strcmp(r->n, n))
			return r->f;
	return 0;
}
