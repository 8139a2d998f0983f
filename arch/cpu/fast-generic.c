// SPDX-License-Identifier: MIT
/*
 * The portable kernels: the baseline flags of the build (SSE2 on x86-64,
 * whatever the target offers elsewhere).  Always usable.
 */
#define KERN generic
#define KERN_NAME "generic"
#define VW 4
#define RB 2
#include "fast-kern.h"
