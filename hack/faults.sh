#!/usr/bin/env bash
# Runs the fault suite (test/faults) at full scale and writes
# test/faults/results.md: the machine, then each fault's figures, then the
# fuzzing summary from results-fuzz.md (`make fuzz`). `make test` runs the
# same tests at a smaller scale. FAULTS_RUN picks tests by name.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
started="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
RIPOSTE_FAULTS_SCALE=full RIPOSTE_FAULTS_OUT="$out" \
	go test -count=1 -timeout 80m -v -run "${FAULTS_RUN:-.}" ./test/faults/
{
	echo "# Fault suite"
	echo
	echo "Written by \`make test-faults\` (hack/faults.sh) from a run started $started: real manager processes (the binary, as its service account with the shipped RBAC and admission policies), kube-apiserver and etcd built from source, and a real Alertmanager, on loopback. \`make test\` runs the same tests at a smaller scale. A goal that is a number, or says no 2xx or 503, is asserted (the test fails when it does not hold); rows whose goal is blank or says reported, and timings, are measured only."
	echo
	echo "## Machine"
	echo
	echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
	echo "- Memory: $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
	echo "- Kernel: $(uname -sr)"
	echo "- Go: $(go env GOVERSION); kube-apiserver ${KUBE_VERSION:-1.37.2}, etcd ${ETCD_VERSION:-3.6.16}, Alertmanager ${ALERTMANAGER_VERSION:-0.28.1}, as hack/build-testbins.sh builds them from the Makefile's pins (binaries built from source carry no version of their own)"
	echo
	for f in "$out"/*.md; do
		cat "$f"
		echo
	done
	echo "## Fuzzing"
	echo
	if [[ -f test/faults/results-fuzz.md ]]; then
		echo "From [results-fuzz.md](results-fuzz.md) (\`make fuzz\`): $(grep -o '[0-9]* executions in total' test/faults/results-fuzz.md), $(grep -c 'CRASHED' test/faults/results-fuzz.md || true) crashes."
	else
		echo "Not run yet: \`make fuzz\` writes results-fuzz.md."
	fi
} >test/faults/results.md
cat test/faults/results.md
