#!/usr/bin/env bash
# Everything a fresh machine needs, from the package registries only; each step is skipped when done.
#   .venv/ with the pinned requirements and the `vad` command; Java jars through Maven; Redis from Debian.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

stamp=".venv/.setup-$(cat requirements.txt requirements-dev.txt pyproject.toml | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "setup: Python venv and requirements"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements.txt -r requirements-dev.txt
  .venv/bin/pip install -q --no-deps -e .
  rm -f .venv/.setup-*
  touch "$stamp"
fi

if ! ls .cache/jars/flink/flink-sql-connector-kafka-*.jar >/dev/null 2>&1 \
   || ! ls .cache/jars/kafka/kafka_2.13-*.jar >/dev/null 2>&1 \
   || [ java/pom.xml -nt .cache/jars/.stamp ]; then
  echo "setup: Java artifacts (Flink Kafka connector, Kafka broker) through Maven"
  command -v mvn >/dev/null || { echo "setup: Maven (mvn) is required" >&2; exit 1; }
  rm -rf .cache/jars
  mvn -q -B -f java/pom.xml package
  touch .cache/jars/.stamp
fi

# The job's Java classes (java/src: the Kafka value deserializer that computes the scoring shard, the
# micro-batcher, the line splitter before the scores sink), compiled against the Flink that pip
# installed: no build plugins to fetch. The jar lives beside the connector, in pipeline.jars.
java_src=java/src/main/java/io/github/vad/flink
records_jar=.cache/jars/flink/vad-records.jar
if [ ! -f "$records_jar" ] || [ -n "$(find "$java_src" -name '*.java' -newer "$records_jar")" ]; then
  echo "setup: compiling $java_src"
  command -v javac >/dev/null || { echo "setup: a JDK (javac) is required" >&2; exit 1; }
  dist=$(ls .venv/lib/python*/site-packages/pyflink/lib/flink-dist-*.jar | head -1)
  rm -rf .cache/java-classes
  javac -nowarn --release 17 -cp "$dist" -d .cache/java-classes "$java_src"/*.java
  jar cf "$records_jar" -C .cache/java-classes .
fi

if ! command -v redis-server >/dev/null; then
  echo "setup: redis-server from Debian"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi
command -v java >/dev/null || { echo "setup: a Java 17 runtime is required (the broker and Flink run on it)" >&2; exit 1; }
