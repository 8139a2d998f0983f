// SPDX-License-Identifier: MIT
/*
 * Row tiles for the per-row patterns (RANDOM_ROWS, USER_INDEX, soft
 * clusters): one query row a group, each with its own scattered keys.
 *
 * Row by row, every key row a query reads comes from wherever the head's
 * K and V are: one head at d = 64 is 2 MB of fp32 K and V, past a core's
 * L2 on most hosts.  A tile of rows can instead walk the keys in chunks
 * sized for the L2 (fast_rows_chunk): every row of the tile takes its
 * keys of chunk c, then every row its keys of chunk c + 1, with the
 * online softmax (or the dQ sums) carried across chunks in the tile's
 * per-row state, so that a chunk's rows are fetched once a tile and
 * read many times from L2.  Whether that pays depends on the host (see
 * ROWS_L2_BYTES); with one chunk a tile is the rows in order.  Each row's list must be ordered by chunk: the
 * RANDOM_ROWS and cluster lists are sorted, USER_INDEX lists (caller's
 * order) are bucketed by chunk here, stable and O(r).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <internal/compiler.h>

#include "fast-job.h"

/*
 * The L2 bytes one chunk's rows may take, all arrays together, where
 * chunks are the default: RANDOM_ROWS' backward on a host with at least
 * ROWS_L2_MIN bytes of L2 a core.  The 16-core Xeon of the H200 host (2
 * MB L2 a core, a mesh L3 shared by 16 busy cores), 2026-11-27, N 4096 d
 * 64, 16 heads: that backward 48.6 -> 27.3 ms with 512 KB chunks (1 MB:
 * 30.9), its forward 1.01 x, USER_INDEX's backward 1.10 x and forward
 * 1.16 x slower (its bucketing by chunk).  On the AMD EPYC build host (1
 * MB L2, fast L3) chunks gained nothing on RANDOM_ROWS and cost the
 * backward a pass per chunk over every row.  ASAM_CPU_ROWS_L2 (bytes; 0:
 * no chunks) overrides it for every per-row pattern and pass; the tests
 * force 64-key chunks with ASAM_CPU_ROWS_L2=1.
 */
#define ROWS_L2_BYTES	(512 << 10)
#define ROWS_L2_MIN	(2 << 20)

/* a core's L2 bytes as the C library reports them (0: unknown) */
long fast_l2_bytes(void)
{
	static long bytes = -1;
	long b = __atomic_load_n(&bytes, __ATOMIC_RELAXED);

	if (b < 0) {
		b = sysconf(_SC_LEVEL2_CACHE_SIZE);
		b = b > 0 ? b : 0;
		__atomic_store_n(&bytes, b, __ATOMIC_RELAXED);
	}
	return b;
}

/*
 * STRIDED and HIERARCHICAL with the sparse branch alone, where every
 * group's bands fit one gathered segment (build_keys_arith): the
 * groups read no block, so none need be transposed
 */
static bool bands_gathered(const struct fast_job *job)
{
	const struct asam_problem *p = job->p;
	int64_t rad;

	if (p->gate_mode != ASAM_GATE_SPARSE)
		return false;
	if (p->pat.kind == ASAM_PATTERN_STRIDED)
		rad = p->pat.radius;
	else if (p->pat.kind == ASAM_PATTERN_HIERARCHICAL)
		rad = job->fp.hier_band;
	else
		return false;
	/* FAST_TQ consecutive rows, each [pos - rad, pos + rad] */
	return 2 * rad + FAST_TQ <= FAST_KB;
}

