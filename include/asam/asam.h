/* SPDX-License-Identifier: MIT */
/*
 * libasam: Adaptive Sparse Attention Mechanism, forward and backward, with
 * real sparsity, on CPUs and GPUs.  This is the whole public interface.
 *
 * Conventions (see Documentation/api.rst):
 *  - functions return 0 or a negative errno; functions returning a pointer
 *    return NULL and set errno;
 *  - on failure asam_last_error() holds a message naming the bad parameter
 *    and its value, and nothing the caller owns has been written;
 *  - handles are opaque structs; options structs start with a size_t sz that
 *    the caller sets to sizeof(the struct), so that they can grow;
 *  - tensors are DLPack DLTensors, read zero-copy with their strides.
 */
#ifndef ASAM_ASAM_H
#define ASAM_ASAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <dlpack/dlpack.h>

#include <asam/version.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */

/**
 * asam_strerror() - describe an error code
 * @err: a negative errno returned by a libasam function (or its absolute)
 *
 * Return: a static string; never NULL.
 */
const char *asam_strerror(int err);

/**
 * asam_last_error() - the message of this thread's last failure
 *
 * The message names the function, the parameter and the value that was
 * refused, for example "asam_attn_fwd: q: dtype float64 is not supported
 * on cuda:0".  It is kept per thread until the next failure.
 *
 * Return: a thread-local string; "" when no call has failed yet.
 */
const char *asam_last_error(void);

/* ------------------------------------------------------------------------ */
/* Context                                                                  */

struct asam_ctx;

/** enum asam_log_level - verbosity of the library's messages on stderr */
enum asam_log_level {
	ASAM_LOG_ERR = 0,
	ASAM_LOG_WARN = 1,
	ASAM_LOG_INFO = 2,
	ASAM_LOG_DEBUG = 3,
};

/**
 * struct asam_ctx_opts - options for asam_ctx_create()
 * @sz: sizeof(struct asam_ctx_opts) as the caller was compiled
 * @log_level: -1 keeps the default (CONFIG_ASAM_LOG_DEFAULT or the
 *	ASAM_LOG_LEVEL environment variable), else an &enum asam_log_level
 * @devices: which devices the context may use, as "cpu,cuda:0,cuda:1";
 *	NULL means ASAM_DEVICES, or every device found
 * @num_threads: CPU worker threads; 0 means one per online CPU
 *
 * Fields are only ever appended; a caller compiled against an older header
 * passes a smaller @sz and gets the defaults for the fields it lacks.
 */
struct asam_ctx_opts {
	size_t sz;
	int log_level;
	const char *devices;
	unsigned int num_threads;
};

/**
 * asam_ctx_create() - probe backends and devices, make a context
 * @opts: options, or NULL for the defaults
 * @out: where the context is stored
 *
 * A backend whose device or driver is missing is skipped with a message at
 * info level; the CPU reference backend is always present.
 *
 * Return: 0, or -EINVAL (bad @opts), -ENOMEM.
 */
int asam_ctx_create(const struct asam_ctx_opts *opts, struct asam_ctx **out);

/**
 * asam_ctx_destroy() - release a context and everything it holds
 * @ctx: the context, or NULL
 */
void asam_ctx_destroy(struct asam_ctx *ctx);

/**
 * asam_ctx_backends() - names of the backends this context probed
 * @ctx: the context
 * @buf: where to write a comma-separated list, NUL-terminated
 * @len: size of @buf
 *
 * Return: 0, or -EINVAL, -ENOSPC when @buf is too small.
 */
int asam_ctx_backends(const struct asam_ctx *ctx, char *buf, size_t len);

/* ------------------------------------------------------------------------ */
/* Patterns (SPEC section 3)                                                */

