#!/bin/sh
# Mosquitto's password file, made from `name password` lines (docker-compose.yml's
# mqtt-logins config) before the broker starts: Mosquitto reads salted hashes only, so the
# passwords themselves never reach its configuration.
#   make-passwd.sh LOGINS_FILE OUTPUT_FILE
set -eu
logins="$1"
output="$2"
umask 077
rm -f "$output.new"
touch "$output.new"
while read -r name password || [ -n "${name:-}" ]; do
    [ -n "$name" ] || continue
    # mosquitto_passwd reads the password twice from stdin: it never appears on a command line.
    printf '%s\n%s\n' "$password" "$password" | mosquitto_passwd "$output.new" "$name" >/dev/null
done < "$logins"
# The broker drops to its own user before reading the file.
if id mosquitto >/dev/null 2>&1; then chown mosquitto "$output.new"; fi
mv "$output.new" "$output"
