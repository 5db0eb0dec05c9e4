#!/bin/bash
# Bounded: Docker 20.10 does not kill a health check that outlives its timeout, and JVMs pile up.
exec timeout 20 java -Xms32m -Xmx128m -XX:TieredStopAtLevel=1 \
  -Dlog4j2.configurationFile=file:/opt/kafka/config/log4j2.xml \
  -cp '/opt/kafka/libs/*' org.apache.kafka.tools.BrokerApiVersionsCommand "$@"
