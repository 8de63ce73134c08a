#!/bin/sh
# Memory and idle CPU of an agent with N live links (root; not part of CI):
#
#   FREIMESH_AGENT=target/router/freimesh-agent openwrt-package/tests/footprint.sh [N] [SECONDS]
#
# One "router" agent in a namespace, linked over N veth pairs to N plain
# agents. After every link has carried a ping, the router sits idle for
# SECONDS (default 30) and the script reports its VmRSS / VmHWM from
# /proc/PID/status and the CPU it used from utime+stime in /proc/PID/stat.
set -u
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
need_agent
n="${1:-8}"
seconds="${2:-30}"
if ! skip_unless_root "footprint"; then
	exit 0
fi

work="$(mktemp -d /tmp/freimesh-footprint.XXXXXX)"
tag="fmfp$$"
pids=""
cleanup() {
	for pid in $pids; do kill "$pid" 2> /dev/null; done
	for pid in $pids; do wait "$pid" 2> /dev/null; done
	ip netns del "$tag-r" 2> /dev/null
	i=1
	while [ "$i" -le "$n" ]; do
		ip netns del "$tag-$i" 2> /dev/null
		i=$((i + 1))
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ip netns add "$tag-r" && ip -n "$tag-r" link set lo up || exit 1
"$AGENT" genkey > "$work/r.key"
key_r="$("$AGENT" pubkey < "$work/r.key")"
cat > "$work/r.toml" << TOML
[node]
name = "router"
private_key_file = "$work/r.key"
listen = "0.0.0.0:51820"
addresses = ["10.99.0.1/32"]
control_socket = "$work/r.sock"
TOML
i=1
while [ "$i" -le "$n" ]; do
	ip netns add "$tag-$i" && ip -n "$tag-$i" link set lo up || exit 1
	ip link add "to-$i" netns "$tag-r" type veth peer name to-router netns "$tag-$i" || exit 1
	ip -n "$tag-r" addr add "172.31.$i.1/24" dev "to-$i"
	ip -n "$tag-$i" addr add "172.31.$i.2/24" dev to-router
	ip -n "$tag-r" link set "to-$i" up
	ip -n "$tag-$i" link set to-router up
	"$AGENT" genkey > "$work/$i.key"
	chmod 600 "$work/$i.key"
	cat >> "$work/r.toml" << TOML

[[link]]
name = "n$i"
public_key = "$("$AGENT" pubkey < "$work/$i.key")"
endpoint = "172.31.$i.2:51820"

[[route]]
prefix = "10.99.0.$((i + 1))/32"
via = ["n$i"]
TOML
	cat > "$work/$i.toml" << TOML
[node]
name = "n$i"
private_key_file = "$work/$i.key"
listen = "0.0.0.0:51820"
addresses = ["10.99.0.$((i + 1))/32"]
control_socket = "$work/$i.sock"

[[link]]
name = "router"
public_key = "$key_r"
endpoint = "172.31.$i.1:51820"

[[route]]
prefix = "10.99.0.1/32"
via = ["router"]
TOML
	i=$((i + 1))
done
chmod 600 "$work/r.key"

ip netns exec "$tag-r" "$AGENT" run "$work/r.toml" > "$work/r.log" 2>&1 &
router=$!
pids="$router"
i=1
while [ "$i" -le "$n" ]; do
	ip netns exec "$tag-$i" "$AGENT" run "$work/$i.toml" > "$work/$i.log" 2>&1 &
	pids="$pids $!"
	i=$((i + 1))
done
sleep 2
i=1
while [ "$i" -le "$n" ]; do
	ok=0
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		ip netns exec "$tag-r" ping -c 1 -W 1 "10.99.0.$((i + 1))" > /dev/null 2>&1 && ok=1 && break
	done
	[ "$ok" = 1 ] || {
		say "link n$i carries no ping; router log:"
		cat "$work/r.log"
		exit 1
	}
	i=$((i + 1))
done
say "all $n links carried a ping; idling for ${seconds}s"

ticks() { awk '{ print $14 + $15 }' "/proc/$router/stat"; }
hz="$(getconf CLK_TCK)"
before="$(ticks)"
sleep "$seconds"
after="$(ticks)"
rss="$(awk '/^VmRSS/ { print $2 }' "/proc/$router/status")"
hwm="$(awk '/^VmHWM/ { print $2 }' "/proc/$router/status")"
threads="$(awk '/^Threads/ { print $2 }' "/proc/$router/status")"
say "binary:     $AGENT ($(stat -c %s "$AGENT") bytes)"
say "links:      $n"
say "VmRSS:      $rss KiB (peak VmHWM $hwm KiB), $threads threads"
say "idle CPU:   $((after - before)) ticks in ${seconds}s at $hz ticks/s" \
	"= $(awk -v t="$((after - before))" -v hz="$hz" -v s="$seconds" 'BEGIN { printf "%.2f", 100 * t / hz / s }') % of one core"
