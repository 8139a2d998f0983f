// SPDX-License-Identifier: MIT
/*
 * The kernel sources and the .config, embedded at build time (see
 * tools/build/gen-kernels.py; the data lives in a generated file so that
 * the tree holds only the real .cu/.cuh sources).
 */
#include <generated/jit-kernels.inc>
