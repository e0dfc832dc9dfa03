#!/bin/sh
# The sample manifests of tests/node/client/manifests/, made by the integrators' own tools from the
# partner guide's operations (tests/node/client/operations/ and, in relay-compiler's naming,
# client/relay/src/), each configured for SHA-256 ids. Run from anywhere:
#
#   tests/node/generate-manifests.sh [OUTPUT_DIR]     # default: tests/node/client/manifests
#
# The tools run in a scratch copy of the client, so their generated code never lands in the tree.
# tests/documents/test_sample_manifests.py re-runs this script and fails when its output drifts.
set -eu
NODE_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$NODE_DIR/../.." && pwd)
OUT=${1:-$NODE_DIR/client/manifests}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cp -R "$NODE_DIR/client/." "$WORK/"
rm -rf "$WORK/manifests"
cp "$ROOT/schema.graphql" "$WORK/schema.graphql"
ln -s "$NODE_DIR/node_modules" "$WORK/node_modules"
BIN="$NODE_DIR/node_modules/.bin"
cd "$WORK"

# graphql-codegen, client-preset: presetConfig.persistedDocuments.hashAlgorithm = sha256 (codegen.yml)
"$BIN/graphql-codegen" --config codegen.yml --silent
cp gql/persisted-documents.json "$OUT/codegen-persisted-documents.json"

# relay-compiler: persistConfig {"file": ..., "algorithm": "SHA256"} (relay.config.json); the file must exist
mkdir -p relay/__generated__
echo '{}' > relay-persisted-queries.json
"$BIN/relay-compiler" >/dev/null
cp relay-persisted-queries.json "$OUT/relay-persisted-queries.json"

# @apollo/generate-persisted-query-manifest: SHA-256 is its only algorithm
"$BIN/generate-persisted-query-manifest" --config persisted-query-manifest.config.json >/dev/null
cp apollo-persisted-query-manifest.json "$OUT/apollo-persisted-query-manifest.json"
echo "manifests written to $OUT"
