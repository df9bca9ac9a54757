#!/bin/sh
# The health check of the official image's /opt/kafka/bin/kafka-broker-api-versions.sh:
# a metadata round trip to the broker, not merely a bound port.
exec java -Xmx64m -cp "/opt/kafka/libs/*" \
  -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties \
  org.apache.kafka.tools.BrokerApiVersionsCommand "$@"
