# SPDX-License-Identifier: MIT
#
# libasam top-level Makefile, in the manner of Kbuild: every directory has a
# Makefile that adds objects to obj-y (or obj-$(CONFIG_FOO)) and names the
# directories below it as "dir/".  The tree is read once (no recursive make),
# so one "make -j" sees every dependency.  V=1 shows the full commands.

VERSION    = 0
PATCHLEVEL = 1
SUBLEVEL   = 0
LIBVERSION = $(VERSION).$(PATCHLEVEL).$(SUBLEVEL)

srctree   := $(CURDIR)
PYTHON    ?= /usr/bin/python3
CC        ?= gcc
CXX       ?= g++
CUDA_HOME ?= /usr/local/cuda
PREFIX    ?= /usr/local
DESTDIR   ?=
KCONFIG_CONFIG ?= .config
export CC CUDA_HOME KCONFIG_CONFIG srctree

ifeq ($(V),1)
Q :=
quiet :=
else
Q := @
quiet := quiet_
MAKEFLAGS += --no-print-directory
endif

# Targets that need no configuration.
no-config-targets := defconfig %_defconfig menuconfig olddefconfig \
	savedefconfig allnoconfig alldefconfig clean mrproper help setup

ifeq ($(MAKECMDGOALS),)
need-config := 1
else ifneq ($(filter-out $(no-config-targets),$(MAKECMDGOALS)),)
need-config := 1
endif

.DEFAULT_GOAL := all

include tools/build/kconfig.mk

ifdef need-config
-include include/config/auto.conf
endif

# ---------------------------------------------------------------------------
# Flags.  -std=gnu11 for __thread and typeof; the library hides everything
# that is not asam_* through the version script as well.

WARN      := -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers \
	     -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla
OPT       := -O2 -g
ifeq ($(CONFIG_ASAM_SANITIZE),y)
OPT       := -O1 -g -fno-omit-frame-pointer
SANFLAGS  := -fsanitize=address,undefined -fno-sanitize-recover=undefined
endif
CPPFLAGS  := -I$(srctree)/include -I$(srctree) -D_GNU_SOURCE \
	     -include $(srctree)/include/generated/autoconf.h
CFLAGS    := -std=gnu11 $(OPT) $(WARN) -fPIC -fvisibility=hidden $(SANFLAGS)
CXXFLAGS  := -std=gnu++17 $(OPT) -Wall -Wextra -fPIC $(SANFLAGS)
LDLIBS    := -ldl -lpthread -lm
LDFLAGS   := $(SANFLAGS)

include tools/build/Makefile.build

# ---------------------------------------------------------------------------
# The library.

LIBNAME   := libasam.so
SONAME    := $(LIBNAME).$(VERSION)
lib-dirs  := runtime/ jit/ arch/

ifdef need-config
$(foreach d,$(lib-dirs),$(eval $(call descend,$(d))))
endif

LIB_OBJS  := $(all-objs)

build/$(LIBNAME).$(LIBVERSION): $(LIB_OBJS) include/asam.map
	@mkdir -p $(dir $@)
	$(call cmd,ld_so)
build/$(SONAME): build/$(LIBNAME).$(LIBVERSION)
	$(Q)ln -sf $(notdir $<) $@
build/$(LIBNAME): build/$(SONAME)
	$(Q)ln -sf $(notdir $<) $@
build/libasam.a: $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(call cmd,ar)

quiet_cmd_ld_so = LD      $@
      cmd_ld_so = $(CC) -shared -Wl,-soname,$(SONAME) \
		  -Wl,--version-script=include/asam.map -Wl,--no-undefined \
		  $(LDFLAGS) -o $@ $(LIB_OBJS) $(LDLIBS)
quiet_cmd_ar = AR      $@
      cmd_ar = rm -f $@ && ar rcs $@ $(LIB_OBJS)

LIBS := build/$(LIBNAME) build/libasam.a

# ---------------------------------------------------------------------------
# Programs: tools/ and selftests/ list theirs in progs-y; each links the
# static library so that it runs from the tree without LD_LIBRARY_PATH.

ifdef need-config
include tools/Makefile
include selftests/Makefile
endif

.PHONY: all lib tools selftests
all: lib tools selftests
lib: $(LIBS) asam.pc
tools: $(TOOLS)
selftests: $(SELFTESTS)

asam.pc: tools/build/asam.pc.in Makefile
	$(Q)sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(LIBVERSION)|' $< > $@

# ---------------------------------------------------------------------------
# The two commands of the README.  Both install missing build dependencies
# first (tools/build/setup-deps.sh), so they work on a fresh machine.

.PHONY: setup run check bench
setup:
	$(Q)tools/build/setup-deps.sh

run: setup all
	$(Q)./tools/asam-run $(RUN_ARGS)

check: setup all
	$(Q)selftests/run_selftests.sh $(SELFTESTS)

bench: all
	$(Q)./tools/asam-bench $(BENCH_ARGS)

# ---------------------------------------------------------------------------
# install: headers, libasam.so.0, libasam.a, asam.pc and the tools.

.PHONY: install
install: all
	install -d $(DESTDIR)$(PREFIX)/include/asam $(DESTDIR)$(PREFIX)/lib \
		$(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 include/asam/*.h $(DESTDIR)$(PREFIX)/include/asam/
	install -m 755 build/$(LIBNAME).$(LIBVERSION) $(DESTDIR)$(PREFIX)/lib/
	ln -sf $(LIBNAME).$(LIBVERSION) $(DESTDIR)$(PREFIX)/lib/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(PREFIX)/lib/$(LIBNAME)
	install -m 644 build/libasam.a $(DESTDIR)$(PREFIX)/lib/
	install -m 644 asam.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/
	install -m 755 $(TOOLS) $(DESTDIR)$(PREFIX)/bin/

# ---------------------------------------------------------------------------

.PHONY: clean mrproper help
clean:
	$(Q)find . -path ./.git -prune -o \( -name '*.o' -o -name '*.d' \) -print \
		| xargs rm -f
	$(Q)rm -rf build asam.pc $(CLEAN_FILES)
	$(Q)find selftests -name bin -type d -prune -exec rm -rf {} +
	$(Q)rm -f tools/asam-run tools/asam-topo tools/asam-cache tools/asam-bench

mrproper: clean
	$(Q)rm -rf .config .config.old include/config include/generated

help:
	@echo 'Configuration:  defconfig  <name>_defconfig  menuconfig  olddefconfig'
	@echo '                savedefconfig  allnoconfig  alldefconfig'
	@echo '                (configs: $(notdir $(wildcard arch/configs/*_defconfig)))'
	@echo 'Build:          all  lib  tools  selftests   (V=1 for full commands)'
	@echo 'Run:            run  check  bench'
	@echo 'Install:        install  PREFIX=$(PREFIX) DESTDIR='
	@echo 'Clean:          clean  mrproper'

-include $(shell find . -name '*.d' -not -path './.git/*' 2>/dev/null)
