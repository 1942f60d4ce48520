#!/usr/bin/env bash
# Mount test: rsync -a and tar round trips of a real tree (a few MB and a few
# hundred files of /usr/share/doc, with symlinks, odd modes and owners) through
# a kvfs mount of one real server ($KVFS_TEST_PROVIDER; one, because tcp with
# several servers makes each small-file operation slow): byte-identical
# (diff -r), and the same names, types, modes, owners, sizes, mtimes and link
# targets (find listings and tar -tv listings compared).
#   fs_archive.sh BUILD_DIR [SOURCE_DIR]
. "$(dirname "$0")/mount_lib.sh"
ml_init "$@"

ml_config 1
ml_servers_start || { record "servers start" 1; ml_finish; }
M=$T/m
ml_mount "$M" || { record "mount" 1; ml_finish; }

# The source tree: whole /usr/share/doc entries in name order until >= 300
# files and >= 2 MB (at most 5 MB), then our own additions (~6 MB).
S=$T/src
mkdir -p "$S/doc"
files=0 bytes=0
if [ -d /usr/share/doc ]; then
	while IFS= read -r e; do
		n=$(find "/usr/share/doc/$e" -type f 2>/dev/null | wc -l)
		b=$(du -sbP "/usr/share/doc/$e" 2>/dev/null | cut -f1)
		[ -n "$b" ] || continue
		((bytes + b > 5000000)) && continue
		find "/usr/share/doc/$e" ! -readable 2>/dev/null | grep -q . && continue
		cp -dR --preserve=mode,timestamps "/usr/share/doc/$e" "$S/doc/" || continue
		files=$((files + n)) bytes=$((bytes + b))
		((files >= 250 && bytes >= 2000000)) && break
	done < <(LC_ALL=C ls /usr/share/doc)
fi
# A synthetic part, always: sizes around the 1 MiB read size and 4 KiB pages,
# modes, owners, symlinks of every kind, an empty dir, names with spaces.
mkdir -p "$S/gen/a/b/c" "$S/gen/empty" "$S/gen/with space"
for i in $(seq 40); do head -c $((i * 997)) /dev/urandom >"$S/gen/a/r$i"; done
for n in 0 1 4095 4096 4097 1048575 1048576 1048577 2500000; do head -c $n /dev/urandom >"$S/gen/a/b/s$n"; done
echo "spaces" >"$S/gen/with space/a file"
chmod 600 "$S/gen/a/r1"
chmod 755 "$S/gen/a/r2"
chmod 444 "$S/gen/a/r3"
chmod 700 "$S/gen/a/b/c"
chown 1000:1000 "$S/gen/a/r4"
chown 65534:65534 "$S/gen/a/b"
ln -s r5 "$S/gen/a/link-rel"
ln -s ../a/r6 "$S/gen/a/b/link-up"
ln -s /usr/share/doc "$S/gen/link-abs"
ln -s does/not/exist "$S/gen/link-dangling"
touch -h -d '2011-11-11 11:11:11' "$S/gen/a/link-rel"
touch -d '1999-12-31 23:59:59' "$S/gen/a/r7"
nf=$(find "$S" -type f | wc -l)
nl=$(find "$S" -type l | wc -l)
record "source tree: $nf files, $nl symlinks, $(du -sb "$S" | cut -f1) bytes" 0

# name type mode owner size mtime (files), target (symlinks); directories
# without mtime and size (listing() in fs_shell.sh has the same form).
listing() {
	(cd "$1" && find . -mindepth 1 \( -type d -printf '%P d %m %U:%G\n' \) -o \
		\( -type l -printf '%P l %U:%G -> %l\n' \) -o \( -printf '%P %y %m %U:%G %s %TY-%Tm-%Td %TH:%TM:%.2TS\n' \) | sort)
}
dir_times() { (cd "$1" && find . -mindepth 1 -type d -printf '%P %TY-%Tm-%Td %TH:%TM:%.2TS\n' | sort); }

# --- rsync -------------------------------------------------------------------
check "rsync -a into the mount" rsync -a "$S/" "$M/rs/"
check "diff -r source mount" diff -r --no-dereference "$S" "$M/rs"
check "names, types, modes, owners, sizes, mtimes, link targets identical" diff <(listing "$S") <(listing "$M/rs")
check "rsync -a out of the mount" rsync -a "$M/rs/" "$T/rs-back/"
check "diff -r source copy-back" diff -r --no-dereference "$S" "$T/rs-back"
check "copy-back listing identical" diff <(listing "$S") <(listing "$T/rs-back")
t_rsync_again() {
	rsync -ai "$S/" "$M/rs/" >"$T/items" || return 1
	# files and links must be up to date (size and mtime kept); dirs may differ in mtime only
	! grep -v '^\.d' "$T/items"
}
check "a second rsync -a transfers no file (sizes and mtimes were kept)" t_rsync_again
t_rsync_delete() {
	echo changed >>"$S/gen/a/r10" && rm "$S/gen/a/r11" && echo new >"$S/gen/new-file" &&
		touch -d '2015-05-05 05:05:05' "$S/gen/a/r12" &&
		rsync -a --delete "$S/" "$M/rs/" && diff -r --no-dereference "$S" "$M/rs" && diff <(listing "$S") <(listing "$M/rs")
}
check "rsync -a --delete of changes" t_rsync_delete
check "rsync --checksum finds nothing to do" sh -c "test -z \"\$(rsync -ai --checksum '$S/' '$M/rs/' | grep -v '^\\.d')\""

# --- tar ---------------------------------------------------------------------
check "tar -c of the source" tar -C "$S" -cf "$T/a.tar" .
mkdir -p "$M/tar"
check "tar -x into the mount" tar -C "$M/tar" -xpf "$T/a.tar"
check "diff -r source tar-extracted" diff -r --no-dereference "$S" "$M/tar"
check "tar-extracted listing identical" diff <(listing "$S") <(listing "$M/tar")
check "tar -c of the mount" tar -C "$M/tar" -cf "$T/b.tar" .
# tar -tv pads the size column to the archive's widest: squeeze the blanks.
tv() { tar -tvf "$1" | tr -s ' ' | awk '$1 !~ /^d/' | sort -k6; }
tvd() { tar -tvf "$1" | tr -s ' ' | awk '$1 ~ /^d/ { print $1, $2, $6 }' | sort -k3; }
check "tar -tv listings (files, links: mode, owner, size, mtime, target) identical" diff <(tv "$T/a.tar") <(tv "$T/b.tar")
check "tar -tv listings of directories (mode, owner) identical" diff <(tvd "$T/a.tar") <(tvd "$T/b.tar")
check "directory mtimes set by tar are kept" diff <(dir_times "$S") <(dir_times "$M/tar")
t_tar_pipe() {
	mkdir -p "$T/x" && tar -C "$M" -cf - tar | tar -C "$T/x" -xpf - && diff -r --no-dereference "$S" "$T/x/tar" &&
		diff <(listing "$S") <(listing "$T/x/tar")
}
check "tar | tar out of the mount: identical" t_tar_pipe
check "rm -r of both copies" sh -c "rm -r '$M/rs' '$M/tar' && test -z \"\$(ls -A '$M')\""
ml_finish
