// SPDX-License-Identifier: MIT
/*
 * asam-bench: Google Benchmark timings of the public C API.
 *
 * Every pattern at N = 1K..16K, d = 64 and 128, forward and backward, on
 * the CPU backend the context picks (B = 1, 8 heads unless told).  The
 * counter "GFLOPs" is computed over the pattern's allowed pairs only
 * (4 d flops per pair forward: Q.K^T and P.V; 10 d backward, counting the
 * recomputed scores), so a sparse pattern that skipped no work would show
 * a low rate.  "density" is allowed / unmasked pairs.
 *
 *   asam-bench [--asam_threads=N] [--asam_heads=H] [--asam_causal]
 *              [--asam_dtype=f32|f16|bf16] [benchmark flags, e.g.
 *              --benchmark_filter=fwd/dense --benchmark_format=json]
 *
 * The kernel set is chosen from CPUID; ASAM_CPU_ISA=avx2|generic caps it
 * and ASAM_LOG_LEVEL=2 prints which one ran.
 *
 *   asam-bench --gpu [--help]   times the CUDA backend instead, without
 *              Google Benchmark (CUDA events, medians): asam-bench-gpu.c
 */
#include <benchmark/benchmark.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include <asam/asam.h>

#include "asam-bench-gpu.h"

#include <chrono>
#include <thread>

/* hidden helpers of the static library (arch/cpu/fast.h) */
extern "C" {
const char *asam_cpu_bench_isa(void);
double asam_cpu_bench_peak(long iters);
double asam_cpu_bench_kernel(int which, int dp, long iters);
}

namespace {

unsigned int g_threads;
int g_heads = 8;
bool g_causal;
DLDataType g_dt = { kDLFloat, 32, 1 };
asam_ctx *g_ctx;

struct Tensor {
	DLTensor dl{};
	std::vector<int64_t> shape;
	std::vector<uint8_t> store;
	uint8_t *buf;		/* the data: 64-byte aligned, as frameworks do */
	size_t bytes;

	Tensor(DLDataType dt, std::vector<int64_t> s) : shape(std::move(s))
	{
		size_t n = 1;

		for (int64_t x : shape)
			n *= (size_t)x;
		bytes = n * dt.bits / 8;
		store.resize(bytes + 64);
		buf = store.data() + (-(uintptr_t)store.data() & 63);
		dl.data = buf;
		dl.device = { kDLCPU, 0 };
		dl.ndim = (int)shape.size();
		dl.dtype = dt;
		dl.shape = shape.data();
	}

	void randn(std::mt19937 &rng)
	{
		std::normal_distribution<float> nd;
		size_t n = bytes / (dl.dtype.bits / 8), i;

		for (i = 0; i < n; i++) {
			float x = nd(rng);
			uint32_t u;

			std::memcpy(&u, &x, 4);
			if (dl.dtype.bits == 32)
				std::memcpy(&buf[i * 4], &x, 4);
			else if (dl.dtype.code == kDLBfloat) {
				uint16_t h = (uint16_t)(u >> 16);

				std::memcpy(&buf[i * 2], &h, 2);
			} else {
				/* small normals: exponent fits, truncate */
				uint16_t h = (uint16_t)(((u >> 16) & 0x8000) |
					((((u >> 23) & 0xff) - 112) << 10) |
					((u >> 13) & 0x3ff));

				if (std::fabs(x) < 6.2e-5f)
					h = 0;
				std::memcpy(&buf[i * 2], &h, 2);
			}
		}
	}
};

const char *kind_name(asam_pattern_kind k)
{
	return asam_pattern_name(k);
}

/* One problem's tensors and settings, made once per (kind, N, d). */
struct Problem {
	asam_pattern pat{};
	asam_attn_params prm{};
	asam_fwd_args fa{};
	asam_bwd_args ba{};
	std::unique_ptr<Tensor> q, k, v, o, ls, ld, g, mu, dO, dq, dk, dv, dg;
	std::unique_ptr<Tensor> ix;	/* USER_INDEX: 128 random keys a row */
	double allowed = 0, density = 0;

