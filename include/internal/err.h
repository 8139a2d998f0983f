/* SPDX-License-Identifier: MIT */
/*
 * Errors inside the library: -errno codes, ERR_PTR for functions that
 * return a pointer, and asam_err() which records the message that the
 * public asam_last_error() returns.
 */
#ifndef ASAM_INTERNAL_ERR_H
#define ASAM_INTERNAL_ERR_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include <internal/compiler.h>

#define MAX_ERRNO 4095

static inline void *ERR_PTR(long err)
{
	return (void *)err;
}

static inline long PTR_ERR(const void *p)
{
	return (long)p;
}

static inline bool IS_ERR(const void *p)
{
	return (uintptr_t)p >= (uintptr_t)-MAX_ERRNO;
}

static inline bool IS_ERR_OR_NULL(const void *p)
{
	return !p || IS_ERR(p);
}

/*
 * asam_err() - record "fmt..." as this thread's last error and return @err.
 * Callers write "return asam_err(-EINVAL, "q: dtype %s ...", ...);" so that
 * the code and its message can never drift apart.  The message is also
 * logged at debug level.
 */
int asam_err(int err, const char *fmt, ...) __printf(2, 3);

/* asam_err_prefix() - prepend "fn: " to the current message (entry points) */
void asam_err_prefix(const char *fn);

/* asam_err_clear() - forget the last message (start of an entry point) */
void asam_err_clear(void);

#endif