/** enum asam_pattern_kind - which keys the sparse branch may attend */
enum asam_pattern_kind {
	ASAM_PATTERN_DENSE = 0,		/* every key */
	ASAM_PATTERN_LOCAL,		/* delta <= window / 2 */
	ASAM_PATTERN_STRIDED,		/* delta <= radius or j % stride == 0 */
	ASAM_PATTERN_HIERARCHICAL,	/* weighted vote over scales */
	ASAM_PATTERN_RANDOM,		/* SplitMix64 key blocks per 64 queries */
	ASAM_PATTERN_RANDOM_ROWS,	/* MT19937 rows of the original */
	ASAM_PATTERN_CLUSTERED,		/* same centroid cluster */
	ASAM_PATTERN_USER_INDEX,	/* caller-given key indices per query */
	ASAM_PATTERN_NR_KINDS,
};

/** enum asam_cluster_mode - how CLUSTERED decides that i and j meet */
enum asam_cluster_mode {
	ASAM_CLUSTER_ARGMAX = 0,	/* same nearest centroid */
	ASAM_CLUSTER_SOFT,		/* <a_i, b_j> > threshold (the original) */
};

#define ASAM_MAX_SCALES 8
#define ASAM_RANDOM_BLOCK 64

/**
 * struct asam_pattern - a sparse pattern and its parameters
 * @sz: sizeof(struct asam_pattern)
 * @kind: the &enum asam_pattern_kind
 * @window: LOCAL: W; keys with delta <= W/2 are allowed (default 128)
 * @stride: STRIDED: s, the period of the global key columns (default 32)
 * @radius: STRIDED: L, the local radius (default 16)
 * @num_scales: HIERARCHICAL: k, the number of scales (default 3)
 * @scales: HIERARCHICAL: s_1..s_k (default 4, 16, 64)
 * @scale_weights: HIERARCHICAL: fp32 [Hq][k] host array of per-head weights
 *	(already softmax-ed by the caller), or NULL for uniform 1/k
 * @keys_per_row: RANDOM and RANDOM_ROWS: r (default 128)
 * @seed: RANDOM and RANDOM_ROWS: the seed (default 42)
 * @num_clusters: CLUSTERED: C (default 32)
 * @cluster_mode: CLUSTERED: &enum asam_cluster_mode (default ARGMAX)
 * @cluster_temp: CLUSTERED SOFT: tau (default 0.5; |tau| is used)
 * @cluster_threshold: CLUSTERED SOFT: theta (default 0.1)
 * @centroids: CLUSTERED: [Hq, C, d] tensor of centroids on the same device
 *	as q, fp32 or q's dtype
 * @index: USER_INDEX: int32 [B, Hkv, Nq, r] key indices per query on the
 *	same device as q (as a top-k selector such as DeepSeek's sparse
 *	attention produces them); -1 means none, a repeated index counts
 *	once; the query heads of a KV group share their KV head's lists
 *
 * Fill it with asam_pattern_init() and change what differs; fields that do
 * not belong to @kind are ignored.
 */
struct asam_pattern {
	size_t sz;
	enum asam_pattern_kind kind;
	int window;
	int stride;
	int radius;
	int num_scales;
	int scales[ASAM_MAX_SCALES];
	const float *scale_weights;
	int keys_per_row;
	uint64_t seed;
	int num_clusters;
	enum asam_cluster_mode cluster_mode;
	float cluster_temp;
	float cluster_threshold;
	const DLTensor *centroids;
	const DLTensor *index;
};

/**
 * asam_pattern_init() - fill a pattern with the defaults of its kind
 * @p: the pattern
 * @kind: the &enum asam_pattern_kind
 *
 * Return: 0, or -EINVAL for a NULL @p or an unknown @kind.
 */
int asam_pattern_init(struct asam_pattern *p, enum asam_pattern_kind kind);

/** asam_pattern_name() - "local", "strided", ...; "?" when unknown */
const char *asam_pattern_name(enum asam_pattern_kind kind);

/* ------------------------------------------------------------------------ */
/* Attention (SPEC section 2)                                               */

/** enum asam_gate_mode - how the sparse and dense branches are mixed */
enum asam_gate_mode {
	ASAM_GATE_SPARSE = 0,	/* O = S */
	ASAM_GATE_DENSE,	/* O = A */
	ASAM_GATE_SOFT,		/* O = g S + (1 - g) A */
	ASAM_GATE_HARD,		/* O = S where g >= tau, else A (forward only) */
};