void fast_rows_setup(struct fast_job *job)
{
	const char *env = getenv("ASAM_CPU_ROWS_L2");
	char *end;
	long long x;

	job->rows_l2 = INT64_MAX / 2;
	if (job->p->bwd && job->p->pat.kind == ASAM_PATTERN_RANDOM_ROWS &&
	    fast_l2_bytes() >= ROWS_L2_MIN)
		job->rows_l2 = ROWS_L2_BYTES;
	if (env && *env) {
		x = strtoll(env, &end, 0);
		if (!*end && x >= 0)
			job->rows_l2 = x ? x : INT64_MAX / 2;
	}
	/*
	 * USER_INDEX rows in ascending key order (uindex_sorted), as
	 * RANDOM_ROWS rows are, with ASAM_CPU_UINDEX_SORT=1.  Off by
	 * default: on the 2-core AMD build host sorting cost 8 % of the
	 * forward and gained nothing; whether the Xeon's 2 x gap between
	 * USER_INDEX and RANDOM_ROWS is their order is for
	 * tools/bench/cpu-device-run.sh to show there.
	 */
	env = getenv("ASAM_CPU_UINDEX_SORT");
	job->usort = env && *env && strcmp(env, "0");
	job->rows_only = fast_rows_tiled(job) &&
			 job->p->gate_mode == ASAM_GATE_SPARSE;
	/*
	 * ... and, like them, CLUSTERED ARGMAX with the sparse branch alone
	 * gathers every key of its buckets (fast_build_keys): neither reads
	 * a transposed block.
	 */
	job->no_blocks = job->rows_only ||
			 (job->fp.sorted_groups &&
			  job->p->gate_mode == ASAM_GATE_SPARSE) ||
			 bands_gathered(job);
}

/*
 * The forward's row walk in three passes over a tile (fwd_tile): every
 * row's dot products, then every row's softmax, then every row's value
 * sums, where the row walk took all three row by row.  A pass then
 * reads K alone or V alone, half the lines the row walk keeps live (at
 * N 4096, d 64 one head's K and V are 2 MB, each 1 MB: a core's L2 here
 * and half the Xeon's), at the cost of the tile's scores in memory
 * (RT_SCORES_MAX bytes at most: 147 KB for 256 rows of 128 keys).
 * Microbenchmark on the build host (one thread, 4096 rows of 128 keys
 * out of 4096, tiles of 256): 6.9-7.2 -> 6.0-6.1 ns a pair.  Only
 * RANDOM_ROWS and USER_INDEX (bounded lists), without key chunks and
 * key-major tiles; ASAM_CPU_ROWS_SPLIT=0 keeps the row walk.
 */
#define RT_SCORES_MAX	(1 << 20)

/*
 * The largest power of two of key blocks up to @c keys, FAST_KB at least:
 * fast_rows_keys buckets a key by a shift
 */
static int64_t kb_pow2(int64_t c)
{
	int64_t x;

	for (x = FAST_KB; 2 * x <= c && x < ((int64_t)1 << 40); x *= 2)
		;
	return x;
}

/*
 * The passes in key chunks (fwd_split): the dots pass takes every row's
 * keys of chunk 0, then every row's of chunk 1, and so does the value
 * sums' pass, so that the pass's reads stay in a chunk of K (or V) that
 * the L2 holds.  Rows' lists are in chunk order (RANDOM_ROWS' sorted,
 * USER_INDEX's bucketed), so a chunk is a run of each list, its scores
 * where the whole list's would be: the softmax is the same single pass
 * over the whole row, no running max to merge, no rescale.  A chunk's K
 * rows take at most ASAM_CPU_ROWS_PASS bytes (0 or unset: no chunks).
 * Off by default: on the build host (1 MB L2, N 4096, d 64, one thread
 * a head, the two variants run at once on its two cores, 6 pairs) two
 * chunks of 512 KB took 0.96 x the time of none on RANDOM_ROWS (0.87 to
 * 1.13) and 1.15 x on USER_INDEX (1.12 to 1.28: its lists split in
 * two, uindex_row2, and each row's dots in two calls with two partial
 * 16-key blocks); four chunks were slower still.  The Xeon's 2 MB L2
 * may rank it otherwise: tools/bench/cpu-device-run.sh times 512 KB.
 */
