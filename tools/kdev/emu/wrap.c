// SPDX-License-Identifier: MIT
/*
 * kdev emu: link a test program with -Wl,--wrap=asam_jit_get
 * -Wl,--wrap=asam_jit_get_nocompile and this file, and the library's JIT
 * hands the fake driver the specialisation as text instead of a cubin.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <internal/jit.h>

int __wrap_asam_jit_get(const struct asam_jit_spec *spec,
			const struct asam_jit_image **out)
{
	struct asam_jit_image *img = calloc(1, sizeof(*img));
	const struct asam_jit_family *fam = asam_jit_family_find(spec->family);
	char *t = malloc(8192);
	int n, i;

	n = snprintf(t, 8192, "EMU\n%s %s\n", spec->family, fam->source);
	for (i = 0; i < spec->ndefs; i++)
		n += snprintf(t + n, 8192 - n, "%s %lld\n", spec->def[i].name,
			      (long long)spec->def[i].value);
	img->data = t;
	img->size = n + 1;
	*out = img;
	return 0;
}

int __wrap_asam_jit_get_nocompile(const struct asam_jit_spec *spec,
				  const struct asam_jit_image **out)
{
	return __wrap_asam_jit_get(spec, out);
}