/* Flags for &struct asam_attn_params.flags */
#define ASAM_F_DETERMINISTIC	(1u << 0)	/* bit-identical run to run */
#define ASAM_F_REFERENCE	(1u << 1)	/* force the fp64 reference */

/**
 * struct asam_attn_params - what is computed, shared by forward and backward
 * @sz: sizeof(struct asam_attn_params)
 * @pattern: the sparse branch's pattern (NULL means DENSE)
 * @gate_mode: &enum asam_gate_mode
 * @hard_threshold: HARD: tau in [0, 1]
 * @scale: the softmax scale sigma; 0 means 1/sqrt(d)
 * @causal: key j is masked for query i when j > i + Nk - Nq
 * @flags: ASAM_F_*
 */
struct asam_attn_params {
	size_t sz;
	const struct asam_pattern *pattern;
	enum asam_gate_mode gate_mode;
	float hard_threshold;
	float scale;
	bool causal;
	unsigned int flags;
};

/**
 * struct asam_fwd_args - tensors of a forward call
 * @sz: sizeof(struct asam_fwd_args)
 * @q: [B, Hq, Nq, d] queries
 * @k: [B, Hkv, Nk, d] keys; Hq % Hkv == 0 (GQA, MQA)
 * @v: [B, Hkv, Nk, d] values
 * @gate: fp32 [B, Hq] gate values in [0, 1]; SOFT and HARD only
 * @len_q: int32 [B] valid query lengths, or NULL for Nq
 * @len_k: int32 [B] valid key lengths, or NULL for Nk
 * @o: [B, Hq, Nq, d] output, q's dtype
 * @lse_sparse: fp32 (or fp64) [B, Hq, Nq] log-sum-exp of the sparse branch,
 *	or NULL; needed later by backward in SPARSE and SOFT mode
 * @lse_dense: the same for the dense branch; DENSE and SOFT mode
 * @workspace: device scratch memory of asam_attn_workspace_size() bytes,
 *	or NULL to use the context's pool (on a GPU: a memory pool per
 *	device, allocated and freed in @stream's order, its memory kept
 *	for later calls until asam_ctx_destroy())
 * @workspace_size: its size in bytes
 * @stream: the caller's stream (a CUstream) for GPU tensors; NULL for CPU
 *
 * Shapes are logical: the BSHD layout is passed as a view of shape
 * [B, H, N, d] whose strides say where each element lives (for example
 * PyTorch's q.transpose(1, 2)).  The last dimension must be contiguous.
 * All tensors live on one device; the call runs where they live.
 */
struct asam_fwd_args {
	size_t sz;
	const DLTensor *q, *k, *v;
	const DLTensor *gate;
	const DLTensor *len_q, *len_k;
	DLTensor *o;
	DLTensor *lse_sparse, *lse_dense;
	void *workspace;
	size_t workspace_size;
	void *stream;
};

/**
 * struct asam_bwd_args - tensors of a backward call
 * @sz: sizeof(struct asam_bwd_args)
 * @q, @k, @v, @gate, @len_q, @len_k: as given to the forward
 * @o: the forward's output
 * @lse_sparse, @lse_dense: the forward's log-sum-exps for the branches the
 *	gate mode uses
 * @d_o: [B, Hq, Nq, d] gradient of the loss with respect to O
 * @dq, @dk, @dv: gradients, shaped and typed like q, k, v
 * @dgate: fp32 [B, Hq]; SOFT only: dg_bh = sum_i <dO_i, S_i - A_i>
 * @workspace, @workspace_size, @stream: as for the forward
 */
struct asam_bwd_args {
	size_t sz;
	const DLTensor *q, *k, *v;
	const DLTensor *gate;
	const DLTensor *len_q, *len_k;
	const DLTensor *o;
	const DLTensor *lse_sparse, *lse_dense;
	const DLTensor *d_o;
	DLTensor *dq, *dk, *dv;
	DLTensor *dgate;
	void *workspace;
	size_t workspace_size;
	void *stream;
};

