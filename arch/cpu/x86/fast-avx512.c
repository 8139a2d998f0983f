// SPDX-License-Identifier: MIT
/* AVX-512F kernels; compiled with -mavx512f -mfma (x86/Makefile). */
#define KERN avx512
#define KERN_NAME "avx512"
#define VW 16
#define RB 4
#include "../fast-kern.h"
