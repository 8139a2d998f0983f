/* SPDX-License-Identifier: MIT */
/*
 * What the host sides of the CUDA attention kernels share (arch/cuda/
 * attn*.c): loading a JIT specialisation once per device, filling the
 * forward's argument block from a validated problem, launching.  Each
 * pattern family keeps its own file; arch/cuda/attn.c holds these and the
 * tile-list families (DENSE, LOCAL, RANDOM).
 */
#ifndef ASAM_CUDA_ATTN_INT_H
#define ASAM_CUDA_ATTN_INT_H

#include <stdbool.h>

#include <internal/cuda.h>
#include <internal/jit.h>
#include <internal/problem.h>

#include "../../jit/kernels/attn_params.cuh"

/* dynamic shared memory of @rows staged rows of head dim @d (padded) */
int attn_smem_bytes(int rows, int d);
/* 80, 86, 90, ...: the JIT's architecture number of @d */
int attn_arch_of(const struct asam_cuda_device *d);
/*
 * The function @entry of @spec on @d, compiled (or read from the cache)
 * and loaded once per device; never compiles while @capturing (-EBUSY).
 */
int attn_get_fn(struct asam_cuda_device *d, const struct asam_jit_spec *spec,
		const char *entry, bool capturing, CUfunction *out);
/* the attention families' common defines, from @p */
int attn_make_spec(struct asam_jit_spec *s, const char *family,
		   const struct asam_cuda_device *d,
		   const struct asam_problem *p, int gate, int bm, int nw,
		   int pre);
/* element stride @i of @t */
long long attn_st(const struct asam_tv *t, int i);
/* a grid of gx x gy x gz blocks on @s; an empty grid launches nothing */
int attn_launch(struct asam_cuda_device *d, CUfunction f, unsigned gx,
		unsigned gy, unsigned gz, unsigned threads, unsigned smem,
		CUstream s, void *params);
/* tensors, strides, sizes, scale of @p into @a (lists and lse left 0) */
void attn_fill_fwd(struct attn_fwd_params *a, const struct asam_problem *p);
/*
 * tensors, strides, sizes and scale of @p's backward into @a (lists,
 * radius and pattern fields left alone), strides shared with the
 * preprocess @pre, key tiles of @tile keys
 */
void attn_fill_bwd(struct attn_bwd_params *a, const struct asam_problem *p,
		   const struct attn_fwd_params *pre, int tile);
/*
 * The forward's key-tile lists of @p's pattern (LOCAL, RANDOM) for query
 * tiles of @bm rows and 64-key tiles, uploaded once per shape and kept.
 */
int attn_get_plan(struct asam_cuda_device *d, const struct asam_problem *p,
		  int bm, const int **off, const int **list, int *per_head);
/*
 * The backward's preprocess over @pre (filled by attn_fill_fwd): no O
 * written, query tiles of @tile rows in order, dO of @p read
 */
void attn_fill_pre(struct attn_fwd_params *pre, const struct asam_problem *p,
		   int tile);
/*
 * The deterministic backward's two launches over @a: dQ per query tile,
 * then dK and dV per key tile (64 x 64 tiles, 4 warps; @fdq and @fkv of
 * the attn_bwd family)
 */
int attn_bwd_launch_det(struct asam_cuda_device *d, CUfunction fdq,
			CUfunction fkv, const struct asam_problem *p,
			CUstream s, struct attn_bwd_params *a);
/* whether @s is capturing a CUDA graph (then nothing may compile) */
int attn_capturing_of(struct asam_cuda_device *d, CUstream s, bool *cap);

#endif