static int64_t rows_pass_chunk(const struct fast_job *job)
{
	const char *env = getenv("ASAM_CPU_ROWS_PASS");
	int64_t bytes = 0, c, x;
	char *end;

	if (env && *env) {
		long long v = strtoll(env, &end, 0);

		if (!*end && v >= 0)
			bytes = v;
	}
	c = bytes / ((int64_t)job->dp * 4);
	if (c >= job->p->Nk || !bytes)
		return 0;
	x = kb_pow2(c);
	return x < job->p->Nk ? x : 0;
}

void fast_rows_split(struct fast_job *job)
{
	const struct asam_problem *p = job->p;
	const char *env = getenv("ASAM_CPU_ROWS_SPLIT");
	int64_t most;

	job->tsc = 0;
	job->tkc = 0;
	if (p->bwd || job->kmajor || !job->rows_only ||
	    job->rows_l2 < INT64_MAX / 2 || (env && !strcmp(env, "0")))
		return;
	if (p->pat.kind == ASAM_PATTERN_RANDOM_ROWS)
		most = job->fp.rr;
	else if (p->pat.kind == ASAM_PATTERN_USER_INDEX)
		most = p->pat.r < p->Nk ? p->pat.r : p->Nk;
	else
		return;
	/* row_exp writes to its last vector's end: whole vectors a row */
	most = (most + 15) & ~(int64_t)15;
	/*
	 * tiles past FAST_RT_ROWS (fast_rows_cap's 1024 on 2 MB-L2 hosts)
	 * shrink to what the scores' buffer holds, not below FAST_RT_ROWS:
	 * long lists keep their passes rather than fall back to the row walk
	 */
	if (job->rt > FAST_RT_ROWS &&
	    (int64_t)job->rt * most * (int64_t)sizeof(float) > RT_SCORES_MAX) {
		int64_t fit = RT_SCORES_MAX / (most * (int64_t)sizeof(float));

		job->rt = fit > FAST_RT_ROWS ? (int)fit : FAST_RT_ROWS;
	}
	if ((int64_t)job->rt * most * (int64_t)sizeof(float) <= RT_SCORES_MAX) {
		job->tsc = most ? most : 16;
		job->tkc = rows_pass_chunk(job);
	}
}

bool fast_rows_tiled(const struct fast_job *job)
{
	return job->fp.group_rows == 1;
}

/*
 * Rows a tile of the row walk may take (fast_rows_tile's cap):
 * FAST_RT_ROWS, or ASAM_CPU_ROWS_RT (1 .. FAST_RT).  The forward's three
 * passes (fwd_split) read the head's K in the first and its V in the
 * last, each once a tile: a tile of 256 rows of 128 keys out of 4096
 * takes each key ~8 times, so the other array's pass in between (1 MB
 * at N 4096, d 64, half the Xeon's L2) may have evicted it by the next
 * tile's.  1024 rows (scores 512 KB) read each four times less often;
 * even on the 1 MB-L2 build host, where neither array fits, so
 * tools/bench/cpu-device-run.sh ranks it on the 2 MB-L2 Xeon: there
 * (2026-11-27 16:06 UTC, N 4096 d 64, 16 heads, 16 threads) 1024 rows
 * took 0.93 x the time of 256 on RANDOM_ROWS' forward and 0.84 x on
 * USER_INDEX's, so the forward takes 1024 where a core has
 * ROWS_RT_L2 of L2.  The backward's row walk (@fwd false) keeps 256:
 * it was not ranked.
 */
#define ROWS_RT_L2	(2 << 20)
#define ROWS_RT_BIG	1024

int fast_rows_cap(bool fwd)
{
	const char *env = getenv("ASAM_CPU_ROWS_RT");
	int x;

	if (!env || !*env)
		return fwd && fast_l2_bytes() >= ROWS_RT_L2 ?
		       ROWS_RT_BIG : FAST_RT_ROWS;
	x = atoi(env);
	return x < 1 ? 1 : x > FAST_RT ? FAST_RT : x;
}

