// SPDX-License-Identifier: MIT
/*
 * The kernel families.  Adding one is an entry in asam_jit_families[] and
 * its variants() function, which enumerates every spec the build's .config
 * enables (asam-cache precompile and the selftests compile exactly those).
 */
#include <string.h>

#include <internal/compiler.h>
#include <internal/jit.h>
#include <internal/kconfig.h>

/* The storage dtypes the .config enables, as ASAM_DT_* numbers. */
static int enabled_dtypes(int *dt)
{
	int n = 0;

	dt[n++] = 0;
	if (IS_ENABLED(CONFIG_DTYPE_FP16))
		dt[n++] = 1;
	if (IS_ENABLED(CONFIG_DTYPE_BF16))
		dt[n++] = 2;
	return n;
}

static int selftest_variants(const struct asam_jit_variant_ctx *vc, int arch,
			     asam_jit_variant_cb cb, void *arg)
{
	static const int blocks[] = { 128, 256 };
	struct asam_jit_spec spec;
	int dt[3], ndt, i, j, err;

	ndt = enabled_dtypes(dt);
	for (i = 0; i < ndt; i++) {
		for (j = 0; j < (int)ARRAY_SIZE(blocks); j++) {
			err = asam_jit_spec_init(&spec, vc->family->name, arch);
			err = err ?: asam_jit_spec_set(&spec, "DTYPE", dt[i]);
			err = err ?: asam_jit_spec_set(&spec, "BLOCK",
						       blocks[j]);
			err = err ?: asam_jit_spec_set(&spec, "SEQ_BUCKET",
						       4096);
			err = err ?: cb(&spec, arg);
			if (err)
				return err;
		}
	}
	return 0;
}

const struct asam_jit_family asam_jit_families[] = {
	{
		.name = "selftest",
		.source = "selftest.cu",
		.entries = { "asam_selftest_axpy", "asam_selftest_rowsum" },
		.hopper_only = false,
		.variants = selftest_variants,
	},
	/* attention families are appended here */
};

const int asam_jit_nfamilies = ARRAY_SIZE(asam_jit_families);

const struct asam_jit_family *asam_jit_family_find(const char *name)
{
	int i;

	for (i = 0; i < asam_jit_nfamilies; i++)
		if (!strcmp(asam_jit_families[i].name, name))
			return &asam_jit_families[i];
	return NULL;
}

int asam_jit_variants(const struct asam_jit_family *fam, int arch,
		      asam_jit_variant_cb cb, void *arg)
{
	struct asam_jit_variant_ctx vc = { .family = fam };

	if (fam->hopper_only && arch != 90)
		return 0;
	return fam->variants(&vc, arch, cb, arg);
}

const struct asam_jit_source *asam_jit_source_find(const char *name)
{
	int i;

	for (i = 0; i < asam_jit_nsources; i++)
		if (!strcmp(asam_jit_sources[i].name, name))
			return &asam_jit_sources[i];
	return NULL;
}
