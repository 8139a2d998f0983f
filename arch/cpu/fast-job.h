/* SPDX-License-Identifier: MIT */
/*
 * The fast CPU backend's internals shared by its files: the per-call job,
 * the worker scratch, query groups and their key sets.
 *
 *   fast.c       the backend ops, jobs, worker scratch, K/V conversion
 *   fast-keys.c  query groups and their key sets (segments and masks)
 *   fast-fwd.c   the forward
 *   fast-bwd.c   the backward and its two schedules
 */
#ifndef ASAM_ARCH_CPU_FAST_JOB_H
#define ASAM_ARCH_CPU_FAST_JOB_H

#include <pthread.h>
#include <stdatomic.h>

#include <internal/threadpool.h>

#include "fast.h"

#define NEG_BIG (-1e30f)

/* segments of a CLUSTERED bucket scored whole (fwd_bucket), at most */
#define FAST_BSEG	8

struct fast_ws {
	float *q, *dO, *o, *accS, *accA, *dq;	/* [TQ][dp] */
	float *kT, *vT;				/* [dp][KB] */
	const float *pkT, *pvT, *pkb, *pvb;	/* this block's K, V */
	float *kb, *vb, *tk, *tv;		/* [KB][dp] */
	float *S, *Ps, *Pd, *dP;		/* [TQ][KB] */
	float *dST;				/* [KB][TQ] */
	float *dK, *dV;				/* [Nk][dp] (backward) */
	int32_t *rk;				/* [TQ][Nk] row key lists */
	int64_t rn[FAST_TQ];
	int64_t slo[FAST_TQ], shi[FAST_TQ];	/* LOCAL: row ranges */
	int64_t xlo[FAST_TQ], xhi[FAST_TQ];	/* band columns left out */
	int32_t *u, *posn;			/* [Nk] */
	float *srow;				/* [Nk + 16] one row's scores */
	float *srow2;				/* [Nk + 16] (backward) */
	uint8_t *flag, *bytes;			/* [Nk] */
	uint64_t *bits;				/* [nseg][TQ] row masks */
	int32_t *seg, *segn;			/* [maxseg] */
	/*
	 * CLUSTERED forward: the bucket last gathered (K transposed, V
	 * rows, segment by segment), reused while the next groups of the
	 * same cluster come to this worker.
	 */
	float *bkT, *bvb;			/* [nkb + 1][dp][KB], rows */
	float *bkb, *bvT;		/* backward: K rows, V transposed */
	float *Sb;		/* [TQ][FAST_BSEG KB] a bucket's scores (fwd) */
	const int32_t *bu;
	int64_t bn;
	int bvalid, bb, bhk;
	/*
	 * Backward: the dK, dV sums of the shared key set's positions
	 * (the list at au of (ab, ahk)), added into the key rows once when
	 * the set changes or the item ends (fast_bucket_flush), not once a
	 * group; positions below azero are cleared, below an used.
	 */
	float *bdK, *bdV;			/* [nkb + 1][KB][dp] */
	const int32_t *au;
	int64_t an, azero;
	int ab, ahk;
	/*
	 * Row tiles of the per-row patterns (fast-rows.c): each row's
	 * scaled query (or dO), accumulator, running max and sum, key
	 * list and cursor into it, for FAST_RT rows at most.
	 */
	float *tq, *tacc, *tm, *tl;		/* [RT][dp], [RT] */
	const int32_t **tkeys;			/* [RT] */
	int32_t *tn, *tcur;			/* [RT] */
	float *tdo;				/* [RT][dp] (backward) */
	float *tsc;			/* [RT][job->tsc] scores (fwd_split) */
	float *dqa, *dD;		/* [group Nq][dp], [group Nq] (bwd) */
	/*
	 * Chunked backward of RANDOM_ROWS, USER_INDEX: each row's list in
	 * chunk order, built at the first chunk, and the cursor into it
	 */
	const int32_t **bkeys;		/* [group Nq] */
	int32_t *brn, *bcur;		/* [group Nq] */
	int32_t *blist;			/* [group Nq][ucap] USER_INDEX */
	uint32_t *stamp, gen;		/* [Nk + 1] USER_INDEX repeats */
	uint64_t *ubits, *usum;		/* USER_INDEX sorted: key bits */
	/*
	 * Key-major tiles (fast-kmajor.c): each row's score offset, key
	 * starts, each pair's row and score slot, the scores, and a key's
	 * pairs' values
	 */
	int32_t *kmoff, *kmcst, *kmrow, *kmpos;	/* [RT + 1], [Nk + 2], [cap] */
	float *kms, *kmt, *kmt2;		/* [cap], [RT + 16] */
	struct asam_pat_plan *plan;
	int plan_b, plan_h;
	bool failed;
	bool scr;			/* the SCR_ buffers are the context's */
};

