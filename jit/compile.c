// SPDX-License-Identifier: MIT
/*
 * From a spec to an image: NVRTC options, the disk key, the compile itself
 * and ASAM_JIT_DUMP.  The key covers everything that can change the bytes
 * NVRTC emits or whether the driver can load them: every embedded source
 * (not only the family's own file: headers are shared), the build's
 * .config, the canonical spec, the option list, and the NVRTC and driver
 * versions.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <internal/compiler.h>
#include <internal/err.h>
#include <internal/jit.h>
#include <internal/log.h>

#include "nvrtc-api.h"

#define KEY_TAG "asam-jit-key/1"

static int driver_version;

void asam_jit_set_driver_version(int version)
{
	__atomic_store_n(&driver_version, version, __ATOMIC_RELEASE);
}

int asam_jit_driver_version(void)
{
	return __atomic_load_n(&driver_version, __ATOMIC_ACQUIRE);
}

static uint8_t tree_digest[32];
static pthread_once_t tree_once = PTHREAD_ONCE_INIT;

/* One hash over every embedded source and the .config, once a process. */
static void tree_digest_init(void)
{
	struct asam_sha256 s;
	uint64_t len;
	int i;

	asam_sha256_init(&s);
	for (i = 0; i < asam_jit_nsources; i++) {
		const struct asam_jit_source *src = &asam_jit_sources[i];

		len = src->len;
		asam_sha256_update(&s, src->name, strlen(src->name) + 1);
		asam_sha256_update(&s, &len, sizeof(len));
		asam_sha256_update(&s, src->text, src->len);
	}
	asam_sha256_update(&s, asam_jit_config_text,
			   strlen(asam_jit_config_text));
	asam_sha256_final(&s, tree_digest);
}

/* The highest PTX target this NVRTC knows that is not above @arch. */
static int ptx_target(const struct asam_nvrtc *nv, int arch)
{
	int i, best = 0;

	for (i = 0; i < nv->narchs; i++)
		if (nv->archs[i] <= arch && nv->archs[i] > best)
			best = nv->archs[i];
	return best;
}

int asam_jit_options(const struct asam_jit_spec *spec, bool *cubin,
		     const char **opts, int max, char *store, size_t len)
{
	const struct asam_jit_family *fam;
	const struct asam_nvrtc *nv;
	int n = 0, target;

	fam = asam_jit_family_find(spec->family);
	if (!fam)
		return asam_err(-ENOENT, "jit: no kernel family '%s'",
				spec->family);
	nv = asam_nvrtc_get();
	if (IS_ERR(nv))
		return PTR_ERR(nv);
	if (fam->hopper_only && spec->arch != 90)
		return asam_err(-EOPNOTSUPP,
				"jit: family %s needs sm_90a, not sm_%d",
				fam->name, spec->arch);
	if (max < 3)
		return -ENOSPC;
	if (asam_jit_nvrtc_has_sass(spec->arch)) {
		/* SASS: no PTX JIT in the driver at load time */
		*cubin = true;
		snprintf(store, len, "--gpu-architecture=sm_%d%s", spec->arch,
			 fam->hopper_only ? "a" : "");
	} else {
		/* PTX for the newest target at or below the device's */
		target = fam->hopper_only ? 0 : ptx_target(nv, spec->arch);
		if (!target)
			return asam_err(-EOPNOTSUPP,
					"jit: NVRTC %d.%d cannot target sm_%d",
					nv->major, nv->minor, spec->arch);
		*cubin = false;
		snprintf(store, len, "--gpu-architecture=compute_%d", target);
	}
	opts[n++] = store;
	opts[n++] = "-std=c++17";
	opts[n++] = "--fmad=true";
	return n;
}

int asam_jit_key(const struct asam_jit_spec *spec,
		 uint8_t key[ASAM_JIT_KEY_LEN])
{
	const char *opts[16];
	char store[64], canon[4096], ver[64];
	struct asam_sha256 s;
	bool cubin;
	int i, n, nopt;
	int major, minor;

	nopt = asam_jit_options(spec, &cubin, opts, ARRAY_SIZE(opts), store,
				sizeof(store));
	if (nopt < 0)
		return nopt;
	n = asam_jit_spec_canon(spec, canon, sizeof(canon));
	if (n < 0)
		return asam_err(n, "jit: spec too long");
	asam_jit_nvrtc_version(&major, &minor);
	snprintf(ver, sizeof(ver), "nvrtc=%d.%d;driver=%d;cubin=%d;", major,
		 minor, asam_jit_driver_version(), cubin);
	pthread_once(&tree_once, tree_digest_init);

	asam_sha256_init(&s);
	asam_sha256_update(&s, KEY_TAG, sizeof(KEY_TAG));
	asam_sha256_update(&s, tree_digest, sizeof(tree_digest));
	asam_sha256_update(&s, canon, n + 1);
	for (i = 0; i < nopt; i++)
		asam_sha256_update(&s, opts[i], strlen(opts[i]) + 1);
	asam_sha256_update(&s, ver, strlen(ver) + 1);
	asam_sha256_final(&s, key);
	return 0;
}

static void dump_file(const char *dir, const char *base, const char *ext,
		      const char *text)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s%s", dir, base, ext);
	f = fopen(path, "w");
	if (!f) {
		pr_warn("jit: ASAM_JIT_DUMP: cannot write %s", path);
		return;
	}
	fputs(text, f);
	fclose(f);
}

