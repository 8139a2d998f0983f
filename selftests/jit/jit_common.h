/* SPDX-License-Identifier: MIT */
/* Helpers shared by the JIT selftests. */
#ifndef SELFTESTS_JIT_COMMON_H
#define SELFTESTS_JIT_COMMON_H

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <internal/compiler.h>
#include <internal/jit.h>

static inline double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The image is what NVRTC makes for the family: an ELF cubin or PTX. */
static inline bool image_ok(const struct asam_jit_image *img,
			    const struct asam_jit_family *fam)
{
	char pat[128];
	int i;

	if (!img->data || img->size < 64)
		return false;
	if (img->cubin && memcmp(img->data, "\177ELF", 4))
		return false;
	if (!img->cubin &&
	    (((const char *)img->data)[img->size - 1] != '\0' ||
	     !strstr(img->data, ".target sm_")))
		return false;
	for (i = 0; fam->entries[i]; i++) {
		snprintf(pat, sizeof(pat), img->cubin ? "%s" : ".entry %s",
			 fam->entries[i]);
		if (!memmem(img->data, img->size, pat, strlen(pat)))
			return false;
	}
	return true;
}

static inline int selftest_spec(struct asam_jit_spec *s, int arch, int dt,
				int block)
{
	return asam_jit_spec_init(s, "selftest", arch) ?:
	       asam_jit_spec_set(s, "DTYPE", dt) ?:
	       asam_jit_spec_set(s, "BLOCK", block) ?:
	       asam_jit_spec_set(s, "SEQ_BUCKET", 4096);
}

static inline bool have_nvrtc(void)
{
	int ma, mi;

	return !asam_jit_nvrtc_version(&ma, &mi);
}

#endif
