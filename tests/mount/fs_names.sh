#!/usr/bin/env bash
# Mount test: names and sizes at and over the limits on a kvfs mount of one
# real server ($KVFS_TEST_PROVIDER). A 255-byte name works, a 256-byte one is
# ENAMETOOLONG (create, mkdir, stat, rename, symlink); a key of exactly 4096
# bytes works and one of 4097 bytes is ENAMETOOLONG (reached with relative
# paths deep in a tree); names with spaces, newlines, UTF-8 and shell
# characters round-trip to kvfsctl; keys that cannot be paths stay hidden;
# files beyond max_value and writes at absurd offsets fail cleanly. After
# each group the daemon must still answer.
#   fs_names.sh BUILD_DIR [SOURCE_DIR]
. "$(dirname "$0")/mount_lib.sh"
ml_init "$@"

ml_config 1
ml_servers_start || { record "servers start" 1; ml_finish; }
M=$T/m
ml_mount "$M" || { record "mount" 1; ml_finish; }
DPID=$(ml_daemon_pid "$M")

rep() { printf "%${2}s" "" | tr ' ' "$1"; } # CHAR N
n255=$(rep a 255)
n256=$(rep b 256)
alive() {
	check "the daemon still answers ($1)" sh -c "kill -0 $DPID && ls '$M' >/dev/null && echo ok > '$M/alive' && test \"\$(cat '$M/alive')\" = ok"
}

# --- component length ----------------------------------------------------------
check "a 255-byte name: create, list, read" sh -c "echo 255 > '$M/$n255' && ls '$M' | grep -qx '$n255' && test \"\$(cat '$M/$n255')\" = 255"
check "a 255-byte directory name" sh -c "mkdir '$M/d$(rep c 254)' && echo x > '$M/d$(rep c 254)/f' && test -f '$M/d$(rep c 254)/f'"
check_fail "create with a 256-byte name: ENAMETOOLONG" "File name too long" sh -c "echo x > '$M/$n256'"
check_fail "mkdir with a 256-byte name: ENAMETOOLONG" "File name too long" mkdir "$M/$n256"
check_fail "stat of a 256-byte name: ENAMETOOLONG" "File name too long" stat "$M/$n256"
check_fail "rename to a 256-byte name: ENAMETOOLONG" "File name too long" mv "$M/$n255" "$M/$n256"
check_fail "symlink named with 256 bytes: ENAMETOOLONG" "File name too long" ln -s target "$M/$n256"
check_fail "a 1000-byte name: ENAMETOOLONG" "File name too long" touch "$M/$(rep e 1000)"
check "nothing of that was created" sh -c "test \"\$(ls '$M' | wc -l)\" -eq 2 && test -f '$M/$n255'"
alive "component length"

# --- key length: 16 directories of 250 bytes = 4016 bytes of key prefix -----------
c250=$(rep k 250)
t_deep() {
	local i
	mkdir -p "$M/deep" && cd "$M/deep" || return 1 # the key prefix "deep/" counts: 5 bytes
	for ((i = 1; i <= 15; i++)); do
		mkdir "$c250" && cd "$c250" || { echo "mkdir at level $i failed"; return 1; }
	done
	# keys of this dir's children: 5 + 15 * 251 = 3770 bytes, then the name
	echo fits >"$(rep n 200)" && test "$(cat "$(rep n 200)")" = fits || { echo "a 3970-byte key failed"; return 1; }
	mkdir "$(rep m 250)" && cd "$(rep m 250)" || { echo "mkdir at level 16 failed"; return 1; }
	# children here: 3770 + 251 = 4021 bytes of prefix: names of 75 bytes end at 4096
	echo exact >"$(rep x 75)" || { echo "a 4096-byte key was refused"; return 1; }
	test "$(cat "$(rep x 75)")" = exact || return 1
	ls -l . | grep -q "$(rep x 75)" || return 1
	if (echo over >"$(rep y 76)") 2>"$T/e"; then
		echo "a 4097-byte key was accepted"
		return 1
	fi
	grep -q "File name too long" "$T/e" || { cat "$T/e"; return 1; }
	if mkdir "$(rep z 100)" 2>"$T/e"; then
		echo "mkdir of a 4122-byte key was accepted"
		return 1
	fi
	grep -q "File name too long" "$T/e" || { cat "$T/e"; return 1; }
	# renames too
	if mv "$(rep x 75)" "$(rep w 80)" 2>"$T/e"; then
		echo "rename to a 4101-byte key was accepted"
		return 1
	fi
	grep -q "File name too long" "$T/e" || { cat "$T/e"; return 1; }
	test "$(cat "$(rep x 75)")" = exact
}
check "key length: 4096 bytes work, 4097 are ENAMETOOLONG (create, mkdir, rename)" t_deep
t_deep_ctl() {
	local key="deep/" i
	for ((i = 1; i <= 15; i++)); do key+="$c250/"; done
	key+="$(rep m 250)/$(rep x 75)"
	echo "key length ${#key}"
	test "${#key}" -eq 4096 && test "$(ctl get "$key" -)" = exact
}
check "kvfsctl reads the 4096-byte key" t_deep_ctl
check "rm -rf of the deep tree" sh -c "rm -rf '$M/deep' && test ! -e '$M/deep'"
alive "key length"

