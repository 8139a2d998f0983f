// SPDX-License-Identifier: MIT
/*
 * asam-bench --gpu: the command line, the cases it expands to, the FLOP
 * counts and the output lines.  Nothing here touches a device, so the
 * selftest checks all of it on any machine.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asam-bench-gpu.h"

static const char *const gate_names[BENCH_GATE_NR] = {
	[BENCH_GATE_SPARSE] = "sparse",
	[BENCH_GATE_SOFT] = "soft",
	[BENCH_GATE_HARD] = "hard",
};

const char *bench_gate_name(enum bench_gate g)
{
	return (unsigned int)g < BENCH_GATE_NR ? gate_names[g] : "?";
}

int bench_kind_from_name(const char *s)
{
	int k;

	for (k = 0; k < ASAM_PATTERN_NR_KINDS; k++)
		if (!strcmp(s, asam_pattern_name((enum asam_pattern_kind)k)))
			return k;
	return -1;
}

void bench_usage(FILE *f)
{
	fprintf(f,
"usage: asam-bench --gpu [--pattern P[,P...]|all] [--shape B,H,N,d]...\n"
"                  [--gate sparse,soft,hard] [--bwd] [--causal] [--fp16]\n"
"                  [--warmup N] [--reps N] [--device N] [--keys R]\n"
"                  [--clusters C] [--deterministic] [--json]\n"
"  Times asam_attn_fwd (and with --bwd forward+backward) on cuda:N through\n"
"  the public API: CUDA events around each call, the median of --reps\n"
"  (default 5) after --warmup (default 2) runs.  Without --shape every\n"
"  pattern runs on the peers' grid (dense B8 H16 N4K d128 and d64, B2 H16\n"
"  N16K d128; local N16K and B1 N64K; the rest B2 H16 N16K d128), SOFT\n"
"  and HARD only on B2 H16 N16K d128.  bf16 unless --fp16.  TFLOP/s are\n"
"  over the pattern's allowed pairs: 4 d per pair forward, 14 d forward+\n"
"  backward.  SOFT uses g = 0.5; HARD tau = 0.5 with g = 1 (every head\n"
"  sparse).  CLUSTERED: --clusters random centroids (32); USER_INDEX:\n"
"  --keys random distinct keys per query (128).  A pattern the backend\n"
"  declines prints \"unsupported\" and the run goes on.  The backward\n"
"  gets the workspace asam_attn_workspace_size() asks for, and is the\n"
"  non-deterministic one unless --deterministic.\n");
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

static int parse_shape(const char *s, struct bench_shape *sh)
{
	int v[4], n = 0;
	const char *p = s;

	while (n < 4) {
		char tmp[24];
		size_t len = strcspn(p, ",");

		if (!len || len >= sizeof(tmp))
			return -EINVAL;
		memcpy(tmp, p, len);
		tmp[len] = 0;
		if (parse_int(tmp, 1, 1 << 24, &v[n]))
			return -EINVAL;
		n++;
		p += len;
		if (!*p)
			break;
		p++;
	}
	if (n != 4 || *p)
		return -EINVAL;
	sh->B = v[0], sh->H = v[1], sh->N = v[2], sh->d = v[3];
	return 0;
}

/* a comma-separated list of names into a bit mask */
static int parse_list(const char *s, bool gates, unsigned int *mask)
{
	char buf[256], *tok, *save;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	*mask = 0;
	if (!gates && !strcmp(s, "all")) {
		*mask = (1u << ASAM_PATTERN_NR_KINDS) - 1;
		return 0;
	}
	for (tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		int k = -1, g;

		if (gates) {
			for (g = 0; g < BENCH_GATE_NR; g++)
				if (!strcmp(tok, gate_names[g]))
					k = g;
		} else {
			k = bench_kind_from_name(tok);
		}
		if (k < 0)
			return -EINVAL;
		*mask |= 1u << k;
	}
	return *mask ? 0 : -EINVAL;
}