/*
 * Per-context state: the fp32 copies of K and V are kept between calls
 * (page faults on fresh buffers cost as much as a sparse pattern's whole
 * work), and so are RANDOM_ROWS index lists, whose generation is
 * O(Nq Nk) by definition.  A concurrent call that finds the lock taken
 * allocates its own.
 */
/*
 * A worker's large scratch buffers (fast_scratch), kept between calls
 * like the arena: allocated per call they cost a page fault per 4 KB
 * whenever glibc hands them out from fresh mmap pages, which depends on
 * what the process allocated before (20-40 % of a few-ms forward on the
 * build host).  Every one is written before it is read in each call.
 */
enum { SCR_RK, SCR_DK, SCR_DV, SCR_DQA, SCR_BKT, SCR_BVB, SCR_BKB, SCR_BVT,
       SCR_BLIST, SCR_KMROW, SCR_KMPOS, SCR_KMS, SCR_BDK, SCR_BDV, SCR_TSC,
       SCR_N };

struct cpu_scr {
	void *p[SCR_N];
	size_t bytes[SCR_N];
};

struct cpu_priv {
	pthread_mutex_t lock;
	float *arena;
	size_t arena_bytes;
	struct fast_rows_cache rows;
	struct cpu_scr *scr;		/* [nscr], one per worker */
	int nscr;
};

struct fast_job {
	const struct asam_problem *p;
	const struct fast_isa *isa;
	struct fast_plan fp;
	struct fast_ws **ws;			/* [nthreads] */
	int nthreads, dp, nw, group;
	int rt;					/* rows per tile (fast-rows.c) */
	int64_t rows_l2;			/* L2 bytes a key chunk may take */
	bool rows_only;				/* per-row patterns, sparse only */
	bool no_blocks;				/* no transposed K/V blocks */
	bool usort;				/* USER_INDEX rows sorted */
	bool kmajor;				/* key-major row tiles */
	bool o_stream;			/* O rows stored around the caches */
	bool bucket_whole;		/* CLUSTERED buckets scored whole */
	int64_t kmcap;				/* pairs a key-major tile holds */
	int64_t tsc;			/* a row's scores in ws->tsc, or 0 */
	int64_t tkc;			/* fwd_split's key chunk, or 0 */
	int64_t nkb;				/* key blocks per (b, kv head) */
	float *KT, *VT;				/* [B][Hkv][nkb][dp][KB] */
	float *K32, *V32;			/* [B][Hkv][nkb * KB][dp] */
	struct cpu_priv *priv;			/* locked: arena in use */
	bool kdirect, vdirect;			/* K, V rows read in place */
	float *D;				/* [B][Hq][Nq][2] (split bwd) */
	double *dgp;				/* [B][Hq][maxgroups] */
	int64_t chunk;				/* keys per dK/dV item */
	int64_t rchunk;				/* keys per L2 chunk (bwd rows) */
	int64_t ucap;				/* ids a USER_INDEX list holds */
	int nchunks;
	float scale;
	atomic_int err;
};

