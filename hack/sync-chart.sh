#!/usr/bin/env bash
# Copies what config/ generates or defines into the Helm chart, so that the
# chart and `kubectl apply -k config/default` install the same CRDs, RBAC,
# admission policies, alerts and dashboard. `make manifests` runs it;
# `make verify` fails when the copies are stale.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
chart=charts/riposte
rm -rf "$chart/crds" "$chart/files"
mkdir -p "$chart/crds" "$chart/files/rbac" "$chart/files/policies"
cp config/crd/bases/*.yaml "$chart/crds/"
cp config/rbac/role.yaml "$chart/files/rbac/manager-role.yaml"
for f in agent_role approver_role incident_viewer_role playbook_editor_role metrics_reader_role leader_election_role operator_role impersonation_role action_roles remediator; do
  cp "config/rbac/$f.yaml" "$chart/files/rbac/"
done
for f in config/policies/*.yaml; do
  [[ $(basename "$f") == kustomization.yaml ]] || cp "$f" "$chart/files/policies/"
done
cp config/prometheus/rules.yaml "$chart/files/prometheus-rules.yaml"
cp config/grafana/riposte-dashboard.json "$chart/files/riposte-dashboard.json"
