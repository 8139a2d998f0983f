/* SPDX-License-Identifier: MIT */
/*
 * Our own kselftest.h: the kernel's function names and TAP 13 output,
 * written for libasam (the kernel's file is GPL-2.0).
 *
 *	ksft_print_header();
 *	ksft_set_plan(n);
 *	ksft_test_result(cond, "name %d\n", i);
 *	ksft_test_result_skip("why\n");
 *	ksft_finished();	exits 0 pass, 1 fail, 4 all skipped
 */
#ifndef ASAM_KSELFTEST_H
#define ASAM_KSELFTEST_H

#include <stdbool.h>

#define KSFT_PASS 0
#define KSFT_FAIL 1
#define KSFT_SKIP 4

void ksft_print_header(void);
void ksft_set_plan(unsigned int plan);
void ksft_print_msg(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
void ksft_test_result_pass(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
void ksft_test_result_fail(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
void ksft_test_result_skip(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
void ksft_test_result(bool ok, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
unsigned int ksft_get_fail_cnt(void);
void ksft_exit_skip(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));
void ksft_finished(void) __attribute__((noreturn));

#endif