# --- odd but valid names ----------------------------------------------------------
t_odd() {
	local n names=("with space" $'new\nline' "tab	tab" "ünïcødé ✓" 'back\slash' '*star?' '-dash' "'quote\"" 'a:b' '%41' '#hash' ' lead' 'trail ')
	mkdir -p "$M/odd" || return 1
	for n in "${names[@]}"; do
		printf '%s' "$n" >"$M/odd/$n" || { echo "create [$n] failed"; return 1; }
	done
	for n in "${names[@]}"; do
		[ "$(cat "$M/odd/$n")" = "$n" ] || { echo "read [$n] failed"; return 1; }
		[ "$(ctl get "odd/$n" -)" = "$n" ] || { echo "kvfsctl get [odd/$n] failed"; return 1; }
	done
	test "$(find "$M/odd" -type f -print0 | tr -cd '\0' | wc -c)" -eq "${#names[@]}" &&
		diff <(printf '%s\0' "${names[@]}" | sort -z | tr '\0' '\n') <(cd "$M/odd" && printf '%s\0' * | sort -z | tr '\0' '\n')
}
check "names with spaces, newline, tab, UTF-8, shell characters round-trip" t_odd
t_hidden() {
	local long
	long=$(rep q 256)
	echo hidden | ctl put 'hid//den' && echo hidden | ctl put 'hid/./x' && echo hidden | ctl put 'hid/../y' &&
		echo hidden | ctl put "hid/$long" && echo hidden | ctl put "hid/$long/below" && echo shown | ctl put hid/shown &&
		test "$(ls -A "$M/hid")" = shown && ! stat "$M/hid/$long" 2>/dev/null &&
		test "$(ctl get 'hid//den' -)" = hidden && test "$(ctl get "hid/$long/below" -)" = hidden
}
check "keys that cannot be paths stay hidden, kvfsctl still gets them" t_hidden
check "rm -r of a dir with hidden keys inside does not crash" sh -c "rm -rf '$M/hid'; ls '$M' >/dev/null"
alive "odd names"

# --- sizes ---------------------------------------------------------------------------
# max_value is 1200M in mount_lib's config.
fails() { # CMD...: must fail; says how
	if "$@"; then
		echo "succeeded: $*"
		return 1
	fi
	echo "failed as expected (exit $?)"
}
t_too_big_truncate() { echo x >"$M/huge" && truncate -s 1300M "$M/huge"; }
check "truncate -s 1300M (over max_value) fails" fails t_too_big_truncate
check "after that the file is intact or gone, never half" sh -c "test ! -e '$M/huge' || test \"\$(stat -c %s '$M/huge')\" -eq 2"
check "a write at offset 2^40 fails" sh -c "! dd if=/dev/zero of='$M/far' bs=1 count=1 seek=1099511627776 status=none"
check "a write at offset 2^62 fails" sh -c "! dd if=/dev/zero of='$M/far2' bs=1 count=1 seek=4611686018427387904 status=none"
check "a write of max_value + 1 MiB fails (dd checks write and close)" sh -c "! dd if=/dev/zero of='$M/toolarge' bs=1M count=1201 status=none"
check "and leaves no value over max_value" sh -c "test ! -e '$M/toolarge' || test \"\$(stat -c %s '$M/toolarge')\" -le 1258291200"
check "truncate -s of a directory fails" sh -c "mkdir -p '$M/tdir' && ! truncate -s 10 '$M/tdir'"
alive "sizes"
ml_finish