/* keys per chunk (a power of two) when @arrays rows of dp floats are
 * live per key */
int64_t fast_rows_chunk(const struct fast_job *job, int arrays)
{
	return kb_pow2(job->rows_l2 / ((int64_t)arrays * job->dp * 4));
}

/*
 * Rows per tile: as many as the worker's key buffer (FAST_TQ x Nk ids)
 * holds at the longest list a row can have, at most @cap (<= FAST_RT),
 * and, with @spread, few enough that every worker gets about four tiles.
 */
int fast_rows_tile(const struct fast_job *job, int cap, bool spread_out)
{
	const struct asam_problem *p = job->p;
	int64_t most = p->Nk, t, spread;

	if (p->pat.kind == ASAM_PATTERN_RANDOM_ROWS)
		most = 0;			/* read from the cache */
	else if (p->pat.kind == ASAM_PATTERN_USER_INDEX)
		/* both USER_INDEX row builders write one past its count */
		most = (p->pat.r < p->Nk ? p->pat.r : p->Nk) + 1;
	t = most ? (int64_t)FAST_TQ * p->Nk / most : FAST_RT;
	spread = DIV_ROUND_UP((int64_t)p->B * p->Hq * p->Nq,
			      4 * (int64_t)job->nthreads);
	if (t > spread && spread_out)
		t = spread;
	if (t > cap)
		t = cap;
	return t < 1 ? 1 : (int)t;
}

/* the caller's list of group @gr's row (its KV head's), @st apart */
static const int32_t *uindex_list(const struct fast_job *job,
				  const struct group *gr, int64_t *st)
{
	const struct asam_tv *ix = &job->p->pat.index;

	*st = ix->stride[3];
	return (const int32_t *)ix->data +
	       tv_off(ix, gr->b, gr->hk, gr->rows[0], 0);
}

/* this row's stamp; the array cleared when the counter wraps */
static uint32_t stamp_next(struct fast_ws *w, int64_t nk)
{
	if (++w->gen == 0) {
		memset(w->stamp, 0, sizeof(uint32_t) * ((size_t)nk + 1));
		w->gen = 1;
	}
	return w->gen;
}

/* 1 if key @j is below @lim and new to this row (stamp @g), else 0 */
static inline uint32_t uindex_keep(uint32_t *mark, uint32_t g, int32_t j,
				   uint32_t lim, uint32_t nk)
{
	uint32_t ok = (uint32_t)j < lim;	/* -1: no */
	uint32_t slot = ok ? (uint32_t)j : nk;
	uint32_t fresh = mark[slot] != g;

	mark[slot] = g;
	return ok & fresh;
}

/*
 * USER_INDEX: the caller's list of the row's KV head with -1, keys at or
 * past the limit and repeats dropped, in the caller's order.  Branch-free
 * (the entries are random, so every test would mispredict half the
 * time), and repeats found by a per-worker stamp array: a key is new if
 * its stamp is not this row's, so nothing is cleared between rows.
 * Entries dropped still write out[n] (then overwritten): @out must hold
 * min(r, Nk) + 1 ids.
 */
static int64_t uindex_row(struct fast_job *job, struct fast_ws *w,
			  const struct group *gr, int32_t *out)
{
	const struct asam_problem *p = job->p;
	int64_t st, t, n = 0;
	const int32_t *lst = uindex_list(job, gr, &st);
	uint32_t lim = (uint32_t)gr->lim[0], *mark = w->stamp, g;

	g = stamp_next(w, p->Nk);
	for (t = 0; t < p->pat.r; t++) {
		int32_t j = lst[t * st];

		out[n] = j;
		n += uindex_keep(mark, g, j, lim, (uint32_t)p->Nk);
	}
	return n;
}

