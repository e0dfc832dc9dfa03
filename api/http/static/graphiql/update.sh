#!/usr/bin/env bash
# Re-vendor GraphiQL and React from the npm registry, at the versions pinned in package.json.
# Works in a temporary folder (no node_modules here) and copies back only the files the page loads.
# graphiql's published graphiql.min.js is a webpack *development* build (3.5 MB, not minified):
# esbuild minifies it (and the CSS), keeping the licence comments at the end of each file.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
version() { node -p "const p = require('$here/package.json'); p.dependencies['$1'] || p.devDependencies['$1']"; }
packages=(graphiql react react-dom @graphiql/plugin-explorer graphiql-explorer)

cd "$work"
for package in "${packages[@]}"; do
  tarball=$(npm pack --silent "$package@$(version "$package")")
  mkdir -p "$package" && tar xzf "$tarball" -C "$package" --strip-components 1
done
npm install --silent --no-save --no-audit --no-fund --no-package-lock "esbuild@$(version esbuild)" >/dev/null

minify() { ./node_modules/.bin/esbuild "$1" --minify --legal-comments=eof --log-level=error --outfile="$2"; }
minify graphiql/graphiql.min.js "$here/graphiql.min.js"
minify graphiql/graphiql.min.css "$here/graphiql.min.css"
cp react/umd/react.production.min.js react-dom/umd/react-dom.production.min.js "$here/"
# The explorer plugin's UMD build is minified already; it bundles graphiql-explorer (packed above for its licence).
cp @graphiql/plugin-explorer/dist/index.umd.js "$here/plugin-explorer.umd.js"
cp @graphiql/plugin-explorer/dist/style.css "$here/plugin-explorer.css"
{
  for package in "${packages[@]}"; do
    printf '== %s@%s (%s) ==\n' "$package" "$(node -p "require('./$package/package.json').version")" \
      "$(node -p "require('./$package/package.json').license")"
    # @graphiql/plugin-explorer publishes no LICENSE file: it is graphiql's repository, under graphiql's.
    cat "$package/LICENSE" 2>/dev/null || cat graphiql/LICENSE
    echo
  done
} >"$here/LICENSES.txt"
echo "vendored: $(for package in "${packages[@]}"; do printf '%s@%s ' "$package" "$(version "$package")"; done)(minified with esbuild@$(version esbuild))"
