#!/usr/bin/env bash
# Give a new station its broker account: a password and an ACL block that lets it write only its own
# topics and read only its own command topics (cmd and engineering). Run as root on the broker host, then reload Mosquitto.
#   deploy/mosquitto/add-station.sh line1 cam2            # asks for the password
#   STATION_PASSWORD=... deploy/mosquitto/add-station.sh line1 cam2
# ACL_FILE / PASSWD_FILE / PREFIX override /etc/mosquitto/acl, /etc/mosquitto/passwd and "inspector".
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 <line> <station>" >&2
  exit 2
fi
line=$1
station=$2
prefix=${PREFIX:-inspector}
acl=${ACL_FILE:-/etc/mosquitto/acl}
passwd=${PASSWD_FILE:-/etc/mosquitto/passwd}
for name in "$line" "$station" "$prefix"; do
  case $name in
    ""|*/*|*+*|*"#"*|*" "*) echo "invalid topic level: '$name'" >&2; exit 2 ;;
  esac
done
if grep -qx "user $station" "$acl" 2>/dev/null; then
  echo "$acl already has a block for user $station" >&2
  exit 1
fi
# Home Assistant discovery node id: the same rule as controller/homeassistant.py node_id().
node=$(printf '%s_%s_%s' "$prefix" "$line" "$station" | sed 's/[^a-zA-Z0-9_-]/_/g')
base="$prefix/$line/$station"
{
  echo ""
  echo "user $station"
  echo "topic write $base/result"
  echo "topic write $base/status"
  echo "topic write $base/stats"
  echo "topic write $base/event"
  echo "topic read $base/cmd"
  echo "topic read $base/engineering"
  echo "topic write homeassistant/sensor/$node/+/config"
} >> "$acl"

create=""
[ -f "$passwd" ] || create="-c"
if [ -n "${STATION_PASSWORD:-}" ]; then
  mosquitto_passwd $create -b "$passwd" "$station" "$STATION_PASSWORD"
else
  mosquitto_passwd $create "$passwd" "$station"
fi
echo "added $station: ACL block in $acl, password in $passwd; now: systemctl reload mosquitto"
