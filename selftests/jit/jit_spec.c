// SPDX-License-Identifier: MIT
/*
 * SHA-256 against the FIPS 180-4 / NIST vectors, and the spec key: equal
 * inputs (set in any order) give equal specs, text and keys; changing any
 * one field (arch, any define, an added define, the driver version) gives
 * a new key.  Also the sequence bucketing rule and the text round trip.
 */
#include <stdio.h>
#include <stdlib.h>

#include <asam/asam.h>
#include <internal/jit.h>

#include "../lib/kselftest.h"
#include "jit_common.h"

static bool sha_is(const void *p, size_t n, const char *want)
{
	uint8_t h[32];
	char hex[65];

	asam_sha256(p, n, h);
	asam_jit_hex(h, 32, hex);
	return !strcmp(hex, want);
}

static void test_sha256(void)
{
	static const char *two =
		"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	struct asam_sha256 s;
	uint8_t h[32], h2[32];
	char *mil = malloc(1000000);
	int i;

	ksft_test_result(sha_is("", 0,
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") &&
			 sha_is("abc", 3,
		"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") &&
			 sha_is(two, strlen(two),
		"248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
			 "SHA-256 of '', 'abc', the 448-bit message\n");
	memset(mil, 'a', 1000000);
	ksft_test_result(sha_is(mil, 1000000,
		"cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
			 "SHA-256 of a million 'a'\n");
	/* streaming in odd pieces gives the one-shot digest */
	asam_sha256_init(&s);
	for (i = 0; i < 1000000; i += 997)
		asam_sha256_update(&s, mil + i, min_t(int, 997, 1000000 - i));
	asam_sha256_final(&s, h);
	asam_sha256(mil, 1000000, h2);
	ksft_test_result(!memcmp(h, h2, 32), "SHA-256 streaming == one-shot\n");
	free(mil);
}

static void make(struct asam_jit_spec *s, int order)
{
	static const char *const n[] = { "PATTERN", "HEAD_DIM", "DTYPE",
					 "CAUSAL", "GATE", "TILE_M", "TILE_N",
					 "SEQ_BUCKET", "WINDOW" };
	static const int64_t v[] = { 2, 128, 1, 1, 0, 128, 64, 8192, 256 };
	int i, k = ARRAY_SIZE(n);

	asam_jit_spec_init(s, "selftest", 90);
	for (i = 0; i < k; i++) {
		int j = order ? k - 1 - i : i;

		asam_jit_spec_set(s, n[j], v[j]);
	}
}

static void test_canon(void)
{
	struct asam_jit_spec a, b, c;
	char ca[1024], cb[1024], pre[4096];
	uint8_t ka[32], kb[32], kc[32];
	int i, bad = 0, n;
	int64_t v;

	make(&a, 0);
	make(&b, 1);
	asam_jit_spec_canon(&a, ca, sizeof(ca));
	asam_jit_spec_canon(&b, cb, sizeof(cb));
	ksft_test_result(!memcmp(&a, &b, sizeof(a)) && !strcmp(ca, cb) &&
			 asam_jit_spec_hash(&a) == asam_jit_spec_hash(&b) &&
			 !strcmp(ca, "family=selftest;arch=90;CAUSAL=1;DTYPE=1;GATE=0;HEAD_DIM=128;PATTERN=2;SEQ_BUCKET=8192;TILE_M=128;TILE_N=64;WINDOW=256;"),
			 "set order does not change the spec or its text\n");
	ksft_test_result(!asam_jit_spec_parse(&c, ca) &&
			 !memcmp(&a, &c, sizeof(a)),
			 "canonical text parses back to the same spec\n");
	asam_jit_spec_set(&c, "HEAD_DIM", 64);
	ksft_test_result(!asam_jit_spec_get(&c, "HEAD_DIM", &v) && v == 64 &&
			 c.ndefs == a.ndefs,
			 "setting a define again replaces it\n");
	n = asam_jit_spec_preamble(&a, pre, sizeof(pre));
	ksft_test_result(n > 0 &&
			 strstr(pre, "constexpr long long HEAD_DIM = 128LL;") &&
			 strstr(pre, "#define ASAM_HEAD_DIM 128LL"),
			 "preamble has constexpr and macro per define\n");
	ksft_test_result(asam_jit_spec_set(&c, "bad-name", 1) == -EINVAL &&
			 asam_jit_spec_init(&c, "../x", 90) == -EINVAL &&
			 asam_jit_spec_init(&c, "selftest", 7) == -EINVAL,
			 "bad names and arch are refused\n");

	if (!have_nvrtc()) {
		ksft_test_result_skip("keys need NVRTC (its version is keyed)\n");
		ksft_test_result_skip("keys need NVRTC\n");
		return;
	}
	asam_jit_key(&a, ka);
	asam_jit_key(&b, kb);
	ksft_test_result(!memcmp(ka, kb, 32), "equal inputs, equal keys\n");

	/* each field changed alone must change the key */
	for (i = -3; i < a.ndefs; i++) {
		c = a;
		if (i == -3)
			c.arch = 80;
		else if (i == -2)
			asam_jit_spec_set(&c, "EXTRA", 0);
		else if (i == -1)
			asam_jit_set_driver_version(13000);
		else
			c.def[i].value++;
		asam_jit_key(&c, kc);
		asam_jit_set_driver_version(0);
		if (!memcmp(ka, kc, 32)) {
			ksft_print_msg("field %d did not change the key\n", i);
			bad++;
		}
	}
	ksft_test_result(!bad, "every changed field changes the key (%d fields)\n",
			 a.ndefs + 3);
}

static void test_bucket(void)
{
	ksft_test_result(asam_jit_seq_bucket(1) == 128 &&
			 asam_jit_seq_bucket(128) == 128 &&
			 asam_jit_seq_bucket(129) == 256 &&
			 asam_jit_seq_bucket(4096) == 4096 &&
			 asam_jit_seq_bucket(4097) == 8192 &&
			 asam_jit_seq_bucket(0) == -EINVAL,
			 "sequence bucket: next power of two, at least 128\n");
}

int main(void)
{
	ksft_print_header();
	ksft_set_plan(3 + 7 + 1);
	test_sha256();
	test_canon();
	test_bucket();
	ksft_finished();
}
