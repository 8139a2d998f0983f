// SPDX-License-Identifier: MIT
/*
 * libnuma through dlopen: the library links neither libnuma nor its
 * header's inline helpers, and loads where libnuma is missing.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include <internal/err.h>
#include <internal/log.h>
#include <internal/topology.h>

static struct asam_libnuma numa_lib;
static int numa_lib_err;
static char numa_lib_msg[256];
static pthread_once_t numa_lib_once = PTHREAD_ONCE_INIT;

static void libnuma_load(void)
{
	const char *path = getenv("ASAM_LIBNUMA");
	struct asam_libnuma *l = &numa_lib;

	if (!path || !*path)
		path = "libnuma.so.1";
	l->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!l->handle) {
		numa_lib_err = -ENOENT;
		snprintf(numa_lib_msg, sizeof(numa_lib_msg),
			 "libnuma: cannot open %s: %s", path, dlerror());
		return;
	}
#define SYM(n) do {							\
	*(void **)&l->n = dlsym(l->handle, #n);				\
	if (!l->n) {							\
		numa_lib_err = -ENOENT;					\
		snprintf(numa_lib_msg, sizeof(numa_lib_msg),		\
			 "libnuma: %s has no %s", path, #n);		\
		goto err_close;						\
	}								\
} while (0)
	SYM(numa_available);
	SYM(numa_max_node);
	SYM(numa_num_configured_cpus);
	SYM(numa_node_of_cpu);
	SYM(numa_node_size64);
	SYM(numa_alloc_onnode);
	SYM(numa_free);
#undef SYM
	/* -1: the kernel has no NUMA support (or it is switched off) */
	if (l->numa_available() < 0) {
		numa_lib_err = -ENODEV;
		snprintf(numa_lib_msg, sizeof(numa_lib_msg),
			 "libnuma: numa_available() says the kernel has no NUMA support");
		goto err_close;
	}
	return;

err_close:
	dlclose(l->handle);
	l->handle = NULL;
}

const struct asam_libnuma *asam_libnuma_get(void)
{
	pthread_once(&numa_lib_once, libnuma_load);
	if (numa_lib_err)
		return ERR_PTR(asam_err(numa_lib_err, "%s", numa_lib_msg));
	return &numa_lib;
}
