// SPDX-License-Identifier: MIT
/*
 * Host buffers: placed on the node asked for (checked page by page with
 * move_pages(2), which reports where each page really is), usable, and
 * degrading cleanly when libnuma or the driver is missing (a child process
 * with ASAM_LIBNUMA pointing nowhere, since the library is opened once).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <asam/asam.h>
#include <internal/err.h>
#include <internal/hostmem.h>
#include <internal/topology.h>

#include "../lib/kselftest.h"

/* how many pages of @b sit on @node, asked of the kernel */
static long pages_on(const struct asam_hostbuf *b, int node)
{
	long pg = sysconf(_SC_PAGESIZE), n = b->mapped / pg, i, on = 0;
	void **pages = calloc(n, sizeof(*pages));
	int *status = calloc(n, sizeof(*status));

	if (!pages || !status) {
		free(pages);
		free(status);
		return -1;
	}
	for (i = 0; i < n; i++)
		pages[i] = (char *)b->ptr + i * pg;
	if (syscall(SYS_move_pages, 0, n, pages, NULL, status, 0)) {
		on = -1;
	} else {
		for (i = 0; i < n; i++)
			on += status[i] == node;
	}
	free(pages);
	free(status);
	return on;
}

static bool fill_and_check(struct asam_hostbuf *b)
{
	unsigned char *p = b->ptr;
	size_t i;

	for (i = 0; i < b->size; i++)
		p[i] = (unsigned char)(i * 131 + 7);
	for (i = 0; i < b->size; i++)
		if (p[i] != (unsigned char)(i * 131 + 7))
			return false;
	return true;
}

/* the child: no libnuma; the buffer must still work, just not on_node */
static int child_without_libnuma(void)
{
	struct asam_hostbuf b;

	setenv("ASAM_LIBNUMA", "/nonexistent/libnuma.so.1", 1);
	if (asam_hostmem_alloc(&b, 1 << 20, 0, -1))
		return 1;
	if (b.on_node || !fill_and_check(&b))
		return 2;
	asam_hostmem_free(&b);
	return 0;
}

int main(void)
{
	const size_t size = (4 << 20) + 123;
	struct asam_hostbuf b;
	long pg = sysconf(_SC_PAGESIZE), on;
	int ret, st;
	pid_t pid;

	ksft_print_header();
	ksft_set_plan(6);

	/* first, before this process opens libnuma: the child inherits it */
	fflush(stdout);
	pid = fork();
	if (pid == 0)
		_exit(child_without_libnuma());
	st = -1;
	waitpid(pid, &st, 0);
	ksft_test_result(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			 "without libnuma: a buffer on any node, still usable (child status %d)\n",
			 st);

	ret = asam_hostmem_alloc(&b, size, 0, -1);
	ksft_test_result(!ret && b.ptr && b.mapped % pg == 0 &&
			 b.mapped >= size && !b.pinned && fill_and_check(&b),
			 "node 0, unpinned: %zu bytes usable\n", size);
	if (IS_ERR(asam_libnuma_get())) {
		ksft_test_result_skip("placement: %s\n", asam_last_error());
	} else {
		on = pages_on(&b, 0);
		ksft_test_result(b.on_node && on == (long)(b.mapped / pg),
				 "placement: %ld of %zu pages on node 0 (move_pages)\n",
				 on, b.mapped / pg);
	}
	asam_hostmem_free(&b);

	ret = asam_hostmem_alloc(&b, 1000, -1, -1);
	ksft_test_result(!ret && !b.on_node && fill_and_check(&b),
			 "node -1 (unknown): a plain buffer\n");
	asam_hostmem_free(&b);

	/* pinning without a driver (or with one: then it must pin) */
	ret = asam_hostmem_alloc(&b, 1 << 16, 0, 0);
	ksft_test_result(!ret && fill_and_check(&b),
			 "pin for cuda:0: %s, buffer usable either way\n",
			 b.pinned ? "pinned" : "not pinned (no driver)");
	asam_hostmem_free(&b);

	ksft_test_result(asam_hostmem_alloc(&b, 0, 0, -1) == -EINVAL &&
			 !b.ptr && strstr(asam_last_error(), "size 0"),
			 "size 0 is -EINVAL: %s\n", asam_last_error());

	ksft_finished();
}
