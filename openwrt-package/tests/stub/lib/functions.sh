# shellcheck shell=dash
# Variables named in eval'd strings look unused to shellcheck:
# shellcheck disable=SC2034
# Test stand-in for OpenWrt's /lib/functions.sh: the part of its UCI API
# that freimesh's scripts use (config_load, config_get, config_get_bool,
# config_foreach, config_list_foreach), keeping OpenWrt's variable layout
# (CONFIG_<section>_<option>, lists as _ITEM<n> and _LENGTH).
#
# OpenWrt's config_load evaluates `uci export` output with the functions
# config/option/list below; a UCI file is that same syntax, so this stub
# sources /etc/config/<package> (or $UCI_CONFIG_DIR/<package>) directly.

# Exported like OpenWrt's: a child script (the init script runs uci2toml)
# inherits them, and its config_load must start from scratch.
export CONFIG_SECTIONS="" CONFIG_NUM_SECTIONS=0 CONFIG_SECTION=""
export CONFIG_LIST_STATE="${CONFIG_LIST_STATE-}"

append() {
	local var="$1" value="$2" sep="${3:- }"
	eval "export -- \"$var=\${$var:+\${$var}\${value:+\$sep}}\$value\""
}

config_set() {
	export -- "CONFIG_${1}_${2}=$3"
}

config() {
	local cfgtype="$1" name="$2"
	export CONFIG_NUM_SECTIONS=$((CONFIG_NUM_SECTIONS + 1))
	[ -n "$name" ] || name="cfg$CONFIG_NUM_SECTIONS"
	append CONFIG_SECTIONS "$name"
	export CONFIG_SECTION="$name"
	config_set "$name" TYPE "$cfgtype"
}

option() {
	config_set "$CONFIG_SECTION" "$1" "$2"
}

list() {
	local len
	config_get len "$CONFIG_SECTION" "${1}_LENGTH" 0
	[ "$len" != 0 ] || append CONFIG_LIST_STATE "${CONFIG_SECTION}_${1}"
	len=$((len + 1))
	config_set "$CONFIG_SECTION" "${1}_ITEM$len" "$2"
	config_set "$CONFIG_SECTION" "${1}_LENGTH" "$len"
	append "CONFIG_${CONFIG_SECTION}_${1}" "$2" " "
}

package() { :; }

config_load() {
	local file="${UCI_CONFIG_DIR:-/etc/config}/$1" var
	for var in $CONFIG_LIST_STATE; do
		export -- "CONFIG_${var}=" "CONFIG_${var}_LENGTH="
	done
	export CONFIG_LIST_STATE="" CONFIG_SECTIONS="" CONFIG_NUM_SECTIONS=0 CONFIG_SECTION=""
	[ -f "$file" ] || return 1
	# shellcheck source=/dev/null
	. "$file"
}

config_get() {
	case "$2${3:-$1}" in
	*[!A-Za-z0-9_]*) : ;;
	*)
		case "$3" in
		"") eval echo "\"\${CONFIG_${1}_${2}:-\${3}}\"" ;;
		*) eval export -- "${1}=\${CONFIG_${2}_${3}:-\${4}}" ;;
		esac
		;;
	esac
}

config_get_bool() {
	local _tmp
	config_get _tmp "$2" "$3" "$4"
	case "$_tmp" in
	1 | on | true | yes | enabled) _tmp=1 ;;
	0 | off | false | no | disabled) _tmp=0 ;;
	*) _tmp="$4" ;;
	esac
	export -- "$1=$_tmp"
}

config_foreach() {
	local function="$1" type="$2" section cfgtype
	[ "$#" -ge 1 ] && shift
	[ "$#" -ge 1 ] && shift
	for section in $CONFIG_SECTIONS; do
		config_get cfgtype "$section" TYPE
		[ -n "$type" ] && [ "$cfgtype" != "$type" ] && continue
		eval "$function \"\$section\" \"\$@\""
	done
}

config_list_foreach() {
	local section="$1" option="$2" function="$3" val len c=1
	[ "$#" -ge 3 ] || return 0
	shift 3
	config_get len "$section" "${option}_LENGTH"
	[ -n "$len" ] || return 0
	while [ "$c" -le "$len" ]; do
		config_get val "$section" "${option}_ITEM$c"
		eval "$function \"\$val\" \"\$@\""
		c=$((c + 1))
	done
}
