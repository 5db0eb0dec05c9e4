#!/bin/bash
# KAFKA_FOO_BAR=x -> foo.bar=x (as the official image), format the log dir once, run the broker.
set -euo pipefail
conf=/tmp/server.properties
: >"$conf"
echo "log.dirs=/var/lib/kafka/data" >>"$conf"
while IFS='=' read -r name value; do
  case "$name" in
    KAFKA_HEAP_OPTS|KAFKA_OPTS|KAFKA_JVM_OPTS) continue ;;
    KAFKA_*) key=$(echo "${name#KAFKA_}" | tr 'A-Z_' 'a-z.'); echo "$key=$value" >>"$conf" ;;
  esac
done < <(env)
cp=/opt/kafka/libs/'*'
jvm=(${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m} -XX:+UseG1GC -Dlog4j2.configurationFile=file:/opt/kafka/config/log4j2.xml)
java "${jvm[@]}" -cp "$cp" kafka.tools.StorageTool format --ignore-formatted \
  -t "${CLUSTER_ID:-5L6g3nShT-eMCtK--X86sw}" -c "$conf"
exec java "${jvm[@]}" -cp "$cp" kafka.Kafka "$conf"
