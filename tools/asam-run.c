// SPDX-License-Identifier: MIT
/*
 * asam-run: the main job.  Runs ASAM attention forward (and backward with
 * --bwd) for every pattern this build has, on the best backend the context
 * offers for host tensors, checks each result against the fp64 reference
 * and prints one table row per pattern: time, allowed-pair density and the
 * relative error.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <asam/asam.h>

static const DLDataType F32 = { kDLFloat, 32, 1 };
static const DLDataType F64 = { kDLFloat, 64, 1 };

struct ten {
	DLTensor dl;
	int64_t shape[4];
};

static int ten_init(struct ten *t, DLDataType dt, int ndim, int64_t a,
		    int64_t b, int64_t c, int64_t d)
{
	int64_t dims[4] = { a, b, c, d }, n = 1;
	int i;

	memset(t, 0, sizeof(*t));
	for (i = 0; i < ndim; i++)
		n *= (t->shape[i] = dims[i]);
	t->dl.data = calloc(n, dt.bits / 8);
	if (!t->dl.data)
		return -1;
	t->dl.device = (DLDevice){ kDLCPU, 0 };
	t->dl.ndim = ndim;
	t->dl.dtype = dt;
	t->dl.shape = t->shape;
	return 0;
}

static int64_t numel(const struct ten *t)
{
	int64_t n = 1;
	int i;

	for (i = 0; i < t->dl.ndim; i++)
		n *= t->shape[i];
	return n;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng = 0x5eed;

static double randn(void)
{
	double u[2];
	int i;

	for (i = 0; i < 2; i++) {
		uint64_t z = (rng += 0x9E3779B97F4A7C15ull);

		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
		z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
		u[i] = ((z ^ (z >> 31)) >> 11) * (1.0 / 9007199254740992.0);
	}
	return sqrt(-2 * log(u[0] + 1e-300)) * cos(2 * M_PI * u[1]);
}

static void usage(void)
{
	printf("usage: asam-run [--N n] [--d d] [--B b] [--H h] [--causal]\n"
	       "                [--mode sparse|dense|soft|hard] [--bwd]\n"
	       "                [--pattern name]\n");
}

struct run_opts {
	int N, d, B, H;
	bool causal, bwd;
	enum asam_gate_mode mode;
	int only;	/* -1: every pattern */
};

/* fp32 copy of @src into @dst64 as fp64 (the reference's inputs) */
static void widen(struct ten *dst, const struct ten *src)
{
	int64_t i;

	for (i = 0; i < numel(src); i++)
		((double *)dst->dl.data)[i] = ((float *)src->dl.data)[i];
}

static double rel_err(const struct ten *a32, const struct ten *r64)
{
	double num = 0, den = 0;
	int64_t i;

	for (i = 0; i < numel(r64); i++) {
		double x = ((float *)a32->dl.data)[i],
		       r = ((double *)r64->dl.data)[i];

		if (isnan(x))
			return INFINITY;
		num += (x - r) * (x - r);
		den += r * r;
	}
	return den ? sqrt(num / den) : sqrt(num);
}

static int run_pattern(struct asam_ctx *ctx, const struct run_opts *o,
		       enum asam_pattern_kind kind)
{
	struct ten q, k, v, out, lse_s, lse_d, g, c;
	struct ten q64, k64, v64, out64, c64, idx;
	struct asam_pattern pat;
	struct asam_attn_params prm = { .sz = sizeof(prm) };
	struct asam_fwd_args a = { .sz = sizeof(a) };
	struct asam_pattern_stats st = { .sz = sizeof(st) };
	int64_t i, C = 16;
	double t0, t_fwd, t_bwd = 0, err;
	int ret;

