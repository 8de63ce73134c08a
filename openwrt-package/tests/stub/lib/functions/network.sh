# shellcheck shell=dash
# Test stand-in for OpenWrt's /lib/functions/network.sh: network names map
# to devices through /etc/stub-netdevs ("network device" per line) instead
# of asking netifd over ubus.

network_get_device() {
	local dev
	dev="$(awk -v n="$2" '$1 == n { print $2 }' /etc/stub-netdevs 2> /dev/null)"
	export -- "$1=$dev"
	[ -n "$dev" ]
}
