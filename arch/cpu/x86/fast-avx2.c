// SPDX-License-Identifier: MIT
/* AVX2 + FMA kernels; compiled with -mavx2 -mfma (x86/Makefile). */
#define KERN avx2
#define KERN_NAME "avx2"
#define VW 8
#define RB 2
#include "../fast-kern.h"
