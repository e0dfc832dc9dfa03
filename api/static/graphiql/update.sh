#!/usr/bin/env bash
# Re-vendor GraphiQL and React from the npm registry: ./update.sh [graphiql-version] [react-version]
set -euo pipefail
graphiql=${1:-3.8.3} react=${2:-18.2.0}
here=$(cd "$(dirname "$0")" && pwd) work=$(mktemp -d)
cd "$work"
npm pack --silent "graphiql@$graphiql" "react@$react" "react-dom@$react" >/dev/null
for f in *.tgz; do mkdir "${f%.tgz}" && tar xzf "$f" -C "${f%.tgz}" --strip-components 1; done
cp "graphiql-$graphiql"/graphiql.min.{js,css} "$here/"
cp "react-$react/umd/react.production.min.js" "react-dom-$react/umd/react-dom.production.min.js" "$here/"
rm -rf "$work"
echo "vendored graphiql@$graphiql react@$react: update VERSIONS.md"
