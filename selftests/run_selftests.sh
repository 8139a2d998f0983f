#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Run the selftest programs given as arguments (make check passes the list
# the configuration builds), each under its area's timeout, print their TAP
# output indented, and end with "N passed, N failed, N skipped" over every
# test case.  A program that crashes or times out counts as one failure.
# Exit status: 0 when nothing failed.

pass=0; fail=0; skip=0; n=0
echo "TAP version 13"
echo "1..$#"
for t in "$@"; do
	n=$((n + 1))
	area=$(basename "$(dirname "$(dirname "$t")")")
	name="$area/$(basename "$t")"
	tmo=120
	if [ -f "selftests/$area/settings" ]; then
		v=$(sed -n 's/^timeout=//p' "selftests/$area/settings")
		[ -n "$v" ] && tmo=$v
	fi
	echo "# selftests: $name"
	out=$(mktemp)
	timeout "$tmo" "$t" >"$out" 2>&1
	rc=$?
	sed 's/^/# /' "$out"
	p=$(grep -cE '^ok [0-9]+ ' "$out" | head -1)
	s=$(grep -cE '^ok [0-9]+ # SKIP' "$out" | head -1)
	f=$(grep -cE '^not ok [0-9]+ ' "$out" | head -1)
	rm -f "$out"
	p=$((p - s))
	case $rc in
	0) ;;
	4) [ $((p + s + f)) -eq 0 ] && s=1 ;;
	124) echo "# $name: timed out after ${tmo}s"; f=$((f + 1)) ;;
	*) [ "$f" -eq 0 ] && { echo "# $name: exit code $rc"; f=1; } ;;
	esac
	pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
	if [ "$f" -gt 0 ]; then
		echo "not ok $n selftests: $name # exit=$rc"
	elif [ "$rc" -eq 4 ]; then
		echo "ok $n selftests: $name # SKIP"
	else
		echo "ok $n selftests: $name"
	fi
done
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
