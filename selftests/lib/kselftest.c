// SPDX-License-Identifier: MIT
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "kselftest.h"

static unsigned int n_pass, n_fail, n_skip, n_plan;

static unsigned int n_done(void)
{
	return n_pass + n_fail + n_skip;
}

void ksft_print_header(void)
{
	printf("TAP version 13\n");
	fflush(stdout);
}

void ksft_set_plan(unsigned int plan)
{
	n_plan = plan;
	printf("1..%u\n", plan);
}

void ksft_print_msg(const char *fmt, ...)
{
	va_list ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fflush(stdout);
}

static void result(const char *status, const char *directive,
		   const char *fmt, va_list ap)
{
	printf("%s %u ", status, n_done());
	if (directive)
		printf("# %s ", directive);
	vprintf(fmt, ap);
	fflush(stdout);
}

void ksft_test_result_pass(const char *fmt, ...)
{
	va_list ap;

	n_pass++;
	va_start(ap, fmt);
	result("ok", NULL, fmt, ap);
	va_end(ap);
}

void ksft_test_result_fail(const char *fmt, ...)
{
	va_list ap;

	n_fail++;
	va_start(ap, fmt);
	result("not ok", NULL, fmt, ap);
	va_end(ap);
}

void ksft_test_result_skip(const char *fmt, ...)
{
	va_list ap;

	n_skip++;
	va_start(ap, fmt);
	result("ok", "SKIP", fmt, ap);
	va_end(ap);
}

void ksft_test_result(bool ok, const char *fmt, ...)
{
	va_list ap;

	if (ok)
		n_pass++;
	else
		n_fail++;
	va_start(ap, fmt);
	result(ok ? "ok" : "not ok", NULL, fmt, ap);
	va_end(ap);
}

unsigned int ksft_get_fail_cnt(void)
{
	return n_fail;
}

void ksft_exit_skip(const char *fmt, ...)
{
	va_list ap;

	if (!n_plan && !n_done())
		printf("1..0 # SKIP ");
	else
		printf("# SKIP ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fflush(stdout);
	exit(KSFT_SKIP);
}

void ksft_finished(void)
{
	if (n_plan && n_done() != n_plan) {
		printf("# planned %u tests but ran %u\n", n_plan, n_done());
		n_fail++;
	}
	printf("# Totals: pass:%u fail:%u xfail:0 xpass:0 skip:%u error:0\n",
	       n_pass, n_fail, n_skip);
	fflush(stdout);
	if (n_fail)
		exit(KSFT_FAIL);
	exit(n_pass ? KSFT_PASS : KSFT_SKIP);
}
