#!/bin/sh
# Writes server.properties from the KAFKA_* variables (as the official image does:
# KAFKA_LISTENER_SECURITY_PROTOCOL_MAP → listener.security.protocol.map), formats
# the KRaft storage once, then runs the broker in the foreground.
set -eu
conf=/opt/kafka/config/server.properties
: > "$conf"
env | sort | while IFS='=' read -r name value; do
  case "$name" in
    KAFKA_HEAP_OPTS|KAFKA_JVM_OPTS) ;;
    KAFKA_*) echo "$(echo "${name#KAFKA_}" | tr 'A-Z_' 'a-z.')=$value" >> "$conf" ;;
  esac
done
grep -q '^log.dirs=' "$conf" || echo "log.dirs=/var/lib/kafka/data" >> "$conf"
logs=$(sed -n 's/^log.dirs=//p' "$conf" | cut -d, -f1)
cp="/opt/kafka/libs/*"
log4j="-Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties"
if [ ! -f "$logs/meta.properties" ]; then
  java $log4j -cp "$cp" kafka.tools.StorageTool format --ignore-formatted \
    -t "${CLUSTER_ID:-$(java -cp "$cp" kafka.tools.StorageTool random-uuid)}" -c "$conf"
fi
# shellcheck disable=SC2086 # the options are a list
exec java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m} ${KAFKA_JVM_OPTS:-} $log4j -cp "$cp" kafka.Kafka "$conf"