/*
 * The group's keys as segments of at most 64 (in the worker scratch): a
 * direct segment is a whole 64-key block of the converted K and V (seg >=
 * 0, the block index), a gathered one is up to 64 scattered keys copied
 * together (seg = -(c + 1): keys u[64 c ..]).  Blocks where the group
 * uses many keys go direct; isolated columns are gathered.
 */
struct keyset {
	int nseg;
	int64_t first;		/* dense blocks start here (backward chunks) */
	const int32_t *seg, *segn, *u;
	bool sbits;		/* sparse mask in ws->bits, else the dense one */
	bool ranges;		/* sparse mask from ws->slo/shi (LOCAL) */
	bool strided;		/* bands direct, column list gathered */
	bool hier;		/* ... with the band as bits (HIERARCHICAL) */
	int64_t nu;		/* gathered keys in u (bucket reuse) */
	bool bucket;		/* u is a shared cluster bucket: reusable */
	/*
	 * STRIDED, HIERARCHICAL: segment @bsg (-1: none) holds the rows'
	 * bands gathered, keys @bk, masks in ws->bits, rather than the
	 * 64-key blocks around them (build_keys_arith)
	 */
	int bsg;
	const int32_t *bk;
};

/* the keys of gathered segment @sg (seg[sg] < 0) */
static inline const int32_t *seg_keys(const struct keyset *ks, int sg)
{
	if (sg == ks->bsg)
		return ks->bk;
	return ks->u + (size_t)(-ks->seg[sg] - 1) * FAST_KB;
}

#define DIRECT_MIN 24		/* keys of a block that make it direct */

struct group {
	int b, h, hk, R;
	int32_t rows[FAST_TQ];
	int64_t lim[FAST_TQ];
	int64_t maxlim;
	bool want_s, want_d, s_is_d;
	float g;			/* gate applied to the sparse branch */
	int64_t k0, k1;			/* only keys in [k0, k1) (backward) */
};

/* Backward passes: both at once, or dQ (and D, dg) then dK/dV per chunk */
enum bwd_mode { BWD_FUSED, BWD_DQ, BWD_DKV };

static inline uint64_t prefix_mask(int64_t c)
{
	return c <= 0 ? 0 : c >= 64 ? ~0ull : (1ull << c) - 1;
}

/* Row r's mask over segment @sg for the sparse or dense branch. */
static inline uint64_t row_mask(const struct fast_ws *w,
				const struct keyset *ks,
				const struct group *gr, int r, int sg,
				bool sparse)
{
	if (sparse && ks->strided) {
		int64_t base;

		if (sg == ks->bsg)
			return w->bits[(size_t)sg * FAST_TQ + r];
		if (ks->seg[sg] < 0) {
			/* the column list: below the limit, not in the band */
			base = (int64_t)(-ks->seg[sg] - 1) * FAST_KB;
			return prefix_mask(w->rn[r] - base) &
			       ~(prefix_mask(w->xhi[r] - base) &
				 ~prefix_mask(w->xlo[r] - base));
		}
		base = (int64_t)ks->seg[sg] * FAST_KB;
		return (ks->hier ? w->bits[(size_t)sg * FAST_TQ + r] :
			prefix_mask(w->shi[r] - base) &
			~prefix_mask(w->slo[r] - base)) &
		       prefix_mask(gr->lim[r] - base);
	}
	if (sparse && ks->ranges) {
		/* positions: keys of a block, or indices into a gathered list */
		int64_t base = (int64_t)(ks->seg[sg] >= 0 ? ks->seg[sg] :
					 -ks->seg[sg] - 1) * FAST_KB;

		return prefix_mask(w->shi[r] - base) &
		       ~prefix_mask(w->slo[r] - base);
	}
	if (sparse && ks->sbits)
		return w->bits[(size_t)sg * FAST_TQ + r];
	/* dense keys: whole blocks, cut at the row's limit */
	return prefix_mask(gr->lim[r] - (int64_t)ks->seg[sg] * FAST_KB);
}

struct fast_ws *fast_ws_get(struct fast_job *job, int worker);
const float *fast_rows_of(const struct fast_job *job, bool v, int b,
			  int hk, int64_t *stride);
