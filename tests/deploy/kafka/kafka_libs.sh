#!/usr/bin/env bash
# Puts the Kafka 3.7.0 jars (tests/deploy/kafka/pom.xml) into
# <build-dir>/deploy-kafka/libs once, from Maven Central, and prints the
# directory.   kafka_libs.sh <build-dir>
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=$1/deploy-kafka
mkdir -p "$dir"
if ! cmp -s "$here/pom.xml" "$dir/pom.xml" || [ ! -e "$dir/libs/.complete" ]; then
  rm -rf "$dir/libs"
  cp "$here/pom.xml" "$dir/pom.xml"
  (cd "$dir" && mvn -q -B -Dstyle.color=never dependency:copy-dependencies -DoutputDirectory=libs >&2)
  touch "$dir/libs/.complete"
fi
echo "$dir/libs"