/*
 * uindex_row's keys in two runs: those below @split first, then the
 * rest, each in the caller's order (fwd_split's two key chunks), from
 * the same pass: each kept key is written to both runs' next slots and
 * counted in one, the second run built in @hi (min(r, Nk) + 1 ids) and
 * copied after the first.
 */
static int64_t uindex_row2(struct fast_job *job, struct fast_ws *w,
			   const struct group *gr, int32_t *out, int32_t *hi,
			   uint32_t split)
{
	const struct asam_problem *p = job->p;
	int64_t st, t, n = 0, m = 0;
	const int32_t *lst = uindex_list(job, gr, &st);
	uint32_t lim = (uint32_t)gr->lim[0], *mark = w->stamp, g;

	g = stamp_next(w, p->Nk);
	for (t = 0; t < p->pat.r; t++) {
		int32_t j = lst[t * st];
		uint32_t keep = uindex_keep(mark, g, j, lim, (uint32_t)p->Nk);
		uint32_t up = (uint32_t)j >= split;

		out[n] = j;
		hi[m] = j;
		n += keep & !up;
		m += keep & up;
	}
	memcpy(out + n, hi, sizeof(int32_t) * m);
	return n + m;
}

/*
 * USER_INDEX, sorted: the same keys as uindex_row, in ascending order,
 * through a bit a key and a bit a 64-key word of per-worker scratch
 * (both all zero between rows): set the bits of the keys kept (repeats
 * set a bit twice), then read the set words in order and clear them.
 * O(r + lim / 64) with few branches, O(r + lim / 4096) past 4096 keys:
 * an average word holds r / 64 keys at most (128 of 4096: 2), so its
 * first four are taken without a test and a loop only takes the rest.  Sorted rows walk K and V in
 * address order as RANDOM_ROWS rows do, and need no bucketing for the
 * chunked walk.  @out must hold min(r, Nk) + 1 ids.
 */
static inline int64_t uindex_word(uint64_t *bits, int64_t wd, int32_t *out,
				  int64_t n)
{
	uint64_t x = bits[wd];
	int32_t base = (int32_t)(wd * 64);
	int c;

	bits[wd] = 0;
	/* an empty word writes out[n] and keeps n: no branch */
	for (c = 0; c < 4; c++) {
		out[n] = base + __builtin_ctzll(x | (1ull << 63));
		n += x != 0;
		x &= x - 1;
	}
	while (x) {
		out[n++] = base + __builtin_ctzll(x);
		x &= x - 1;
	}
	return n;
}

static int64_t uindex_sorted(struct fast_job *job, struct fast_ws *w,
			     const struct group *gr, int32_t *out)
{
	const struct asam_problem *p = job->p;
	int64_t st, t, n = 0, a, wd;
	const int32_t *lst = uindex_list(job, gr, &st);
	int64_t nw = ((int64_t)gr->lim[0] + 63) >> 6;
	uint32_t lim = (uint32_t)gr->lim[0];
	uint64_t *bits = w->ubits, *sum = w->usum;

	if (nw <= 64) {
		/*
		 * one summary word at most: scan the words themselves (a
		 * summary word every key sets would chain its updates
		 * through memory, ~5 cycles a key)
		 */
		for (t = 0; t < p->pat.r; t++) {
			int32_t j = lst[t * st];
			uint64_t ok = (uint32_t)j < lim;	/* -1: no */
			uint32_t k = ok ? (uint32_t)j : 0;

			bits[k >> 6] |= ok << (k & 63);
		}
		for (wd = 0; wd < nw; wd++)
			n = uindex_word(bits, wd, out, n);
		return n;
	}
	for (t = 0; t < p->pat.r; t++) {
		int32_t j = lst[t * st];
		uint64_t ok = (uint32_t)j < lim;
		uint32_t k = ok ? (uint32_t)j : 0;

		bits[k >> 6] |= ok << (k & 63);
		sum[k >> 12] |= ok << ((k >> 6) & 63);
	}
	for (a = 0; a < (nw + 63) >> 6; a++) {
		uint64_t s = sum[a];

		sum[a] = 0;
		while (s) {
			n = uindex_word(bits, a * 64 + __builtin_ctzll(s),
					out, n);
			s &= s - 1;
		}
	}
	return n;
}

