/* SPDX-License-Identifier: MIT */
#ifndef ASAM_INTERNAL_LOG_H
#define ASAM_INTERNAL_LOG_H

#include <asam/asam.h>
#include <internal/compiler.h>

/*
 * Logging goes to stderr with a "libasam: " prefix.  The level comes from
 * ASAM_LOG_LEVEL (0-3, or err/warn/info/debug), else the context option,
 * else CONFIG_ASAM_LOG_DEFAULT.
 */
void asam_log(enum asam_log_level lvl, const char *fmt, ...) __printf(2, 3);
int asam_log_level(void);
void asam_log_set_level(int lvl);

#define pr_err(...)	asam_log(ASAM_LOG_ERR, __VA_ARGS__)
#define pr_warn(...)	asam_log(ASAM_LOG_WARN, __VA_ARGS__)
#define pr_info(...)	asam_log(ASAM_LOG_INFO, __VA_ARGS__)
#define pr_debug(...)	asam_log(ASAM_LOG_DEBUG, __VA_ARGS__)

/* pr_warn_once() - warn once per call site (degradations, e.g. no libnuma) */
#define pr_warn_once(...) do {						\
	static int __warned;						\
	if (!__atomic_exchange_n(&__warned, 1, __ATOMIC_RELAXED))	\
		pr_warn(__VA_ARGS__);					\
} while (0)

#endif
