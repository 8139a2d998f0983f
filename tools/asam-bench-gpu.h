/* SPDX-License-Identifier: MIT */
/*
 * asam-bench --gpu: timings of the public API on a CUDA device.
 *
 * Three parts, each its own file so that the selftest (selftests/tools)
 * can check the two that need no GPU:
 *  - asam-bench-opts.c: the command line, the list of cases (the peers'
 *    grid by default), the FLOP counts and the JSON line of a result;
 *  - asam-bench-count.c: how many (query, key) pairs a pattern allows, by
 *    closed forms and per-row intervals, fast enough for N = 64K;
 *  - asam-bench-gpu.c: device tensors, warm-up, CUDA-event medians.
 */
#ifndef ASAM_BENCH_GPU_H
#define ASAM_BENCH_GPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include <asam/asam.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BENCH_MAX_SHAPES 16
#define BENCH_MAX_CASES 256

/* the three gate settings of the issues' targets */
enum bench_gate {
	BENCH_GATE_SPARSE = 0,	/* O = S */
	BENCH_GATE_SOFT,	/* g = 0.5: both branches */
	BENCH_GATE_HARD,	/* tau = 0.5, g = 1: every head sparse */
	BENCH_GATE_NR,
};

struct bench_shape {
	int B, H, N, d;
};

/*
 * struct bench_opts - what asam-bench --gpu was asked to run
 * @patterns: bit (1 << kind) per &enum asam_pattern_kind
 * @gates: bit (1 << g) per &enum bench_gate
 * @shapes: --shape B,H,N,d (applied to every pattern and gate), or none
 *	for the grid (see bench_plan())
 */
struct bench_opts {
	unsigned int patterns;
	unsigned int gates;
	struct bench_shape shapes[BENCH_MAX_SHAPES];
	int nshapes;
	bool bwd, json, causal, fp16;
	bool det;		/* ASAM_F_DETERMINISTIC */
	int warmup, reps;
	int device;
	int keys_per_row;	/* USER_INDEX r (RANDOM/RANDOM_ROWS keep 128) */
	int clusters;		/* CLUSTERED C */
};

struct bench_case {
	enum asam_pattern_kind kind;
	enum bench_gate gate;
	struct bench_shape s;
};

/*
 * struct bench_result - one case's numbers
 * @status: "ok", "unsupported" (-EOPNOTSUPP) or "error"
 * @msg: asam_last_error() when not ok
 * @fwd_ms, @fwdbwd_ms: medians; < 0 when not measured
 */
struct bench_result {
	struct bench_case c;
	const char *device;
	const char *dtype;
	bool causal;
	int reps;
	uint64_t allowed, masked;
	double fwd_ms, fwdbwd_ms;
	const char *status;
	const char *msg;
};

/* ---- asam-bench-opts.c ---- */

/*
 * bench_parse() - parse the arguments after "--gpu"
 * @err: a message naming the bad argument, on failure
 *
 * Return: 0, 1 for --help, -EINVAL.
 */
int bench_parse(int argc, char **argv, struct bench_opts *o, char *err,
		size_t errlen);
void bench_usage(FILE *f);

/* The cases to run, in order; returns how many (at most @max). */
int bench_plan(const struct bench_opts *o, struct bench_case *out, int max);

const char *bench_gate_name(enum bench_gate g);
int bench_kind_from_name(const char *s);	/* -1 when unknown */

/* 4 d per allowed pair forward; 14 d forward + backward (bwd = 2.5 x fwd) */
double bench_flops(uint64_t allowed, int d, bool fwdbwd);
/* flops / ms as TFLOP/s (0 for ms <= 0) */
double bench_tflops(double flops, double ms);

/*
 * bench_json() - one JSON object, no newline
 *
 * Return: the length written (snprintf's), or -ENOSPC when @len is short.
 */
int bench_json(char *buf, size_t len, const struct bench_result *r);
/* the human-readable line of a result, with a newline */
void bench_print(FILE *f, const struct bench_result *r);

/* ---- asam-bench-count.c ---- */

/*
 * bench_count() - allowed and masked pairs of a call, summed over B and Hq
 * @prm: the pattern and causal flag
 * @a: host q and k (their values are read for CLUSTERED); the pattern's
 *	tensors (centroids, index) must be host tensors as well
 * @allowed, @masked: as &struct asam_pattern_stats
 *
 * Agrees with asam_pattern_stats() (the selftest checks every kind) but
 * costs O(rows) for the regular patterns instead of O(rows x keys), and
 * runs over (b, h) on @threads threads (0: one per online CPU).
 *
 * Return: 0 or -errno with asam_last_error() set.
 */
int bench_count(const struct asam_attn_params *prm,
		const struct asam_fwd_args *a, unsigned int threads,
		uint64_t *allowed, uint64_t *masked);

/* ---- asam-bench-gpu.c ---- */

/* asam-bench --gpu ...: argv[0] is the program, "--gpu" may be anywhere */
int bench_gpu_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif

#endif
