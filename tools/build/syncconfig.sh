#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Regenerate include/generated/{autoconf,backends}.h and
# include/config/auto.conf from .config.  Files are replaced only when
# their text changes, so an edit that changes nothing rebuilds nothing.
# Where Kconfiglib is missing but a generated configuration exists (a
# build tree carried to a machine without it), that one is kept.

set -e
python=$1
kconfiglib=$2

if [ ! -f "$kconfiglib/genconfig.py" ]; then
	if [ -f include/config/auto.conf ] &&
	   [ -f include/generated/autoconf.h ]; then
		echo "  KEEP    include/config/auto.conf (no Kconfiglib here)"
		touch include/config/auto.conf
		exit 0
	fi
	echo "Kconfiglib is missing: run tools/build/setup-deps.sh" >&2
	exit 1
fi
mkdir -p include/config include/generated
echo "  GEN     include/generated/autoconf.h"
"$python" "$kconfiglib/genconfig.py" Kconfig \
	--header-path include/generated/autoconf.h.tmp \
	--config-out include/config/auto.conf.tmp
tools/build/gen-backends.sh include/config/auto.conf.tmp \
	> include/generated/backends.h.tmp
for f in include/generated/autoconf.h include/config/auto.conf \
	 include/generated/backends.h; do
	if cmp -s "$f.tmp" "$f"; then rm -f "$f.tmp"; else mv "$f.tmp" "$f"; fi
done
touch include/config/auto.conf