	Problem(asam_pattern_kind kind, int N, int d)
	{
		std::mt19937 rng(1234);
		int H = g_heads;
		DLDataType f32 = { kDLFloat, 32, 1 };

		asam_pattern_init(&pat, kind);
		q.reset(new Tensor(g_dt, { 1, H, N, d }));
		k.reset(new Tensor(g_dt, { 1, H, N, d }));
		v.reset(new Tensor(g_dt, { 1, H, N, d }));
		o.reset(new Tensor(g_dt, { 1, H, N, d }));
		dO.reset(new Tensor(g_dt, { 1, H, N, d }));
		dq.reset(new Tensor(g_dt, { 1, H, N, d }));
		dk.reset(new Tensor(g_dt, { 1, H, N, d }));
		dv.reset(new Tensor(g_dt, { 1, H, N, d }));
		ls.reset(new Tensor(f32, { 1, H, N }));
		ld.reset(new Tensor(f32, { 1, H, N }));
		g.reset(new Tensor(f32, { 1, H }));
		dg.reset(new Tensor(f32, { 1, H }));
		mu.reset(new Tensor(f32, { H, pat.num_clusters, d }));
		q->randn(rng), k->randn(rng), v->randn(rng), dO->randn(rng);
		mu->randn(rng);
		pat.centroids = &mu->dl;
		if (kind == ASAM_PATTERN_USER_INDEX) {
			ix.reset(new Tensor({ kDLInt, 32, 1 }, { 1, H, N, 128 }));
			for (size_t t = 0; t < ix->bytes / 4; t++) {
				int32_t j = (int32_t)(rng() % (unsigned)N);

				std::memcpy(&ix->buf[t * 4], &j, 4);
			}
			pat.index = &ix->dl;
		}
		prm.sz = sizeof(prm);
		prm.pattern = &pat;
		prm.gate_mode = ASAM_GATE_SPARSE;
		prm.causal = g_causal;
		fa.sz = sizeof(fa);
		fa.q = &q->dl, fa.k = &k->dl, fa.v = &v->dl, fa.o = &o->dl;
		fa.lse_sparse = &ls->dl;
		ba.sz = sizeof(ba);
		ba.q = fa.q, ba.k = fa.k, ba.v = fa.v, ba.o = &o->dl;
		ba.lse_sparse = &ls->dl, ba.d_o = &dO->dl;
		ba.dq = &dq->dl, ba.dk = &dk->dl, ba.dv = &dv->dl;

		struct asam_pattern_stats st{};
		st.sz = sizeof(st);
		if (!asam_pattern_stats(g_ctx, &prm, &fa, &st)) {
			allowed = (double)st.allowed;
			density = st.density;
		}
	}
};

std::map<std::tuple<int, int, int>, std::unique_ptr<Problem>> g_probs;

Problem &problem(asam_pattern_kind kind, int N, int d)
{
	auto key = std::make_tuple((int)kind, N, d);
	auto it = g_probs.find(key);

	if (it != g_probs.end())
		return *it->second;
	/* one problem alive at a time keeps memory at a single N */
	g_probs.clear();
	return *(g_probs[key] = std::make_unique<Problem>(kind, N, d));
}

void run(benchmark::State &state, asam_pattern_kind kind, bool bwd)
{
	int N = (int)state.range(0), d = (int)state.range(1);
	Problem &p = problem(kind, N, d);
	int ret = asam_attn_fwd(g_ctx, &p.prm, &p.fa);

	if (ret) {
		state.SkipWithError(asam_last_error());
		return;
	}
	for (auto _ : state) {
		ret = bwd ? asam_attn_bwd(g_ctx, &p.prm, &p.ba)
			  : asam_attn_fwd(g_ctx, &p.prm, &p.fa);
		if (ret) {
			state.SkipWithError(asam_last_error());
			return;
		}
	}
	state.counters["GFLOPs"] = benchmark::Counter(
		p.allowed * (bwd ? 10.0 : 4.0) * d * 1e-9,
		benchmark::Counter::kIsIterationInvariantRate);
	state.counters["density"] = p.density;
	state.counters["threads"] = g_threads;
}

/*
 * The host's fp32 FMA peak with the kernels' ISA, on T threads at once
 * (T = --asam_threads or every CPU), and the two product kernels on one
 * core over cache-resident operands: their ratio is the kernels' share of
 * peak.
 */
void peak(benchmark::State &state)
{
	unsigned int T = g_threads ? g_threads :
			 std::thread::hardware_concurrency();
	const long iters = 20000000;
	double flops = 0;

	for (auto _ : state) {
		std::vector<std::thread> th;
		std::vector<double> f(T);

		for (unsigned int t = 0; t < T; t++)
			th.emplace_back([&f, t] {
				f[t] = asam_cpu_bench_peak(iters);
			});
		for (auto &x : th)
			x.join();
		flops = 0;
		for (double x : f)
			flops += x;
	}
	state.counters["GFLOPs"] = benchmark::Counter(
		flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
	state.counters["threads"] = T;
	state.SetLabel(asam_cpu_bench_isa());
}

/*
 * The kernel's share of peak is measured here too, the FMA probe on the
 * same core right after each kernel run (about as long), so that a clock
 * that moves between benchmarks (turbo, AVX-512 licences, neighbours on
 * a shared host) moves both sides of the ratio: "of_peak".
 */
void kernel(benchmark::State &state)
{
	int which = (int)state.range(0), dp = (int)state.range(1);
	const long iters = 20000;
	double flops = 0, pflops = 0, ks = 0, ps = 0;

	for (auto _ : state) {
		auto t0 = std::chrono::steady_clock::now();

		flops = asam_cpu_bench_kernel(which, dp, iters);
		auto t1 = std::chrono::steady_clock::now();

		pflops += asam_cpu_bench_peak(iters * dp * 4 / 3);
		auto t2 = std::chrono::steady_clock::now();

		state.SetIterationTime(
			std::chrono::duration<double>(t1 - t0).count());
		ks += std::chrono::duration<double>(t1 - t0).count();
		ps += std::chrono::duration<double>(t2 - t1).count();
	}
	state.counters["GFLOPs"] = benchmark::Counter(
		flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
	if (ks > 0 && ps > 0)
		state.counters["of_peak"] = flops * state.iterations() / ks /
					    (pflops / ps);
	state.SetLabel(std::string(asam_cpu_bench_isa()) +
		       (which ? " P.V" : " Q.K^T"));
}

void register_all()
{
	benchmark::RegisterBenchmark("peak/fma", peak)
		->Unit(benchmark::kMillisecond)->UseRealTime();
	benchmark::RegisterBenchmark("peak/fma1", [](benchmark::State &s) {
		unsigned int keep = g_threads;

		g_threads = 1;
		peak(s);
		g_threads = keep;
	})->Unit(benchmark::kMillisecond)->UseRealTime();
	benchmark::RegisterBenchmark("kernel/single-core", kernel)
		->ArgNames({ "pv", "d" })->Args({ 0, 64 })->Args({ 0, 128 })
		->Args({ 1, 64 })->Args({ 1, 128 })
		->Unit(benchmark::kMillisecond)->UseManualTime();

	static const asam_pattern_kind kinds[] = {
		ASAM_PATTERN_DENSE, ASAM_PATTERN_LOCAL, ASAM_PATTERN_STRIDED,
		ASAM_PATTERN_HIERARCHICAL, ASAM_PATTERN_RANDOM,
		ASAM_PATTERN_RANDOM_ROWS, ASAM_PATTERN_CLUSTERED,
		ASAM_PATTERN_USER_INDEX,
	};

	for (int bwd = 0; bwd < 2; bwd++)
		for (asam_pattern_kind k : kinds) {
			std::string name = std::string(bwd ? "bwd/" : "fwd/") +
					   kind_name(k);
			auto *b = benchmark::RegisterBenchmark(
				name.c_str(), [k, bwd](benchmark::State &s) {
					run(s, k, bwd);
				});
			b->ArgNames({ "N", "d" })->Unit(benchmark::kMillisecond)
				->UseRealTime();
			for (int d : { 64, 128 })
				for (int N = 1024; N <= 16384; N *= 2)
					b->Args({ N, d });
		}
}

/* take our own --asam_* flags out of argv before the library's parser */
void parse(int *argc, char **argv)
{
	int i, j = 1;

	for (i = 1; i < *argc; i++) {
		const char *a = argv[i];

		if (!std::strncmp(a, "--asam_threads=", 15))
			g_threads = (unsigned int)std::atoi(a + 15);
		else if (!std::strncmp(a, "--asam_heads=", 13))
			g_heads = std::atoi(a + 13);
		else if (!std::strcmp(a, "--asam_causal"))
			g_causal = true;
		else if (!std::strcmp(a, "--asam_dtype=f16"))
			g_dt = { kDLFloat, 16, 1 };
		else if (!std::strcmp(a, "--asam_dtype=bf16"))
			g_dt = { kDLBfloat, 16, 1 };
		else
			argv[j++] = argv[i];
	}
	*argc = j;
}

} /* namespace */

int main(int argc, char **argv)
{
	asam_ctx_opts o{};
	int ret;

	for (int i = 1; i < argc; i++)
		if (!std::strcmp(argv[i], "--gpu"))
			return bench_gpu_main(argc, argv);
	parse(&argc, argv);
	o.sz = sizeof(o);
	o.log_level = -1;
	o.num_threads = g_threads;
	ret = asam_ctx_create(&o, &g_ctx);
	if (ret) {
		std::fprintf(stderr, "asam-bench: %s\n", asam_last_error());
		return 1;
	}
	benchmark::AddCustomContext("asam_threads", g_threads ?
				    std::to_string(g_threads) : "all");
	benchmark::AddCustomContext("asam_heads", std::to_string(g_heads));
	benchmark::AddCustomContext("asam_causal", g_causal ? "1" : "0");
	register_all();
	benchmark::Initialize(&argc, argv);
	benchmark::RunSpecifiedBenchmarks();
	benchmark::Shutdown();
	g_probs.clear();
	asam_ctx_destroy(g_ctx);
	return 0;
}
