// SPDX-License-Identifier: MIT
/*
 * Bad input is refused before anything is written.  Each case starts
 * from a valid call, breaks one thing, poisons every output, and checks
 * the documented error code, that the message names the parameter, and
 * that every output still holds the poison.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <internal/compiler.h>
#include <internal/kconfig.h>

#include "../lib/kselftest.h"
#include "../lib/testutil.h"

struct fx {
	struct tt *q, *k, *v, *o, *lse_s, *lse_d, *gate, *len_q, *len_k;
	struct tt *d_o, *dq, *dk, *dv, *dg, *cent, *index;
	int64_t bad_shape[4], bad_strides[4];
	struct asam_pattern pat;
	struct asam_attn_params prm;
	struct asam_fwd_args a;
	struct asam_bwd_args b;
	struct asam_ctx *ctx;
	DLTensor alias;
	bool bwd;
};

static void fx_init(struct fx *f, struct asam_ctx *ctx)
{
	int64_t bh[2] = { 2, 4 }, bhn[3] = { 2, 4, 16 }, b1[1] = { 2 };

	memset(f, 0, sizeof(*f));
	f->ctx = ctx;
	f->q = tt_new4(TT_F32, 2, 4, 16, 8);
	f->k = tt_new4(TT_F32, 2, 2, 16, 8);
	f->v = tt_new4(TT_F32, 2, 2, 16, 8);
	f->o = tt_new4(TT_F32, 2, 4, 16, 8);
	f->d_o = tt_new4(TT_F32, 2, 4, 16, 8);
	f->dq = tt_new4(TT_F32, 2, 4, 16, 8);
	f->dk = tt_new4(TT_F32, 2, 2, 16, 8);
	f->dv = tt_new4(TT_F32, 2, 2, 16, 8);
	f->lse_s = tt_new(TT_F32, 3, bhn);
	f->lse_d = tt_new(TT_F32, 3, bhn);
	f->gate = tt_new(TT_F32, 2, bh);
	f->dg = tt_new(TT_F32, 2, bh);
	f->len_q = tt_new(TT_I32, 1, b1);
	f->len_k = tt_new(TT_I32, 1, b1);
	tt_fill_randn(f->q, 1), tt_fill_randn(f->k, 1), tt_fill_randn(f->v, 1);
	tt_fill_randn(f->d_o, 1);
	tt_fill_uniform(f->gate, 0, 1);
	tt_fill(f->len_q, 16), tt_fill(f->len_k, 10);
	asam_pattern_init(&f->pat, ASAM_PATTERN_LOCAL);
	f->pat.window = 4;
	f->prm = (struct asam_attn_params){ .sz = sizeof(f->prm),
					    .pattern = &f->pat,
					    .gate_mode = ASAM_GATE_SOFT };
	f->a = (struct asam_fwd_args){
		.sz = sizeof(f->a), .q = &f->q->dl, .k = &f->k->dl,
		.v = &f->v->dl, .gate = &f->gate->dl, .len_q = &f->len_q->dl,
		.len_k = &f->len_k->dl, .o = &f->o->dl,
		.lse_sparse = &f->lse_s->dl, .lse_dense = &f->lse_d->dl,
	};
	f->b = (struct asam_bwd_args){
		.sz = sizeof(f->b), .q = &f->q->dl, .k = &f->k->dl,
		.v = &f->v->dl, .gate = &f->gate->dl, .len_q = &f->len_q->dl,
		.len_k = &f->len_k->dl, .o = &f->o->dl,
		.lse_sparse = &f->lse_s->dl, .lse_dense = &f->lse_d->dl,
		.d_o = &f->d_o->dl, .dq = &f->dq->dl, .dk = &f->dk->dl,
		.dv = &f->dv->dl, .dgate = &f->dg->dl,
	};
}

static void fx_free(struct fx *f)
{
	struct tt *all[] = { f->q, f->k, f->v, f->o, f->lse_s, f->lse_d,
			     f->gate, f->len_q, f->len_k, f->d_o, f->dq,
			     f->dk, f->dv, f->dg, f->cent, f->index };
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(all); i++)
		tt_free(all[i]);
}

/* point a tensor's shape or strides at private arrays we may change */
static DLTensor *own_shape(struct fx *f, struct tt *t)
{
	memcpy(f->bad_shape, t->shape, sizeof(f->bad_shape));
	t->dl.shape = f->bad_shape;
	return &t->dl;
}

static DLTensor *own_strides(struct fx *f, struct tt *t)
{
	memcpy(f->bad_strides, t->strides, sizeof(f->bad_strides));
	t->dl.strides = f->bad_strides;
	return &t->dl;
}

/* a valid USER_INDEX pattern whose entry [1][0][2][1] is @bad */
static void user_index(struct fx *f, int bad)
{
	int64_t shape[4] = { 2, 2, 16, 3 };

	f->index = tt_new(TT_I32, 4, shape);
	tt_fill(f->index, 5);
	tt_set(f->index, ((1 * 2 + 0) * 16 + 2) * 3 + 1, bad);
	f->pat.kind = ASAM_PATTERN_USER_INDEX;
	f->pat.index = &f->index->dl;
}

