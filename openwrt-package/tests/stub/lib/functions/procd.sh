# shellcheck shell=dash
# Test stand-in for OpenWrt's /lib/functions/procd.sh: instead of sending
# the service description to procd over ubus, append what the init script
# asks for to $PROCD_RECORD (default /tmp/procd.record), one line each:
#   service NAME | instance NAME | param TYPE VALUE... | trigger KIND ARG...
#   | close_instance | close_service

_procd_record() {
	echo "$*" >> "${PROCD_RECORD:-/tmp/procd.record}"
}

procd_open_service() { _procd_record service "$1"; }
procd_close_service() {
	service_triggers
	_procd_record close_service
}
procd_open_instance() { _procd_record instance "${1:-instance1}"; }
procd_close_instance() { _procd_record close_instance; }
procd_set_param() { _procd_record param "$@"; }
procd_append_param() { _procd_record append_param "$@"; }
procd_open_trigger() { :; }
procd_close_trigger() { :; }
procd_add_reload_trigger() {
	local config
	for config in "$@"; do
		_procd_record trigger config.change "$config" reload
	done
}
procd_add_reload_interface_trigger() {
	_procd_record trigger interface "$1" reload
}
procd_add_interface_trigger() {
	_procd_record trigger "$@"
}
procd_add_validation() { :; }
