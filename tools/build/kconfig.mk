# SPDX-License-Identifier: MIT
#
# Configuration targets over Debian's Kconfiglib (python3-kconfiglib).  The
# tools are run with /usr/bin/python3 because a pyenv python3 cannot see
# Debian's dist-packages.  Warnings are fatal for defconfigs: a fragment that
# names an unknown symbol, or sets one its dependencies forbid, fails.

KCONFIGLIB := /usr/lib/python3/dist-packages
KCONFIG    := $(PYTHON) $(KCONFIGLIB)
KCONFIG_ENV := KCONFIG_WARN_UNDEF=y KCONFIG_WARN_UNDEF_ASSIGN=y

.PHONY: defconfig menuconfig olddefconfig savedefconfig allnoconfig \
	alldefconfig syncconfig

kconfig-deps = $(shell find . -name Kconfig -o -name 'Kconfig.*' \
		 -not -path './.git/*' 2>/dev/null)
# a new backend in the generator must regenerate backends.h too
kconfig-deps += tools/build/gen-backends.sh

defconfig: setup
	$(Q)$(KCONFIG_ENV) $(KCONFIG)/defconfig.py --kconfig Kconfig \
		arch/configs/defconfig
	$(Q)tools/build/check-defconfig.sh arch/configs/defconfig
	$(Q)$(MAKE) syncconfig

%_defconfig: setup
	$(Q)test -f arch/configs/$@ || \
		{ echo "no such config: arch/configs/$@" >&2; exit 1; }
	$(Q)$(KCONFIG_ENV) $(KCONFIG)/defconfig.py --kconfig Kconfig \
		arch/configs/$@
	$(Q)tools/build/check-defconfig.sh arch/configs/$@
	$(Q)$(MAKE) syncconfig

menuconfig: setup
	$(Q)$(KCONFIG)/menuconfig.py Kconfig
	$(Q)$(MAKE) syncconfig

olddefconfig: setup
	$(Q)$(KCONFIG)/olddefconfig.py Kconfig
	$(Q)$(MAKE) syncconfig

allnoconfig alldefconfig: setup
	$(Q)$(KCONFIG)/$@.py Kconfig
	$(Q)$(MAKE) syncconfig

savedefconfig: setup
	$(Q)$(KCONFIG)/savedefconfig.py --kconfig Kconfig --out defconfig
	@echo "  GEN     defconfig"

# A fresh tree with no .config gets the default one, so that "make run" and
# "make check" work straight from a clone.
$(KCONFIG_CONFIG):
	$(Q)$(MAKE) defconfig

syncconfig: include/config/auto.conf

# auto.conf is the stamp; the headers change only when their text does, so a
# Kconfig edit that changes nothing rebuilds nothing.
include/generated/autoconf.h include/generated/backends.h: include/config/auto.conf
	@:

include/config/auto.conf: $(KCONFIG_CONFIG) $(kconfig-deps)
	$(Q)tools/build/syncconfig.sh $(PYTHON) $(KCONFIGLIB)