/*
 * ... with 11 entries a row and entry [1][0][2][6] @bad: the row check
 * screens 8 entries at a time with vector compares (runtime/validate.c)
 */
static void user_index_wide(struct fx *f, int bad)
{
	int64_t shape[4] = { 2, 2, 16, 11 };

	f->index = tt_new(TT_I32, 4, shape);
	tt_fill(f->index, -1);
	tt_set(f->index, ((1 * 2 + 0) * 16 + 2) * 11 + 6, bad);
	f->pat.kind = ASAM_PATTERN_USER_INDEX;
	f->pat.index = &f->index->dl;
}

/*
 * ... with 4096 entries a row (past the size the context's pool screens)
 * and two bad entries in rows far apart: the message must name the first
 * in index order, [0][1][3][4000], whichever worker finds which
 */
static void user_index_pool(struct fx *f)
{
	int64_t shape[4] = { 2, 2, 16, 4096 };

	f->index = tt_new(TT_I32, 4, shape);
	tt_fill(f->index, -1);
	tt_set(f->index, ((1 * 2 + 1) * 16 + 9) * 4096 + 5, -3);
	tt_set(f->index, ((0 * 2 + 1) * 16 + 3) * 4096 + 4000, 16);
	f->pat.kind = ASAM_PATTERN_USER_INDEX;
	f->pat.index = &f->index->dl;
}

#define CASE(name, err, word, body)					\
	static void name(struct fx *f) { body; }
#include "errors_cases.h"
#undef CASE

static const struct {
	const char *name;
	int err;
	const char *word;
	void (*apply)(struct fx *f);
} cases[] = {
#define CASE(name, err, word, body) { #name, err, word, name },
#include "errors_cases.h"
#undef CASE
};

static bool pattern_built(enum asam_pattern_kind kind)
{
	switch (kind) {
	case ASAM_PATTERN_STRIDED:
		return IS_ENABLED(CONFIG_PATTERN_STRIDED);
	case ASAM_PATTERN_HIERARCHICAL:
		return IS_ENABLED(CONFIG_PATTERN_HIERARCHICAL);
	case ASAM_PATTERN_RANDOM:
		return IS_ENABLED(CONFIG_PATTERN_RANDOM);
	case ASAM_PATTERN_RANDOM_ROWS:
		return IS_ENABLED(CONFIG_PATTERN_RANDOM_ROWS);
	case ASAM_PATTERN_CLUSTERED:
		return IS_ENABLED(CONFIG_PATTERN_CLUSTERED);
	case ASAM_PATTERN_USER_INDEX:
		return IS_ENABLED(CONFIG_PATTERN_USER_INDEX);
	default:
		return true;
	}
}

static bool outputs_poisoned(const struct fx *f)
{
	return tt_is_poisoned(f->o) && tt_is_poisoned(f->lse_s) &&
	       tt_is_poisoned(f->lse_d) && tt_is_poisoned(f->dq) &&
	       tt_is_poisoned(f->dk) && tt_is_poisoned(f->dv) &&
	       tt_is_poisoned(f->dg);
}

int main(void)
{
	struct asam_ctx *ctx;
	char names[128];
	const char *word;
	unsigned int i;
	int want;
	struct fx f;
	int ret;

	ksft_print_header();
	if (asam_ctx_create(NULL, &ctx))
		ksft_exit_skip("no context: %s\n", asam_last_error());
	ksft_set_plan(ARRAY_SIZE(cases) + 1);

	/* the unbroken fixture works, forward and backward */
	fx_init(&f, ctx);
	ret = asam_attn_fwd(ctx, &f.prm, &f.a);
	if (!ret)
		ret = asam_attn_bwd(ctx, &f.prm, &f.b);
	ksft_test_result(!ret, "valid fixture runs: %s\n", asam_last_error());
	fx_free(&f);

	asam_ctx_backends(ctx, names, sizeof(names));
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		const char *msg;

		/* host memory labelled CUDA must not reach a real GPU */
		if (!strcmp(cases[i].name, "cuda_tensors") &&
		    strstr(names, "cuda")) {
			ksft_test_result_skip("cuda_tensors: a CUDA backend is present\n");
			continue;
		}
		fx_init(&f, ctx);
		cases[i].apply(&f);
		tt_poison(f.o), tt_poison(f.lse_s), tt_poison(f.lse_d);
		tt_poison(f.dq), tt_poison(f.dk), tt_poison(f.dv);
		tt_poison(f.dg);
		ret = f.bwd ? asam_attn_bwd(f.ctx, &f.prm, &f.b) :
			      asam_attn_fwd(f.ctx, &f.prm, &f.a);
		msg = asam_last_error();
		want = cases[i].err;
		word = cases[i].word;
		/* a pattern this build leaves out: -EOPNOTSUPP naming its option */
		if ((unsigned int)f.pat.kind < ASAM_PATTERN_NR_KINDS &&
		    !pattern_built(f.pat.kind))
			want = -EOPNOTSUPP, word = "enable CONFIG_PATTERN_";
		ksft_test_result(ret == want && strstr(msg, word) &&
				 outputs_poisoned(&f),
				 "%s: %d (want %d) \"%s\"\n", cases[i].name,
				 ret, want, msg);
		fx_free(&f);
	}
	asam_ctx_destroy(ctx);
	ksft_finished();
}
