#!/usr/bin/env bash
# Runs Riposte's benchmarks on the local control plane and writes
# test/bench/results*.md. BENCH_SEQUENTIAL and BENCH_BURST set the alert
# counts, BENCH_DRIFT_PODS and BENCH_DRIFT_VIOLATIONS the drift bench's;
# BENCH_RUN picks benchmarks by name (for example TestBenchDrift);
# BENCH_DRIFT_CONTAINER_LIMIT (150Mi) and BENCH_DRIFT_MEMORY_LIMIT_RATIO run
# the drift bench's manager in a memory cgroup of that limit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
go test -tags bench -count=1 -timeout 45m -v -run "${BENCH_RUN:-TestBench}" ./test/bench/
if [[ -z "${BENCH_RUN:-}" ]]; then
	# The latency again with etcd not syncing to disk: results-nofsync.md.
	RIPOSTE_ETCD_UNSAFE_NO_FSYNC=true go test -tags bench -count=1 -timeout 15m -v -run 'TestBenchWebhookToRemediated$' ./test/bench/
	# Drift again with the manager in a container limited to 150Mi, as the
	# chart's values.yaml suggests for it: results-drift-memlimit.md.
	BENCH_DRIFT_CONTAINER_LIMIT=150Mi BENCH_DRIFT_MEMORY_LIMIT_RATIO=0.65 go test -tags bench -count=1 -timeout 15m -v -run 'TestBenchDrift$' ./test/bench/
fi
