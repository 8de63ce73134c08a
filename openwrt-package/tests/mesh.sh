#!/bin/sh
# The package on a router in a lab (root only): the .ipk unpacked into a
# root file system, its init script run there (busybox sh, procd stub)
# with a UCI config of two static links, and the agent started inside that
# root, in its own network namespace, exactly as procd was asked to start
# it. Two plain agents in two more namespaces are its neighbours:
#
#   a (10.99.0.2) --veth-- router (10.99.0.1, the package) --veth-- b (10.99.0.3)
#
# Traffic must flow router<->a, router<->b and a<->b through the router.
# Everything lives in namespaces named fmpkg<pid>-*, removed at exit.
set -u
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
need_agent
if ! skip_unless_root "package mesh lab"; then
	finish
	exit 0
fi

work="$(mktemp -d /tmp/freimesh-pkg-mesh.XXXXXX)"
tag="fmpkg$$"
ns_r="$tag-router"
ns_a="$tag-a"
ns_b="$tag-b"
pids=""

cleanup() {
	for pid in $pids; do
		kill "$pid" 2> /dev/null
	done
	for pid in $pids; do
		wait "$pid" 2> /dev/null
	done
	for ns in "$ns_r" "$ns_a" "$ns_b"; do
		ip netns del "$ns" 2> /dev/null
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

show_logs() {
	for f in "$work"/*.log; do
		say "--- $f"
		cat "$f"
	done
}

# ping_count NS DEST COUNT: replies received.
ping_count() {
	ip netns exec "$1" ping -n -q -c "$3" -i 0.2 -W 1 "$2" 2> /dev/null |
		sed -n 's/.* transmitted, \([0-9]*\) .*received.*/\1/p'
}

# wait_reachable NS DEST: one reply within 15 s.
wait_reachable() {
	local i=0
	while [ "$i" -lt 30 ]; do
		[ "$(ping_count "$1" "$2" 1)" = 1 ] && return 0
		i=$((i + 1))
	done
	return 1
}

wait_for() { # PATH: appears within 10 s
	local i=0
	while [ ! -e "$1" ]; do
		[ "$i" -lt 100 ] || return 1
		sleep 0.1
		i=$((i + 1))
	done
}

say "== lab: namespaces and underlay"
for ns in "$ns_r" "$ns_a" "$ns_b"; do
	ip netns add "$ns" && ip -n "$ns" link set lo up || exit 1
done
ip link add to-a netns "$ns_r" type veth peer name to-router netns "$ns_a" || exit 1
ip link add to-b netns "$ns_r" type veth peer name to-router netns "$ns_b" || exit 1
ip -n "$ns_r" addr add 172.31.1.1/24 dev to-a
ip -n "$ns_a" addr add 172.31.1.2/24 dev to-router
ip -n "$ns_r" addr add 172.31.2.1/24 dev to-b
ip -n "$ns_b" addr add 172.31.2.2/24 dev to-router
for pair in "$ns_r to-a" "$ns_r to-b" "$ns_a to-router" "$ns_b to-router"; do
	# shellcheck disable=SC2086
	set -- $pair
	ip -n "$1" link set "$2" up
done

say "== the router: package installed into a root, started from its UCI config"
ipk="$(build_ipk "$work/ipk")" || exit 1
root="$work/root"
make_root "$root" "$ipk"
"$AGENT" genkey > "$work/a.key"
"$AGENT" genkey > "$work/b.key"
chmod 600 "$work/a.key" "$work/b.key"
key_a="$("$AGENT" pubkey < "$work/a.key")"
key_b="$("$AGENT" pubkey < "$work/b.key")"
write_router_uci "$root/etc/config/freimesh" "$key_a" "$key_b"
printf 'mesh_a to-a\nmesh_b to-b\n' > "$root/etc/stub-netdevs"

# start_router: the init script decides the command line; run that.
start_router() {
	local command env
	rm -f "$root/tmp/procd.record"
	in_root "$root" /bin/sh /etc/rc.common /etc/init.d/freimesh start || return 1
	command="$(sed -n 's/^param command //p' "$root/tmp/procd.record")"
	env="$(sed -n 's/^param env //p' "$root/tmp/procd.record")"
	[ -n "$command" ] || return 1
	# shellcheck disable=SC2086
	ip netns exec "$ns_r" chroot "$root" /bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin $env $command \
		>> "$work/router.log" 2>&1 &
	router_pid=$!
	pids="$pids $router_pid"
	wait_for "$root/var/run/freimesh/agent.sock"
}

check "init script starts the agent, its control socket appears" start_router
check "the agent created its key" [ -s "$root/etc/freimesh/private.key" ]
check "the key is 0600" [ "$(stat -c %a "$root/etc/freimesh/private.key")" = 600 ]
key_r="$("$AGENT" pubkey < "$root/etc/freimesh/private.key")"

say "== the neighbours: plain agents"
# neighbour NAME INDEX ENDPOINT-OF-ROUTER OTHER-INDEX PROFILE: both ends
# of a link use the same profile (the router's comes from its UCI config).
neighbour() {
	cat > "$work/$1.toml" << TOML
[node]
name = "$1"
private_key_file = "$work/$1.key"
listen = "0.0.0.0:51820"
addresses = ["10.99.0.$2/32", "fd99::$2/128"]
control_socket = "$work/$1.sock"

[[link]]
name = "router"
public_key = "$key_r"
endpoint = "$3:51820"
profile = "$5"

[[route]]
prefix = "10.99.0.1/32"
via = ["router"]

[[route]]
prefix = "fd99::1/128"
via = ["router"]

[[route]]
prefix = "10.99.0.$4/32"
via = ["router"]

[[route]]
prefix = "fd99::$4/128"
via = ["router"]
TOML
	ip netns exec "$tag-$1" env RUST_LOG=info "$AGENT" run "$work/$1.toml" > "$work/$1.log" 2>&1 &
	pids="$pids $!"
	wait_for "$work/$1.sock"
}
check "agent a starts" neighbour a 2 172.31.1.1 3 fast
check "agent b starts" neighbour b 3 172.31.2.1 2 metered

say "== traffic"
check "router reaches a (IPv4)" wait_reachable "$ns_r" 10.99.0.2
check "router reaches b (IPv4)" wait_reachable "$ns_r" 10.99.0.3
check "router -> a: 5/5 pings" [ "$(ping_count "$ns_r" 10.99.0.2 5)" = 5 ]
check "router -> b: 5/5 pings" [ "$(ping_count "$ns_r" 10.99.0.3 5)" = 5 ]
check "a -> b through the router: 5/5 (IPv4)" [ "$(ping_count "$ns_a" 10.99.0.3 5)" = 5 ]
check "b -> a through the router: 5/5 (IPv6)" [ "$(ping_count "$ns_b" fd99::2 5)" = 5 ]
ip netns exec "$ns_r" chroot "$root" /usr/bin/freimesh-agent status \
	--socket /var/run/freimesh/agent.sock > "$work/status.txt" 2>&1
check "status on the router shows both links" sh -c "grep -q '\\ba\\b' '$work/status.txt' && grep -q '\\bb\\b' '$work/status.txt'"
check "status shows the profiles from UCI" sh -c "grep -q fast '$work/status.txt' && grep -q metered '$work/status.txt'"
cat "$work/status.txt"

say "== restart: the key stays"
kill "$router_pid"
wait "$router_pid"
check "the router stopped cleanly on SIGTERM" [ "$?" -eq 0 ]
check "init script starts it again" start_router
check "same key after the restart" [ "$("$AGENT" pubkey < "$root/etc/freimesh/private.key")" = "$key_r" ]
check "a -> b through the restarted router" wait_reachable "$ns_a" 10.99.0.3

[ "$failures" -eq 0 ] || show_logs
finish