int bench_parse(int argc, char **argv, struct bench_opts *o, char *err,
		size_t errlen)
{
	int i;

	memset(o, 0, sizeof(*o));
	o->patterns = (1u << ASAM_PATTERN_NR_KINDS) - 1;
	o->gates = 7;
	o->warmup = 2;
	o->reps = 5;
	o->keys_per_row = 128;
	o->clusters = 32;
	for (i = 1; i < argc; i++) {
		static const char *const valued[] = {
			"--pattern", "--gate", "--shape", "--warmup", "--reps",
			"--device", "--keys", "--clusters",
		};
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		bool known = false;
		size_t t;
		int ret = 0;

		if (!strcmp(a, "--gpu") || !strcmp(a, "--bwd") ||
		    !strcmp(a, "--json") || !strcmp(a, "--causal") ||
		    !strcmp(a, "--fp16") || !strcmp(a, "--help") ||
		    !strcmp(a, "--deterministic") ||
		    !strcmp(a, "-h")) {
			o->bwd |= !strcmp(a, "--bwd");
			o->json |= !strcmp(a, "--json");
			o->causal |= !strcmp(a, "--causal");
			o->fp16 |= !strcmp(a, "--fp16");
			o->det |= !strcmp(a, "--deterministic");
			if (a[1] == 'h' || !strcmp(a, "--help"))
				return 1;
			continue;
		}
		for (t = 0; t < sizeof(valued) / sizeof(valued[0]); t++)
			known |= !strcmp(a, valued[t]);
		if (!known) {
			snprintf(err, errlen, "unknown argument '%s'", a);
			return -EINVAL;
		}
		if (!v) {
			snprintf(err, errlen, "%s needs a value", a);
			return -EINVAL;
		}
		if (!strcmp(a, "--pattern"))
			ret = parse_list(v, false, &o->patterns);
		else if (!strcmp(a, "--gate"))
			ret = parse_list(v, true, &o->gates);
		else if (!strcmp(a, "--shape")) {
			if (o->nshapes == BENCH_MAX_SHAPES) {
				snprintf(err, errlen, "--shape: at most %d",
					 BENCH_MAX_SHAPES);
				return -EINVAL;
			}
			ret = parse_shape(v, &o->shapes[o->nshapes++]);
		} else if (!strcmp(a, "--warmup"))
			ret = parse_int(v, 0, 1000, &o->warmup);
		else if (!strcmp(a, "--reps"))
			ret = parse_int(v, 1, 10000, &o->reps);
		else if (!strcmp(a, "--device"))
			ret = parse_int(v, 0, 1023, &o->device);
		else if (!strcmp(a, "--keys"))
			ret = parse_int(v, 1, 1 << 20, &o->keys_per_row);
		else if (!strcmp(a, "--clusters"))
			ret = parse_int(v, 1, 256, &o->clusters);
		if (ret) {
			snprintf(err, errlen, "%s: bad value '%s'", a, v);
			return -EINVAL;
		}
		i++;
	}
	return 0;
}

/* the peers' grid (peers.py GRID) for one pattern */
static int grid_shapes(enum asam_pattern_kind k, struct bench_shape *s)
{
	static const struct bench_shape dense[] = {
		{ 8, 16, 4096, 128 }, { 2, 16, 16384, 128 }, { 8, 16, 4096, 64 },
	}, local[] = {
		{ 2, 16, 16384, 128 }, { 1, 16, 65536, 128 },
	}, other[] = {
		{ 2, 16, 16384, 128 },
	};

	switch (k) {
	case ASAM_PATTERN_DENSE:
		memcpy(s, dense, sizeof(dense));
		return 3;
	case ASAM_PATTERN_LOCAL:
		memcpy(s, local, sizeof(local));
		return 2;
	default:
		memcpy(s, other, sizeof(other));
		return 1;
	}
}

static bool target_shape(const struct bench_shape *s)
{
	return s->B == 2 && s->H == 16 && s->N == 16384 && s->d == 128;
}

int bench_plan(const struct bench_opts *o, struct bench_case *out, int max)
{
	int k, g, i, n = 0;

	for (k = 0; k < ASAM_PATTERN_NR_KINDS; k++) {
		struct bench_shape s[BENCH_MAX_SHAPES];
		int ns;

		if (!(o->patterns & (1u << k)))
			continue;
		if (o->nshapes) {
			ns = o->nshapes;
			memcpy(s, o->shapes, sizeof(s[0]) * ns);
		} else {
			ns = grid_shapes((enum asam_pattern_kind)k, s);
		}
		for (i = 0; i < ns; i++)
			for (g = 0; g < BENCH_GATE_NR; g++) {
				if (!(o->gates & (1u << g)))
					continue;
				/* the grid: SOFT and HARD where their
				 * targets are set */
				if (!o->nshapes && g != BENCH_GATE_SPARSE &&
				    !target_shape(&s[i]))
					continue;
				if (n == max)
					return n;
				out[n].kind = (enum asam_pattern_kind)k;
				out[n].gate = (enum bench_gate)g;
				out[n].s = s[i];
				n++;
			}
	}
	return n;
}