/**
 * asam_attn_fwd() - ASAM attention forward
 * @ctx: the context
 * @params: what to compute
 * @args: the tensors
 *
 * Validates everything before writing anything.  For GPU tensors the work
 * is enqueued on @args->stream and the call returns without synchronising.
 * An empty row (no allowed key) gives 0 and a log-sum-exp of -inf.
 *
 * Return: 0, or -EINVAL (a bad shape, stride, value or NULL; the message
 * names it), -EOPNOTSUPP (a feature this build or backend lacks; the message
 * names the Kconfig option), -ENODEV (no backend for the tensors' device),
 * -ENOMEM, -EOVERFLOW (sizes that overflow).
 */
int asam_attn_fwd(struct asam_ctx *ctx, const struct asam_attn_params *params,
		  const struct asam_fwd_args *args);

/**
 * asam_attn_bwd() - ASAM attention backward
 * @ctx: the context
 * @params: the same parameters as the forward
 * @args: the tensors
 *
 * Recomputes the scores from q, k and the log-sum-exps; memory is O(N).
 * HARD mode has no backward and is refused with -EINVAL.
 *
 * Return: as asam_attn_fwd().
 */
int asam_attn_bwd(struct asam_ctx *ctx, const struct asam_attn_params *params,
		  const struct asam_bwd_args *args);

/**
 * asam_attn_workspace_size() - device scratch bytes a call needs
 * @ctx: the context
 * @params: what will be computed
 * @fwd: the forward's tensors, or NULL
 * @bwd: the backward's tensors, or NULL (one of the two is required)
 * @bytes: where the size is stored
 *
 * Return: 0, or an error as for asam_attn_fwd().
 */
int asam_attn_workspace_size(struct asam_ctx *ctx,
			     const struct asam_attn_params *params,
			     const struct asam_fwd_args *fwd,
			     const struct asam_bwd_args *bwd, size_t *bytes);

/* ------------------------------------------------------------------------ */
/* Pattern statistics and clustering                                        */

/**
 * struct asam_pattern_stats - how sparse a pattern really is
 * @sz: sizeof(struct asam_pattern_stats)
 * @allowed: total allowed (query, key) pairs, pattern AND mask, all heads
 * @masked: pairs the mask alone allows (the dense branch's work)
 * @density: @allowed / @masked (0 when @masked is 0)
 * @per_head: optional caller array of Hq counts (summed over the batch),
 *	or NULL
 *
 * This is the real counterpart of the original's "sparse_ratio", which
 * measured the gate, not the pattern.
 */
struct asam_pattern_stats {
	size_t sz;
	uint64_t allowed;
	uint64_t masked;
	double density;
	uint64_t *per_head;
};

/**
 * asam_pattern_stats() - count the pairs a pattern allows
 * @ctx: the context
 * @params: the pattern, causal flag
 * @args: q and k (their shapes; their values for CLUSTERED), len_q, len_k
 * @stats: the result
 *
 * Return: 0, or an error as for asam_attn_fwd().
 */
int asam_pattern_stats(struct asam_ctx *ctx,
		       const struct asam_attn_params *params,
		       const struct asam_fwd_args *args,
		       struct asam_pattern_stats *stats);

/**
 * asam_cluster_update() - one step of online k-means on the centroids
 * @ctx: the context
 * @pattern: a CLUSTERED pattern; its @centroids [Hq, C, d] are updated
 * @q: [B, Hq, Nq, d] queries
 * @k: [B, Hkv, Nk, d] keys
 * @decay: lambda in [0, 1): mu <- lambda mu + (1 - lambda) mean, where the
 *	mean is over the normalised q and k assigned (argmax) to the cluster;
 *	clusters with nothing assigned are left alone
 *
 * Deterministic for a given input.  The centroids tensor must be writable
 * (the pattern holds a const pointer for the attention calls' sake; this
 * call writes through it).
 *
 * Return: 0, or an error as for asam_attn_fwd().
 */
int asam_cluster_update(struct asam_ctx *ctx,
			const struct asam_pattern *pattern,
			const DLTensor *q, const DLTensor *k, float decay);

#ifdef __cplusplus
}
#endif

#endif /* ASAM_ASAM_H */
