#!/usr/bin/env bash
# Prints every PromQL expression of the Grafana dashboard (charts/paddock/dashboards/paddock.json
# by default, or $1), one per line (multi-line expressions joined with spaces), with Grafana's
# variables replaced so that each line is a query a plain Prometheus can run:
#   $pool, $agent (and ${pool}, ${pool:regex}, ...)  ->  .*   (used only in =~ matchers)
#   $__rate_interval, $__interval                     ->  $RATE_INTERVAL (default 1m)
#   $__range                                          ->  $RANGE (default 1h)
# Exits non-zero when the dashboard cannot be read, has no expressions, uses a dashboard
# variable outside a regex matcher, or a `$` is left after substitution.
# Needs jq. Usage: e2e/dashboard-exprs.sh [dashboard.json] | while read -r q; do ...; done
set -euo pipefail
DASH=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/charts/paddock/dashboards/paddock.json}
RATE_INTERVAL=${RATE_INTERVAL:-1m}
RANGE=${RANGE:-1h}
command -v jq >/dev/null || { echo "dashboard-exprs.sh: jq is missing (apt-get install jq)" >&2; exit 2; }

# Targets of top-level panels and of panels nested in (collapsed) rows.
exprs=$(jq -r '[.panels[]? | ., (.panels[]?)] | .[] | .targets[]? | .expr // empty
  | gsub("\\s*\\n\\s*"; " ")' "$DASH")
[ -n "$exprs" ] || { echo "dashboard-exprs.sh: no expressions in $DASH" >&2; exit 1; }
# Names of the dashboard's own variables (not datasource ones, which never occur in a query).
vars=$(jq -r '.templating.list[]? | select(.type != "datasource") | .name' "$DASH")

out=$exprs
for v in $vars; do
  # A variable must only stand in a regex matcher (label=~"$v"), where ".*" matches everything.
  if grep -Eq "(^|[^~])\"[^\"]*\\\$(\\{)?$v\\b" <<<"$out"; then
    echo "dashboard-exprs.sh: \$$v is used outside a =~ matcher:" >&2
    grep -E "(^|[^~])\"[^\"]*\\\$(\\{)?$v\\b" <<<"$out" >&2
    exit 1
  fi
  out=$(sed -E "s/\\\$\\{$v(:[a-z]+)?\\}/.*/g; s/\\\$$v\\b/.*/g" <<<"$out")
done
out=$(sed -E "s/\\\$(\\{)?__rate_interval(\\})?/$RATE_INTERVAL/g; s/\\\$(\\{)?__interval(\\})?/$RATE_INTERVAL/g; s/\\\$(\\{)?__range(\\})?/$RANGE/g" <<<"$out")
if grep -n '\$' <<<"$out" >&2; then
  echo "dashboard-exprs.sh: unsubstituted variables above" >&2
  exit 1
fi
printf '%s\n' "$out"