double bench_flops(uint64_t allowed, int d, bool fwdbwd)
{
	return (double)allowed * d * (fwdbwd ? 14.0 : 4.0);
}

double bench_tflops(double flops, double ms)
{
	return ms > 0 ? flops / (ms * 1e-3) * 1e-12 : 0;
}

/* JSON string body: quotes, backslashes and control bytes escaped */
static int json_str(char *buf, size_t len, const char *s)
{
	size_t n = 0;

	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		char tmp[8];
		const char *e = tmp;

		if (c == '"' || c == '\\')
			snprintf(tmp, sizeof(tmp), "\\%c", c);
		else if (c < 0x20)
			snprintf(tmp, sizeof(tmp), "\\u%04x", c);
		else
			tmp[0] = (char)c, tmp[1] = 0;
		for (; *e; e++, n++)
			if (n + 1 < len)
				buf[n] = *e;
	}
	if (len)
		buf[n < len ? n : len - 1] = 0;
	return (int)n;
}

static void num(char *buf, size_t len, double x)
{
	if (x < 0)
		snprintf(buf, len, "null");
	else
		snprintf(buf, len, "%.6g", x);
}

int bench_json(char *buf, size_t len, const struct bench_result *r)
{
	char dev[128], msg[512], fms[32], bms[32], ftf[32], btf[32];
	double density = r->masked ? (double)r->allowed / r->masked : 0;
	int n;

	json_str(dev, sizeof(dev), r->device ? r->device : "");
	json_str(msg, sizeof(msg), r->msg ? r->msg : "");
	num(fms, sizeof(fms), r->fwd_ms);
	num(bms, sizeof(bms), r->fwdbwd_ms);
	num(ftf, sizeof(ftf), r->fwd_ms > 0 ? bench_tflops(bench_flops(
		r->allowed, r->c.s.d, false), r->fwd_ms) : -1);
	num(btf, sizeof(btf), r->fwdbwd_ms > 0 ? bench_tflops(bench_flops(
		r->allowed, r->c.s.d, true), r->fwdbwd_ms) : -1);
	n = snprintf(buf, len,
		     "{\"tool\":\"asam-bench\",\"mode\":\"gpu\",\"device\":\"%s\","
		     "\"pattern\":\"%s\",\"gate\":\"%s\",\"B\":%d,\"H\":%d,"
		     "\"N\":%d,\"d\":%d,\"dtype\":\"%s\",\"causal\":%s,"
		     "\"reps\":%d,\"allowed\":%" PRIu64 ",\"masked\":%" PRIu64
		     ",\"density\":%.6g,\"fwd_ms\":%s,\"fwd_tflops\":%s,"
		     "\"fwdbwd_ms\":%s,\"fwdbwd_tflops\":%s,"
		     "\"status\":\"%s\",\"error\":\"%s\"}",
		     dev, asam_pattern_name(r->c.kind),
		     bench_gate_name(r->c.gate), r->c.s.B, r->c.s.H, r->c.s.N,
		     r->c.s.d, r->dtype ? r->dtype : "bf16",
		     r->causal ? "true" : "false", r->reps, r->allowed,
		     r->masked, density, fms, ftf, bms, btf,
		     r->status ? r->status : "error", msg);
	if (n < 0 || (size_t)n >= len)
		return -ENOSPC;
	return n;
}

void bench_print(FILE *f, const struct bench_result *r)
{
	char shape[64];
	double density = r->masked ? (double)r->allowed / r->masked : 0;

	snprintf(shape, sizeof(shape), "B%d H%d N%d d%d", r->c.s.B, r->c.s.H,
		 r->c.s.N, r->c.s.d);
	fprintf(f, "%-12s %-6s %-22s ", asam_pattern_name(r->c.kind),
		bench_gate_name(r->c.gate), shape);
	if (strcmp(r->status, "ok")) {
		fprintf(f, "%s: %s\n", r->status, r->msg ? r->msg : "");
		return;
	}
	fprintf(f, "density %.5f  fwd %9.3f ms %7.1f TFLOP/s", density,
		r->fwd_ms, bench_tflops(bench_flops(r->allowed, r->c.s.d,
						    false), r->fwd_ms));
	if (r->fwdbwd_ms > 0)
		fprintf(f, "  fwd+bwd %9.3f ms %7.1f TFLOP/s", r->fwdbwd_ms,
			bench_tflops(bench_flops(r->allowed, r->c.s.d, true),
				     r->fwdbwd_ms));
	fputc('\n', f);
}
