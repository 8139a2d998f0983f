/* SPDX-License-Identifier: MIT */
#ifndef ASAM_INTERNAL_COMPILER_H
#define ASAM_INTERNAL_COMPILER_H

#include <stddef.h>

#define __public	__attribute__((visibility("default")))
#define __printf(a, b)	__attribute__((format(printf, a, b)))
#define __maybe_unused	__attribute__((unused))
#define likely(x)	__builtin_expect(!!(x), 1)
#define unlikely(x)	__builtin_expect(!!(x), 0)

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#define min_t(t, a, b)	((t)(a) < (t)(b) ? (t)(a) : (t)(b))
#define max_t(t, a, b)	((t)(a) > (t)(b) ? (t)(a) : (t)(b))
#define DIV_ROUND_UP(n, d) (((n) + (d) - 1) / (d))

#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

/*
 * OPTS_VALID(opts, type, field): the caller's struct (whose first member is
 * size_t sz) is large enough to hold @field.  Older callers pass a smaller
 * sz and get the default for the fields they do not know.
 */
#define OPTS_HAS(opts, type, field) \
	((opts) && (opts)->sz >= offsetof(type, field) + sizeof((opts)->field))
#define OPTS_GET(opts, type, field, def) \
	(OPTS_HAS(opts, type, field) ? (opts)->field : (def))

#endif