	asam_pattern_init(&pat, kind);
	ten_init(&q, F32, 4, o->B, o->H, o->N, o->d);
	ten_init(&k, F32, 4, o->B, o->H, o->N, o->d);
	ten_init(&v, F32, 4, o->B, o->H, o->N, o->d);
	ten_init(&out, F32, 4, o->B, o->H, o->N, o->d);
	ten_init(&lse_s, F32, 3, o->B, o->H, o->N, 0);
	ten_init(&lse_d, F32, 3, o->B, o->H, o->N, 0);
	ten_init(&g, F32, 2, o->B, o->H, 0, 0);
	ten_init(&c, F32, 3, o->H, C, o->d, 0);
	for (i = 0; i < numel(&q); i++) {
		((float *)q.dl.data)[i] = randn();
		((float *)k.dl.data)[i] = randn();
		((float *)v.dl.data)[i] = randn();
	}
	for (i = 0; i < numel(&g); i++)
		((float *)g.dl.data)[i] = (i % 3) / 2.0;	/* 0, .5, 1 */
	for (i = 0; i < numel(&c); i++)
		((float *)c.dl.data)[i] = randn();
	if (kind == ASAM_PATTERN_CLUSTERED) {
		pat.num_clusters = C;
		pat.centroids = &c.dl;
	}
	/* USER_INDEX: 64 keys per query, as a top-k selector would pick */
	ten_init(&idx, (DLDataType){ kDLInt, 32, 1 }, 4, o->B, o->H, o->N, 64);
	for (i = 0; i < numel(&idx); i++) {
		uint64_t z = (rng += 0x9E3779B97F4A7C15ull);

		((int32_t *)idx.dl.data)[i] = (int32_t)((z >> 33) % o->N);
	}
	if (kind == ASAM_PATTERN_USER_INDEX)
		pat.index = &idx.dl;
	prm.pattern = &pat;
	prm.gate_mode = o->mode;
	prm.hard_threshold = 0.5f;
	prm.causal = o->causal;
	a.q = &q.dl, a.k = &k.dl, a.v = &v.dl, a.o = &out.dl;
	a.gate = &g.dl, a.lse_sparse = &lse_s.dl, a.lse_dense = &lse_d.dl;

	ret = asam_pattern_stats(ctx, &prm, &a, &st);
	if (ret)
		goto err;
	t0 = now();
	ret = asam_attn_fwd(ctx, &prm, &a);
	t_fwd = now() - t0;
	if (ret)
		goto err;
	if (o->bwd && o->mode != ASAM_GATE_HARD) {
		struct ten dO, dq, dk, dv, dg;
		struct asam_bwd_args b = { .sz = sizeof(b) };

		ten_init(&dO, F32, 4, o->B, o->H, o->N, o->d);
		ten_init(&dq, F32, 4, o->B, o->H, o->N, o->d);
		ten_init(&dk, F32, 4, o->B, o->H, o->N, o->d);
		ten_init(&dv, F32, 4, o->B, o->H, o->N, o->d);
		ten_init(&dg, F32, 2, o->B, o->H, 0, 0);
		for (i = 0; i < numel(&dO); i++)
			((float *)dO.dl.data)[i] = randn();
		b.q = a.q, b.k = a.k, b.v = a.v, b.o = a.o, b.gate = a.gate;
		b.lse_sparse = a.lse_sparse, b.lse_dense = a.lse_dense;
		b.d_o = &dO.dl, b.dq = &dq.dl, b.dk = &dk.dl, b.dv = &dv.dl;
		b.dgate = &dg.dl;
		t0 = now();
		ret = asam_attn_bwd(ctx, &prm, &b);
		t_bwd = now() - t0;
		free(dO.dl.data), free(dq.dl.data), free(dk.dl.data);
		free(dv.dl.data), free(dg.dl.data);
		if (ret)
			goto err;
	}

