// SPDX-License-Identifier: MIT
#include <stdlib.h>
#include <string.h>

#include "attn_case.h"

void ac_init(struct attn_case *c, DLDataType dt, int B, int Hq, int Hkv,
	     int Nq, int Nk, int d, enum asam_pattern_kind kind,
	     enum asam_gate_mode mode, bool causal)
{
	int64_t bh[2] = { B, Hq }, bhn[3] = { B, Hq, Nq };
	int h, k;

	memset(c, 0, sizeof(*c));
	c->B = B, c->Hq = Hq, c->Hkv = Hkv, c->Nq = Nq, c->Nk = Nk, c->d = d;
	c->dt = dt;
	c->q = tt_new4(dt, B, Hq, Nq, d);
	c->k = tt_new4(dt, B, Hkv, Nk, d);
	c->v = tt_new4(dt, B, Hkv, Nk, d);
	c->o = tt_new4(dt, B, Hq, Nq, d);
	c->d_o = tt_new4(dt, B, Hq, Nq, d);
	c->dq = tt_new4(dt, B, Hq, Nq, d);
	c->dk = tt_new4(dt, B, Hkv, Nk, d);
	c->dv = tt_new4(dt, B, Hkv, Nk, d);
	c->lse_s = tt_new(TT_F64, 3, bhn);
	c->lse_d = tt_new(TT_F64, 3, bhn);
	c->gate = tt_new(TT_F32, 2, bh);
	c->dgate = tt_new(TT_F32, 2, bh);
	tt_fill_randn(c->q, 1);
	tt_fill_randn(c->k, 1);
	tt_fill_randn(c->v, 1);
	tt_fill_randn(c->d_o, 1);
	tt_fill_uniform(c->gate, 0.2, 0.8);

	asam_pattern_init(&c->pat, kind);
	switch (kind) {
	case ASAM_PATTERN_LOCAL:
		c->pat.window = 5;
		break;
	case ASAM_PATTERN_STRIDED:
		c->pat.stride = 4;
		c->pat.radius = 1;
		break;
	case ASAM_PATTERN_HIERARCHICAL:
		c->pat.scales[0] = 2, c->pat.scales[1] = 4, c->pat.scales[2] = 8;
		for (h = 0; h < Hq; h++) {
			double s = 0;

			for (k = 0; k < 3; k++)
				s += c->weights[h * 3 + k] = 0.1 + tt_uniform();
			for (k = 0; k < 3; k++)
				c->weights[h * 3 + k] /= s;
		}
		c->pat.scale_weights = c->weights;
		break;
	case ASAM_PATTERN_RANDOM:
		c->pat.keys_per_row = 64;
		break;
	case ASAM_PATTERN_RANDOM_ROWS:
		c->pat.keys_per_row = Nk > 3 ? Nk / 3 : 1;
		break;
	case ASAM_PATTERN_CLUSTERED: {
		int64_t shape[3] = { Hq, 3, d };

		c->cent = tt_new(dt, 3, shape);
		tt_fill_randn(c->cent, 1);
		c->pat.num_clusters = 3;
		c->pat.centroids = &c->cent->dl;
		break;
	}
	case ASAM_PATTERN_USER_INDEX: {
		/* r = 4 random keys per row, with repeats and -1 holes */
		int64_t shape[4] = { B, Hkv, Nq, 4 }, i;

		c->index = tt_new(TT_I32, 4, shape);
		for (i = 0; i < tt_numel(c->index); i++)
			tt_set(c->index, i, i % 7 == 3 ? -1 :
			       (int)(tt_uniform() * Nk));
		c->pat.index = &c->index->dl;
		break;
	}
	default:
		break;
	}
	c->prm = (struct asam_attn_params){
		.sz = sizeof(c->prm), .pattern = &c->pat, .gate_mode = mode,
		.hard_threshold = 0.5f, .causal = causal,
		.flags = ASAM_F_REFERENCE,
	};
}

void ac_set_lengths(struct attn_case *c, const int *lq, const int *lk)
{
	int64_t b1[1] = { c->B };
	int b;

	c->len_q = tt_new(TT_I32, 1, b1);
	c->len_k = tt_new(TT_I32, 1, b1);
	for (b = 0; b < c->B; b++) {
		tt_set(c->len_q, b, lq[b]);
		tt_set(c->len_k, b, lk[b]);
	}
}

void ac_free(struct attn_case *c)
{
	struct tt *all[] = { c->q, c->k, c->v, c->o, c->lse_s, c->lse_d,
			     c->gate, c->len_q, c->len_k, c->d_o, c->dq,
			     c->dk, c->dv, c->dgate, c->cent, c->index };
	unsigned int i;

	for (i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		tt_free(all[i]);
}

static const DLTensor *dl(const struct tt *t)
{
	return t ? &t->dl : NULL;
}

struct asam_fwd_args ac_fwd_args(struct attn_case *c)
{
	return (struct asam_fwd_args){
		.sz = sizeof(struct asam_fwd_args),
		.q = dl(c->q), .k = dl(c->k), .v = dl(c->v),
		.gate = dl(c->gate), .len_q = dl(c->len_q),
		.len_k = dl(c->len_k), .o = &c->o->dl,
		.lse_sparse = &c->lse_s->dl, .lse_dense = &c->lse_d->dl,
	};
}

struct asam_bwd_args ac_bwd_args(struct attn_case *c)
{
	return (struct asam_bwd_args){
		.sz = sizeof(struct asam_bwd_args),
		.q = dl(c->q), .k = dl(c->k), .v = dl(c->v),
		.gate = dl(c->gate), .len_q = dl(c->len_q),
		.len_k = dl(c->len_k), .o = dl(c->o),
		.lse_sparse = dl(c->lse_s), .lse_dense = dl(c->lse_d),
		.d_o = dl(c->d_o), .dq = &c->dq->dl, .dk = &c->dk->dl,
		.dv = &c->dv->dl, .dgate = &c->dgate->dl,
	};
}

int ac_fwd(struct asam_ctx *ctx, struct attn_case *c)
{
	struct asam_fwd_args a = ac_fwd_args(c);

	return asam_attn_fwd(ctx, &c->prm, &a);
}

int ac_bwd(struct asam_ctx *ctx, struct attn_case *c)
{
	struct asam_bwd_args a = ac_bwd_args(c);

	return asam_attn_bwd(ctx, &c->prm, &a);
}
