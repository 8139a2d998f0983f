/* SPDX-License-Identifier: MIT */
#ifndef ASAM_VERSION_H
#define ASAM_VERSION_H

#define ASAM_VERSION_MAJOR 0
#define ASAM_VERSION_MINOR 1
#define ASAM_VERSION_PATCH 0
/* ASAM_VERSION: one integer for comparisons, e.g. #if ASAM_VERSION >= 100 */
#define ASAM_VERSION (ASAM_VERSION_MAJOR * 10000 + ASAM_VERSION_MINOR * 100 + \
		      ASAM_VERSION_PATCH)
#define ASAM_VERSION_STRING "0.1.0"

#endif
