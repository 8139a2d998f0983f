#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Fail when a defconfig asks for an option that the resulting .config does
# not have: a misspelt symbol, or one whose dependencies (a missing header, a
# missing library) forbid it.  Kconfig itself only warns about both.

frag=$1
cfg=${KCONFIG_CONFIG:-.config}
bad=0
grep -E '^CONFIG_[A-Za-z0-9_]+=' "$frag" | while IFS= read -r line; do
	grep -qxF "$line" "$cfg" || {
		echo "$frag: '$line' did not take (unknown or unmet dependencies)" >&2
		echo x
	}
done | grep -q x && bad=1
exit $bad
