/* SPDX-License-Identifier: MIT */
/*
 * Backends.  Each is a static const struct asam_backend_ops with designated
 * initialisers, named asam_backend_<name>_ops; the build lists the enabled
 * ones in include/generated/backends.h, in probe order.  The core calls the
 * ops only through the wrappers below, which handle optional members.
 */
#ifndef ASAM_INTERNAL_BACKEND_H
#define ASAM_INTERNAL_BACKEND_H

#include <errno.h>
#include <stddef.h>

#include <internal/problem.h>

#define ASAM_BACKEND_API 1

struct asam_ctx;
struct asam_backend;

struct asam_backend_ops {
	const char *name;
	int api_version;
	DLDeviceType dev_type;		/* the tensors it serves */

	/* 0: usable; -ENODEV etc.: skipped (say why at info level) */
	int (*probe)(struct asam_backend *be);
	void (*remove)(struct asam_backend *be);		/* optional */

	/*
	 * 0 when this backend computes @p; otherwise an error with an
	 * asam_err() message, and the core tries the next backend.
	 */
	int (*supports)(struct asam_backend *be, const struct asam_problem *p);
	int (*fwd)(struct asam_backend *be, const struct asam_problem *p);
	int (*bwd)(struct asam_backend *be, const struct asam_problem *p);
	int (*workspace_size)(struct asam_backend *be,		/* optional */
			      const struct asam_problem *p, size_t *bytes);
	int (*cluster_update)(struct asam_backend *be,		/* optional */
			      const struct asam_problem *p, float decay);
};

struct asam_backend {
	const struct asam_backend_ops *ops;
	struct asam_ctx *ctx;
	void *priv;
};

#define DECLARE_BACKEND(n) extern const struct asam_backend_ops asam_backend_##n##_ops;
#include <generated/backends.h>
ASAM_FOR_EACH_BACKEND(DECLARE_BACKEND)
#undef DECLARE_BACKEND

static inline int backend_supports(struct asam_backend *be,
				   const struct asam_problem *p)
{
	return be->ops->supports ? be->ops->supports(be, p) : 0;
}

static inline int backend_workspace_size(struct asam_backend *be,
					 const struct asam_problem *p,
					 size_t *bytes)
{
	*bytes = 0;
	return be->ops->workspace_size ? be->ops->workspace_size(be, p, bytes)
				       : 0;
}

static inline int backend_cluster_update(struct asam_backend *be,
					 const struct asam_problem *p,
					 float decay)
{
	return be->ops->cluster_update ? be->ops->cluster_update(be, p, decay)
				       : -EOPNOTSUPP;
}

#endif
