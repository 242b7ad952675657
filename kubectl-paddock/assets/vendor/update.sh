#!/usr/bin/env bash
# Re-vendors the console's browser libraries from the npm registry at the pinned versions below
# (no CDN at run time: the files are compiled into the binary by src/console/assets.rs).
# Usage: bash kubectl-paddock/assets/vendor/update.sh   (needs npm)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
npm init -y >/dev/null
npm install --no-audit --no-fund --save-exact htmx.org@2.0.11 htmx-ext-sse@2.2.4 diff2html@3.4.56 >/dev/null
m=node_modules
cp $m/htmx.org/dist/htmx.min.js "$here/htmx.min.js"
cp $m/htmx.org/LICENSE "$here/LICENSE.htmx"
cp $m/htmx-ext-sse/dist/sse.min.js "$here/htmx-ext-sse.min.js"
cp $m/htmx-ext-sse/LICENSE "$here/LICENSE.htmx-ext-sse"
# The "slim" UI bundle: diff2html + jsdiff + hogan.js + highlight.js with its common languages.
cp $m/diff2html/bundles/js/diff2html-ui-slim.min.js "$here/diff2html-ui-slim.min.js"
cp $m/diff2html/bundles/css/diff2html.min.css "$here/diff2html.min.css"
cp $m/diff2html/LICENSE.md "$here/LICENSE.diff2html"
cp $m/highlight.js/styles/github.min.css "$here/highlight-github.min.css"
cp $m/highlight.js/LICENSE "$here/LICENSE.highlight.js"
cp $m/diff/LICENSE "$here/LICENSE.jsdiff"
cp $m/@profoundlogic/hogan/LICENSE "$here/LICENSE.hogan"
for p in htmx.org htmx-ext-sse diff2html highlight.js diff @profoundlogic/hogan; do
  printf '%s %s\n' "$p" "$(node -p "require('./$m/$p/package.json').version")"
done >"$here/VERSIONS"
