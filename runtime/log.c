// SPDX-License-Identifier: MIT
/*
 * Logging to stderr.  The level is read once from ASAM_LOG_LEVEL (a digit
 * or err/warn/info/debug); a context option may change it later.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <internal/log.h>

static int log_level = -1;

static int parse_level(const char *s)
{
	static const char *const names[] = { "err", "warn", "info", "debug" };
	unsigned int i;

	if (s[0] >= '0' && s[0] <= '3' && !s[1])
		return s[0] - '0';
	for (i = 0; i < ARRAY_SIZE(names); i++)
		if (!strcmp(s, names[i]))
			return i;
	return -1;
}

int asam_log_level(void)
{
	int lvl = __atomic_load_n(&log_level, __ATOMIC_RELAXED);

	if (lvl < 0) {
		const char *env = getenv("ASAM_LOG_LEVEL");

		lvl = env ? parse_level(env) : -1;
		if (lvl < 0)
			lvl = CONFIG_ASAM_LOG_DEFAULT;
		__atomic_store_n(&log_level, lvl, __ATOMIC_RELAXED);
	}
	return lvl;
}

void asam_log_set_level(int lvl)
{
	if (lvl >= ASAM_LOG_ERR && lvl <= ASAM_LOG_DEBUG)
		__atomic_store_n(&log_level, lvl, __ATOMIC_RELAXED);
}

void asam_log(enum asam_log_level lvl, const char *fmt, ...)
{
	static const char *const tag[] = { "error", "warning", "info",
					   "debug" };
	char buf[1024];
	va_list ap;

	if ((int)lvl > asam_log_level())
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/* one fprintf so that lines from several threads do not interleave */
	fprintf(stderr, "libasam: %s: %s\n", tag[lvl], buf);
}