/*
 * Row gr->rows[0]'s allowed keys below its limit, in ascending chunks of
 * @chunk keys: the RANDOM_ROWS cache itself, else written to @out.
 */
const int32_t *fast_rows_keys(struct fast_job *job, struct fast_ws *w,
			      const struct group *gr, int64_t chunk,
			      int32_t *out, int64_t *n)
{
	const struct asam_problem *p = job->p;
	int64_t i = gr->rows[0], nc, t, c, s;
	int32_t *cnt = w->posn, *tmp = w->u;
	int sh = __builtin_ctzll((uint64_t)chunk);

	if (p->pat.kind == ASAM_PATTERN_RANDOM_ROWS) {
		const int32_t *row = job->fp.rows +
				     ((size_t)gr->h * p->Nq + i) * job->fp.rr;

		/* sorted: a row below its limit (no causal cut) is whole */
		*n = job->fp.rr && row[job->fp.rr - 1] < gr->lim[0] ?
		     job->fp.rr :
		     fast_lower_bound(row, job->fp.rr, gr->lim[0]);
		return row;
	}
	if (p->pat.kind == ASAM_PATTERN_USER_INDEX && job->usort) {
		*n = uindex_sorted(job, w, gr, out);
		return out;		/* ascending: in chunk order too */
	} else if (p->pat.kind == ASAM_PATTERN_USER_INDEX &&
		   gr->lim[0] > chunk && gr->lim[0] <= 2 * chunk) {
		*n = uindex_row2(job, w, gr, out, tmp, (uint32_t)chunk);
		return out;		/* two chunks, in order */
	} else if (p->pat.kind == ASAM_PATTERN_USER_INDEX) {
		*n = uindex_row(job, w, gr, out);
	} else {
		fast_plan_for(job, w, gr->b, gr->h);
		*n = fast_plan_row(&job->fp, gr->b, gr->h, i, gr->lim[0], out,
				   w->plan, w->bytes);
	}
	nc = DIV_ROUND_UP(gr->lim[0], chunk);
	if (p->pat.kind != ASAM_PATTERN_USER_INDEX || nc <= 1 || *n <= 1)
		return out;
	/* a stable counting sort by chunk: nc <= Nk / 64 + 1 counters */
	memset(cnt, 0, sizeof(int32_t) * (nc + 1));
	for (t = 0; t < *n; t++)
		cnt[(out[t] >> sh) + 1]++;
	for (c = 0, s = 0; c <= nc; c++) {
		s += cnt[c];
		cnt[c] = (int32_t)s;
	}
	for (t = 0; t < *n; t++)
		tmp[cnt[out[t] >> sh]++] = out[t];
	memcpy(out, tmp, sizeof(int32_t) * *n);
	return out;
}

/*
 * Items [begin, end) of a per-row pattern's pass, each a (b, h, tile of
 * job->rt rows), through @tile on this worker's workspace
 */
void fast_rows_items(struct fast_job *job, int64_t begin, int64_t end,
		     int worker, fast_tile_fn tile)
{
	const struct asam_problem *p = job->p;
	int64_t nt = DIV_ROUND_UP(p->Nq, job->rt), it;
	struct fast_ws *w = fast_ws_get(job, worker);

	if (!w) {
		atomic_store(&job->err, -ENOMEM);
		return;
	}
	for (it = begin; it < end; it++) {
		int64_t bh = it / nt, r0 = it % nt * job->rt;
		int64_t r1 = r0 + job->rt < p->Nq ? r0 + job->rt : p->Nq;

		tile(job, w, bh / p->Hq, bh % p->Hq, r0, r1);
	}
}
