/* SPDX-License-Identifier: MIT */
/*
 * IS_ENABLED(CONFIG_FOO): 1 when CONFIG_FOO is defined to 1 in autoconf.h,
 * else 0, usable in plain C expressions so that disabled code is still
 * compiled (and type-checked) and then dropped by the optimiser.
 */
#ifndef ASAM_INTERNAL_KCONFIG_H
#define ASAM_INTERNAL_KCONFIG_H

/*
 * The trick: "CONFIG_FOO" expands to 1 when set.  Pasting it onto
 * __ARG_PLACEHOLDER_ yields a macro that inserts "0," so that the second
 * argument picked below is 1; an unset option leaves one argument and 0 is
 * picked.
 */
#define __ARG_PLACEHOLDER_1 0,
#define __take_second_arg(__ignored, val, ...) val
#define __is_defined(x) ___is_defined(x)
#define ___is_defined(val) ____is_defined(__ARG_PLACEHOLDER_##val)
#define ____is_defined(arg1_or_junk) __take_second_arg(arg1_or_junk 1, 0)

#define IS_ENABLED(option) __is_defined(option)

#endif
