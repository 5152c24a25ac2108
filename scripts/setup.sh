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

# The Java side, one Maven build of java/pom.xml: the job's classes (java/src: the Kafka value
# deserializer that computes the scoring shard, the micro-batcher, the line splitter before the
# scores sink) compiled against Flink and unit-tested into .cache/jars/flink/vad-records.jar, beside
# the Flink Kafka connector it fetches (both in the job's pipeline.jars), and a Kafka broker with its
# dependencies in .cache/jars/kafka. Rebuilt when a jar is missing or anything under java/ (except
# Maven's own target/) is newer than the stamp of the last build.
if ! ls .cache/jars/flink/flink-sql-connector-kafka-*.jar >/dev/null 2>&1 \
   || ! ls .cache/jars/kafka/kafka_2.13-*.jar >/dev/null 2>&1 \
   || [ ! -f .cache/jars/flink/vad-records.jar ] \
   || [ ! -f .cache/jars/.stamp ] \
   || [ -n "$(find java -path java/target -prune -o -type f -newer .cache/jars/.stamp -print)" ]; then
  echo "setup: Java build through Maven (job classes and tests, Flink Kafka connector, Kafka broker)"
  command -v mvn >/dev/null || { echo "setup: Maven (mvn) is required" >&2; exit 1; }
  command -v javac >/dev/null || { echo "setup: a JDK 17 (javac) is required" >&2; exit 1; }
  # From empty, so a version bump in the pom leaves no jar of the old version behind.
  rm -rf .cache/jars
  mvn -q -B -f java/pom.xml package
  touch .cache/jars/.stamp
fi

if ! command -v redis-server >/dev/null; then
  echo "setup: redis-server from Debian"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi
if ! command -v openssl >/dev/null; then
  # The secured stack (stack.secure, tests/integration/test_security.py) makes its CA with it.
  echo "setup: openssl from Debian"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openssl >/dev/null
fi
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  # The review page's browser test (tests/integration/test_review_page.py) drives Debian's Chromium.
  echo "setup: chromium and chromium-driver from Debian"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi
if ! command -v promtool >/dev/null; then
  # tests/k8s/test_monitoring.py checks and unit-tests the alert rules and dashboard queries with it.
  echo "setup: promtool from Debian (package prometheus)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
command -v java >/dev/null || { echo "setup: a Java 17 runtime is required (the broker and Flink run on it)" >&2; exit 1; }