	/* the same inputs in fp64 through the reference */
	ten_init(&q64, F64, 4, o->B, o->H, o->N, o->d);
	ten_init(&k64, F64, 4, o->B, o->H, o->N, o->d);
	ten_init(&v64, F64, 4, o->B, o->H, o->N, o->d);
	ten_init(&out64, F64, 4, o->B, o->H, o->N, o->d);
	ten_init(&c64, F64, 3, o->H, C, o->d, 0);
	widen(&q64, &q), widen(&k64, &k), widen(&v64, &v), widen(&c64, &c);
	if (kind == ASAM_PATTERN_CLUSTERED)
		pat.centroids = &c64.dl;
	prm.flags = ASAM_F_REFERENCE;
	a.q = &q64.dl, a.k = &k64.dl, a.v = &v64.dl, a.o = &out64.dl;
	a.lse_sparse = a.lse_dense = NULL;
	ret = asam_attn_fwd(ctx, &prm, &a);
	if (ret)
		goto err;
	err = rel_err(&out, &out64);
	printf("%-13s %6d %4d %10.2f %10.2f %9.4f %10.2e\n",
	       asam_pattern_name(kind), o->N, o->d, t_fwd * 1e3, t_bwd * 1e3,
	       st.density, err);
	free(q64.dl.data), free(k64.dl.data), free(v64.dl.data);
	free(out64.dl.data), free(c64.dl.data);
	ret = err <= 1e-5 ? 0 : -1;
	if (ret)
		fprintf(stderr, "asam-run: %s: error %.3g above 1e-5\n",
			asam_pattern_name(kind), err);
	goto out;
err:
	fprintf(stderr, "asam-run: %s: %s (%s)\n", asam_pattern_name(kind),
		asam_strerror(ret), asam_last_error());
out:
	free(q.dl.data), free(k.dl.data), free(v.dl.data), free(out.dl.data);
	free(lse_s.dl.data), free(lse_d.dl.data), free(g.dl.data);
	free(c.dl.data), free(idx.dl.data);
	return ret;
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "N", required_argument, NULL, 'N' },
		{ "d", required_argument, NULL, 'd' },
		{ "B", required_argument, NULL, 'B' },
		{ "H", required_argument, NULL, 'H' },
		{ "causal", no_argument, NULL, 'c' },
		{ "bwd", no_argument, NULL, 'b' },
		{ "mode", required_argument, NULL, 'm' },
		{ "pattern", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct run_opts o = { .N = 1024, .d = 64, .B = 1, .H = 2,
			      .mode = ASAM_GATE_SOFT, .only = -1 };
	struct asam_ctx *ctx;
	char backends[128];
	int opt, kind, fails = 0, ret;

	while ((opt = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
		switch (opt) {
		case 'N': o.N = atoi(optarg); break;
		case 'd': o.d = atoi(optarg); break;
		case 'B': o.B = atoi(optarg); break;
		case 'H': o.H = atoi(optarg); break;
		case 'c': o.causal = true; break;
		case 'b': o.bwd = true; break;
		case 'm':
			o.mode = !strcmp(optarg, "sparse") ? ASAM_GATE_SPARSE :
				 !strcmp(optarg, "dense") ? ASAM_GATE_DENSE :
				 !strcmp(optarg, "hard") ? ASAM_GATE_HARD :
				 ASAM_GATE_SOFT;
			break;
		case 'p':
			for (kind = 0; kind < ASAM_PATTERN_NR_KINDS; kind++)
				if (!strcmp(optarg, asam_pattern_name(kind)))
					o.only = kind;
			if (o.only < 0) {
				fprintf(stderr, "asam-run: unknown pattern %s\n",
					optarg);
				return 2;
			}
			break;
		default:
			usage();
			return opt == 'h' ? 0 : 2;
		}
	}
	ret = asam_ctx_create(NULL, &ctx);
	if (ret) {
		fprintf(stderr, "asam-run: %s\n", asam_last_error());
		return 1;
	}
	asam_ctx_backends(ctx, backends, sizeof(backends));
	printf("libasam %s: backends %s; B=%d H=%d N=%d d=%d %s%s, fp32 vs fp64 reference\n",
	       ASAM_VERSION_STRING, backends, o.B, o.H, o.N, o.d,
	       o.mode == ASAM_GATE_SOFT ? "SOFT" : o.mode == ASAM_GATE_HARD ?
	       "HARD" : o.mode == ASAM_GATE_DENSE ? "DENSE" : "SPARSE",
	       o.causal ? " causal" : "");
	printf("%-13s %6s %4s %10s %10s %9s %10s\n", "pattern", "N", "d",
	       "fwd ms", "bwd ms", "density", "rel err");
	for (kind = 0; kind < ASAM_PATTERN_NR_KINDS; kind++) {
		if (o.only >= 0 && kind != o.only)
			continue;
		ret = run_pattern(ctx, &o, kind);
		if (ret == -EOPNOTSUPP && o.only < 0) {
			printf("%-13s  (not built)\n", asam_pattern_name(kind));
			continue;
		}
		fails += ret != 0;
	}
	asam_ctx_destroy(ctx);
	return fails ? 1 : 0;
}
