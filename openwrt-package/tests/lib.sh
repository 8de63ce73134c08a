# shellcheck shell=sh
# Helpers for the package tests (sourced by the scripts in this directory).
#
# Environment:
#   FREIMESH_AGENT  the agent binary to package (default: target/debug,
#                   built by `cargo build -p freimesh-agent`)
#   CI              when set, a test that needs root fails instead of
#                   being skipped

TESTS="$(cd "$(dirname "$0")" && pwd)"
PKG="$(dirname "$TESTS")"
REPO="$(dirname "$PKG")"
AGENT="${FREIMESH_AGENT:-$REPO/target/debug/freimesh-agent}"
failures=0
export failures

say() { printf '%s\n' "$*"; }
pass() { say "  ok: $*"; }
fail() {
	say "  FAIL: $*"
	failures=$((failures + 1))
}

# check DESCRIPTION COMMAND...: runs COMMAND, passes or fails.
check() {
	local what="$1"
	shift
	if "$@"; then pass "$what"; else fail "$what"; fi
}

contains() { # FILE TEXT
	grep -qF -e "$2" "$1"
}

finish() {
	if [ "$failures" -gt 0 ]; then
		say "$(basename "$0"): $failures check(s) failed"
		exit 1
	fi
	say "$(basename "$0"): all checks passed"
}

need_agent() {
	[ -x "$AGENT" ] || {
		say "no agent binary at $AGENT: run cargo build -p freimesh-agent or set FREIMESH_AGENT"
		exit 1
	}
	# Symlinks and chroots need an absolute path.
	case "$AGENT" in
	/*) ;;
	*) AGENT="$PWD/$AGENT" ;;
	esac
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# skip_unless_root NAME: returns 1 (skip) when not root, fails under CI.
skip_unless_root() {
	is_root && return 0
	if [ -n "${CI-}" ]; then
		fail "$1 needs root and CI is set"
	else
		say "SKIPPED $1: needs root"
	fi
	return 1
}

# build_ipk DIR: packs $AGENT with build-ipk into DIR, prints the path.
build_ipk() {
	SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1700000000}" \
		python3 "$PKG/build-ipk" --agent "$AGENT" --out "$1"
}

# unpack_ipk IPK DIR: DIR/control/ and DIR/data/ from the package.
unpack_ipk() {
	mkdir -p "$2/outer" "$2/control" "$2/data"
	tar -xzf "$1" -C "$2/outer"
	tar -xzf "$2/outer/control.tar.gz" -C "$2/control"
	tar -xzf "$2/outer/data.tar.gz" -C "$2/data"
}

# copy_with_libs ROOT BINARY: BINARY and the shared libraries it needs
# (as ldd lists them) into the same paths under ROOT.
copy_with_libs() {
	local root="$1" bin="$2" lib
	mkdir -p "$root$(dirname "$bin")"
	cp -L "$bin" "$root$bin"
	for lib in $(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
		mkdir -p "$root$(dirname "$lib")"
		[ -e "$root$lib" ] || cp -L "$lib" "$root$lib"
	done
}

# make_root ROOT IPK: a router-like root file system: the package's files
# (data.tar.gz unpacked, as opkg would), busybox as /bin/sh and its
# applets, the OpenWrt stubs from tests/stub, the devices the agent uses.
make_root() {
	local root="$1" ipk="$2" busybox lib
	mkdir -p "$root"
	tar -xzf "$ipk" -O ./data.tar.gz | tar -xzf - -C "$root"
	busybox="$(command -v busybox)"
	copy_with_libs "$root" "$busybox"
	[ "$busybox" = /bin/busybox ] || { mkdir -p "$root/bin" && cp "$root$busybox" "$root/bin/busybox"; }
	chroot "$root" /bin/busybox --install -s /bin
	for lib in $(ldd "$root/usr/bin/freimesh-agent" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
		mkdir -p "$root$(dirname "$lib")"
		[ -e "$root$lib" ] || cp -L "$lib" "$root$lib"
	done
	cp -R "$TESTS/stub/." "$root/"
	mkdir -p "$root/dev/net" "$root/tmp" "$root/var/run" "$root/var/etc" "$root/proc" "$root/sys"
	mknod -m 0666 "$root/dev/null" c 1 3
	mknod -m 0666 "$root/dev/zero" c 1 5
	mknod -m 0666 "$root/dev/urandom" c 1 9
	mknod -m 0666 "$root/dev/net/tun" c 10 200
}

# in_root ROOT COMMAND...: COMMAND inside ROOT with a router's PATH.
in_root() {
	local root="$1"
	shift
	chroot "$root" /bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"
}

# write_router_uci FILE KEY_A KEY_B: the UCI config of the lab's router: two
# static links (a over mesh_a with its 'fast' profile, b over mesh_b with
# 'metered') and host routes to both neighbours.
write_router_uci() {
	cat > "$1" << UCI
config agent 'agent'
	option enabled '1'
	option name 'router'
	option listen_port '51820'
	list address '10.99.0.1/32'
	list address 'fd99::1/128'
	option tun_name 'fm0'
	option mtu '1420'
	option profile 'default'
	option log_level 'info'

config controller 'controller'
	option endpoint ''
	option public_key ''
	option join_token ''

config interface
	option network 'mesh_a'
	option profile 'fast'

config interface
	option network 'mesh_b'
	option profile 'metered'

config link
	option name 'a'
	option public_key '$2'
	option endpoint '172.31.1.2:51820'
	option interface 'mesh_a'

config link
	option name 'b'
	option public_key '$3'
	option endpoint '172.31.2.2:51820'
	option interface 'mesh_b'
	option keepalive '25'

config route
	option prefix '10.99.0.2/32'
	list via 'a'

config route
	option prefix 'fd99::2/128'
	list via 'a'

config route
	option prefix '10.99.0.3/32'
	list via 'b'

config route
	option prefix 'fd99::3/128'
	list via 'b'
UCI
}
