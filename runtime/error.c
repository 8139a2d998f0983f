// SPDX-License-Identifier: MIT
/*
 * Error codes and this thread's last message.  The message buffer is
 * thread-local so that concurrent callers never see each other's errors.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <asam/asam.h>
#include <internal/err.h>
#include <internal/log.h>

#define ERRMSG_LEN 512

static __thread char last_error[ERRMSG_LEN];

int asam_err(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
	pr_debug("error %d (%s): %s", err, asam_strerror(err), last_error);
	return err;
}

void asam_err_prefix(const char *fn)
{
	char tmp[ERRMSG_LEN + 64];
	size_t n = strlen(fn);

	if (!last_error[0] || !strncmp(last_error, fn, n))
		return;
	snprintf(tmp, sizeof(tmp), "%.60s: %s", fn, last_error);
	memcpy(last_error, tmp, ERRMSG_LEN - 1);
	last_error[ERRMSG_LEN - 1] = '\0';
}

void asam_err_clear(void)
{
	last_error[0] = '\0';
}

__public const char *asam_last_error(void)
{
	return last_error;
}

__public const char *asam_strerror(int err)
{
	if (err < 0)
		err = -err;
	switch (err) {
	case 0:
		return "success";
	case EINVAL:
		return "invalid argument";
	case EOPNOTSUPP:
		return "not supported by this build or backend";
	case ENODEV:
		return "no such device";
	case ENOENT:
		return "not found";
	case ENOMEM:
		return "out of memory";
	case EOVERFLOW:
		return "size overflows";
	case ENOSPC:
		return "no space left";
	case EIO:
		return "input/output error";
	case EBUSY:
		return "device or resource busy";
	case EAGAIN:
		return "try again";
	case ENOEXEC:
		return "kernel compile or load failed";
	case ETIMEDOUT:
		return "timed out";
	case EPERM:
	case EACCES:
		return "permission denied";
	default:
		return strerror(err);
	}
}
