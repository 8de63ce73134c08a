#!/bin/sh
# The packages feed's CI runs this on the target after installing the
# package: $1 is the package name, $2 its version.

case "$1" in
freimesh)
	freimesh-agent --version | grep -F "freimesh-agent ${2%%-*}"
	;;
esac
