#!/usr/bin/env bash
# Writes argocd-cm-snippet.yaml from the health-*.lua scripts, each after lib.lua (the helpers
# they share; Argo CD runs each script alone), as the chart's template does (run after editing
# one of them; test.sh fails while the snippet is out of date). The snippet is a merge patch
# for argocd-cm:
#   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file argocd-cm-snippet.yaml
set -euo pipefail
DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
{
  echo "# Argo CD health checks for Paddock's kinds, as a merge patch for the argocd-cm ConfigMap:"
  echo "#   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file charts/paddock/argocd/argocd-cm-snippet.yaml"
  echo "# Generated from lib.lua and health-*.lua by gen-snippet.sh; do not edit (argocd/test.sh checks it)."
  echo "data:"
  for kind in AgentRun ApprovalGate RunnerPool AgentRunSet AgentRunTrigger; do
    lower=$(tr '[:upper:]' '[:lower:]' <<<"$kind")
    echo "  resource.customizations.health.paddock.dev_$kind: |"
    cat "$DIR/lib.lua" "$DIR/health-$lower.lua" | sed 's/^/    /; s/^ *$//'
  done
} >"$DIR/argocd-cm-snippet.yaml"
