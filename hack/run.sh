#!/usr/bin/env bash
# `make run`: runs Riposte against the kubeconfig's cluster when one is
# reachable; otherwise starts a local control plane (hack/localcluster), installs
# the CRDs and config/samples/cluster, and runs the manager on it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

KUBE_VERSION="${KUBE_VERSION:-1.37.2}"
ASSETS="${KUBEBUILDER_ASSETS:-$PWD/bin/k8s/$KUBE_VERSION}"
KUBECTL="$ASSETS/kubectl"
LOCAL=bin/local
INTAKE_ADDR="${INTAKE_ADDR:-127.0.0.1:8090}"
mkdir -p "$LOCAL"

# The intake token Alertmanager (and the README's curl) presents; made once.
TOKEN_FILE="$LOCAL/intake-token"
if [[ ! -s "$TOKEN_FILE" ]]; then
  (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$TOKEN_FILE")
fi

go build -o bin/riposte ./cmd/riposte
go build -o bin/kubectl-riposte ./cmd/kubectl-riposte

# Not `kubectl version`: a kubectl built from source carries no version stamp,
# so that command exits 1 even when the server answers.
reachable() {
  [[ -n "${KUBECONFIG:-}" || -f "$HOME/.kube/config" ]] || return 1
  "$KUBECTL" get --raw=/readyz --request-timeout=3s >/dev/null 2>&1
}

if reachable; then
  echo "run: using the cluster of your kubeconfig ($("$KUBECTL" config current-context)), as your own identity"
  echo "run: (where config/policies is installed, only Riposte's service account may open alert incidents: install with config/default instead)"
  "$KUBECTL" apply --server-side -f config/crd/bases
  "$KUBECTL" create namespace riposte-system --dry-run=client -o yaml | "$KUBECTL" apply --server-side -f -
  "$KUBECTL" apply --server-side -f config/rbac/action_roles.yaml
  cat <<MSG

Riposte's Alertmanager webhook will listen on http://$INTAKE_ADDR/webhook/alertmanager
with the bearer token in $TOKEN_FILE. Playbooks are yours to apply (see config/samples/cluster).

MSG
  exec bin/riposte --namespace riposte-system --intake-bind-address "$INTAKE_ADDR" \
    --intake-token-file "$TOKEN_FILE" --metrics-bind-address 127.0.0.1:8080 --health-probe-bind-address 127.0.0.1:8081 \
    --record-dir "$LOCAL/records" --record-signing-key "$LOCAL/record-signing.key" --record-create-signing-key
fi

echo "run: no reachable cluster; starting a local control plane from $ASSETS"
go build -o bin/localcluster ./hack/localcluster
KUBEBUILDER_ASSETS="$ASSETS" bin/localcluster --dir "$LOCAL" \
  --apply config/rbac/action_roles.yaml,config/samples/cluster > "$LOCAL/localcluster.log" 2>&1 &
CP_PID=$!
trap 'kill $CP_PID 2>/dev/null; wait $CP_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 240); do
  grep -q "local control plane ready" "$LOCAL/localcluster.log" 2>/dev/null && break
  kill -0 $CP_PID 2>/dev/null || { cat "$LOCAL/localcluster.log"; exit 1; }
  sleep 0.5
done
grep -q "local control plane ready" "$LOCAL/localcluster.log" || { echo "run: the control plane did not start"; cat "$LOCAL/localcluster.log"; exit 1; }
grep "kept the data" "$LOCAL/localcluster.log" | sed 's/^/run: /' || true

cat <<MSG

Riposte is starting on a local control plane. In another terminal:

  export KUBECONFIG=$PWD/$LOCAL/kubeconfig PATH=$ASSETS:\$PATH

  # an alert, as Alertmanager sends it:
  curl -sS -H "Authorization: Bearer \$(cat $TOKEN_FILE)" --data @config/samples/alert.json http://$INTAKE_ADDR/webhook/alertmanager
  kubectl get incidents,approvalgates,networkpolicies -A

  # a warning waits for a person; decide with the kubectl plugin (bin/kubectl-riposte):
  curl -sS -H "Authorization: Bearer \$(cat $TOKEN_FILE)" --data @config/samples/alert-warning.json http://$INTAKE_ADDR/webhook/alertmanager
  export PATH=$PWD/bin:\$PATH
  kubectl riposte gates -A
  kubectl riposte approve -n demo am-b2c3d4e5f6071829 --reason "confirmed with the web team"

  # or through a real Alertmanager:
  bin/alertmanager --config.file=config/samples/alertmanager.yml --storage.path=$LOCAL/alertmanager --web.listen-address=127.0.0.1:9093 --cluster.listen-address=
  curl -sS -H 'Content-Type: application/json' http://127.0.0.1:9093/api/v2/alerts -d '[{"labels":{"alertname":"ContainerShellSpawned","severity":"critical","namespace":"demo","pod":"web"}}]'

  kubectl apply -k config/samples/policies          # the drift policy pack
  kubectl get incidents -A -l riposte.dev/source=drift
  kubectl riposte test -f config/samples/policies -f test/testdata/offline   # no cluster needed

  # the signed record of every decision and change, checked with the key's public half:
  openssl pkey -in $LOCAL/record-signing.key -pubout > $LOCAL/records.pub
  kubectl riposte verify --dir $LOCAL/records --public-key $LOCAL/records.pub

Ctrl-C stops Riposte and the control plane; what they stored is kept in $LOCAL/etcd for the
next make run (make run-clean forgets it). The records in $LOCAL/records outlive even that.

MSG
bin/riposte --kubeconfig "$LOCAL/manager.kubeconfig" --namespace riposte-system --intake-bind-address "$INTAKE_ADDR" \
  --intake-token-file "$TOKEN_FILE" --metrics-bind-address 127.0.0.1:8080 --health-probe-bind-address 127.0.0.1:8081 \
  --record-dir "$LOCAL/records" --record-signing-key "$LOCAL/record-signing.key" --record-create-signing-key