void fast_load_row(const struct asam_tv *t, int64_t off, int d, float *dst);
void fast_load_scaled(const struct asam_tv *t, int64_t off, int d,
		      float scale, float *dst);
void fast_prefetch_row(const struct asam_tv *t, int64_t off, int d,
		       bool write);
void fast_store_row(const struct asam_tv *t, int64_t off, int d,
		    const float *src);
void fast_prefetch_l2(const struct asam_tv *t, int64_t off, int d);
void fast_gather(const struct fast_job *job, struct fast_ws *w,
		 const struct keyset *ks, int b, int hk, int sg, bool want_vT);
const float *fast_block_rows(const struct fast_job *job,
			     const struct asam_tv *t, bool direct, int b,
			     int hk, int64_t blk);

void fast_plan_for(struct fast_job *job, struct fast_ws *w, int b, int h);
bool fast_group_init(struct fast_job *job, struct group *gr, int b, int h,
		     int g);
void fast_build_keys(struct fast_job *job, struct fast_ws *w,
		     const struct group *gr, struct keyset *ks);

/*
 * The per-row patterns (group_rows == 1: RANDOM_ROWS, USER_INDEX, soft
 * clusters) walk row tiles over key chunks sized for the L2 cache: a
 * tile's rows take their keys of one chunk before any row moves to the
 * next, so that the chunk's K and V rows are read from memory once a
 * tile rather than once a row (fast-rows.c).
 */
#define FAST_RT 1024		/* rows per tile at most (key-major) */
#define FAST_RT_ROWS 256	/* ... for the row walk */

int fast_rows_tile(const struct fast_job *job, int cap, bool spread_out);
int fast_rows_cap(bool fwd);
int64_t fast_rows_chunk(const struct fast_job *job, int arrays);
const int32_t *fast_rows_keys(struct fast_job *job, struct fast_ws *w,
			      const struct group *gr, int64_t chunk,
			      int32_t *out, int64_t *n);
bool fast_rows_tiled(const struct fast_job *job);
void fast_rows_setup(struct fast_job *job);
void fast_rows_split(struct fast_job *job);

/* pool callbacks and schedules */
void fast_fwd_items(void *arg, int64_t begin, int64_t end, int worker);
void fast_fwd_tiles(void *arg, int64_t begin, int64_t end, int worker);
void fast_fwd_setup(struct fast_job *job);
/*
 * Row @t of a row tile: its keys in [lo, lo + chunk) (all that are left
 * when that reaches @maxlim, the tile's last chunk), from its cursor on,
 * which moves past them; the count in @c, the first key returned
 */
static inline const int32_t *fast_rows_take(struct fast_ws *w, int t,
					    int64_t lo, int64_t chunk,
					    int64_t maxlim, int *c)
{
	const int32_t *keys = w->tkeys[t] + w->tcur[t];
	int rem = w->tn[t] - w->tcur[t], n = 0;

	if (lo + chunk >= maxlim)
		n = rem;
	while (n < rem && keys[n] < lo + chunk)
		n++;
	w->tcur[t] += n;
	*c = n;
	return keys;
}

typedef void (*fast_tile_fn)(struct fast_job *job, struct fast_ws *w, int b,
			     int h, int64_t r0, int64_t r1);
void fast_rows_items(struct fast_job *job, int64_t begin, int64_t end,
		     int worker, fast_tile_fn tile);
int fast_bwd_run(struct fast_job *job, struct asam_pool *pool);

/* a core's L2 bytes (fast-rows.c; 0: unknown) */
long fast_l2_bytes(void);

/* key-major row tiles (fast-kmajor.c) */
void fast_km_setup(struct fast_job *job);
void fast_km_fwd(struct fast_job *job, struct fast_ws *w, int R,
		 const float *kb, int64_t ks, const float *vb, int64_t vs);
void fast_km_bwd(struct fast_job *job, struct fast_ws *w, int R,
		 const float *kb, int64_t ks, const float *vb, int64_t vs);

#endif