/* ASAM_JIT_DUMP=dir: source, options and log of a failed compile. */
static void dump(const struct asam_jit_spec *spec, const char *src,
		 const char **opts, int nopt, const char *log)
{
	const char *dir = getenv("ASAM_JIT_DUMP");
	char base[128], optbuf[1024] = "";
	uint8_t h[32];
	char hex[65];
	int i;

	if (!dir || !*dir)
		return;
	mkdir(dir, 0755);
	asam_sha256(src, strlen(src), h);
	asam_jit_hex(h, 6, hex);
	snprintf(base, sizeof(base), "%s-sm%d-%s", spec->family, spec->arch,
		 hex);
	for (i = 0; i < nopt; i++) {
		strncat(optbuf, opts[i], sizeof(optbuf) - strlen(optbuf) - 2);
		strcat(optbuf, "\n");
	}
	dump_file(dir, base, ".cu", src);
	dump_file(dir, base, ".options", optbuf);
	dump_file(dir, base, ".log", log ? log : "");
	pr_err("jit: compile failure dumped to %s/%s.*", dir, base);
}

static char *program_log(const struct asam_nvrtc *nv, nvrtcProgram prog)
{
	size_t n = 0;
	char *log;

	if (nv->nvrtcGetProgramLogSize(prog, &n) != NVRTC_SUCCESS || !n)
		return NULL;
	log = malloc(n + 1);
	if (!log)
		return NULL;
	if (nv->nvrtcGetProgramLog(prog, log) != NVRTC_SUCCESS)
		log[0] = '\0';
	log[n] = '\0';
	return log;
}

int asam_jit_compile(const struct asam_jit_spec *spec, void **image,
		     size_t *size, bool *cubin)
{
	const char *hdr_text[256], *hdr_name[256], *opts[16];
	const struct asam_jit_family *fam;
	const struct asam_nvrtc *nv;
	char store[64], *src = NULL, *log = NULL, *out = NULL;
	nvrtcProgram prog = NULL;
	nvrtcResult r;
	size_t srclen, n = 0;
	int i, nopt, off, err;

	nopt = asam_jit_options(spec, cubin, opts, ARRAY_SIZE(opts), store,
				sizeof(store));
	if (nopt < 0)
		return nopt;
	nv = asam_nvrtc_get();
	fam = asam_jit_family_find(spec->family);
	if (!asam_jit_source_find(fam->source))
		return asam_err(-ENOENT, "jit: source %s is not embedded",
				fam->source);
	if (asam_jit_nsources > (int)ARRAY_SIZE(hdr_text))
		return asam_err(-E2BIG, "jit: too many embedded sources");

	srclen = 64 * 1024;
	src = malloc(srclen);
	if (!src)
		return asam_err(-ENOMEM, "jit: out of memory");
	off = asam_jit_spec_preamble(spec, src, srclen);
	if (off < 0 || snprintf(src + off, srclen - off, "#include \"%s\"\n",
				fam->source) >= (int)(srclen - off)) {
		err = asam_err(-ENOSPC, "jit: preamble too long");
		goto out;
	}
	for (i = 0; i < asam_jit_nsources; i++) {
		hdr_name[i] = asam_jit_sources[i].name;
		hdr_text[i] = asam_jit_sources[i].text;
	}

	r = nv->nvrtcCreateProgram(&prog, src, spec->family, asam_jit_nsources,
				   hdr_text, hdr_name);
	if (r != NVRTC_SUCCESS) {
		err = asam_err(-ENOMEM, "jit: nvrtcCreateProgram: %s",
			       nv->nvrtcGetErrorString(r));
		prog = NULL;
		goto out;
	}
	r = nv->nvrtcCompileProgram(prog, nopt, opts);
	if (r != NVRTC_SUCCESS) {
		log = program_log(nv, prog);
		dump(spec, src, opts, nopt, log);
		pr_debug("jit: NVRTC log for %s:\n%s", spec->family,
			 log ? log : "");
		err = asam_err(-ENOEXEC, "jit: %s for sm_%d failed to compile (%s): %s",
			       spec->family, spec->arch,
			       nv->nvrtcGetErrorString(r), log ? log : "");
		goto out;
	}
	r = *cubin ? nv->nvrtcGetCUBINSize(prog, &n) :
		     nv->nvrtcGetPTXSize(prog, &n);
	if (r == NVRTC_SUCCESS && n) {
		out = malloc(n);
		if (!out) {
			err = asam_err(-ENOMEM, "jit: out of memory");
			goto out;
		}
		r = *cubin ? nv->nvrtcGetCUBIN(prog, out) :
			     nv->nvrtcGetPTX(prog, out);
	}
	if (r != NVRTC_SUCCESS || !n) {
		free(out);
		out = NULL;
		err = asam_err(-ENOEXEC, "jit: %s: no %s from NVRTC: %s",
			       spec->family, *cubin ? "cubin" : "PTX",
			       nv->nvrtcGetErrorString(r));
		goto out;
	}
	*image = out;
	*size = n;
	err = 0;
out:
	if (prog)
		nv->nvrtcDestroyProgram(&prog);
	free(log);
	free(src);
	return err;
}
