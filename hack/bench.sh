#!/usr/bin/env bash
# Runs Riposte's benchmarks on the local control plane and writes
# test/bench/results*.md. BENCH_SEQUENTIAL and BENCH_BURST set the alert
# counts, BENCH_DRIFT_PODS and BENCH_DRIFT_VIOLATIONS the drift bench's;
# BENCH_RUN picks benchmarks by name (for example TestBenchDrift).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
go test -tags bench -count=1 -timeout 45m -v -run "${BENCH_RUN:-TestBench}" ./test/bench/
if [[ -z "${BENCH_RUN:-}" ]]; then
	# The latency again with etcd not syncing to disk: results-nofsync.md.
	RIPOSTE_ETCD_UNSAFE_NO_FSYNC=true go test -tags bench -count=1 -timeout 15m -v -run 'TestBenchWebhookToRemediated$' ./test/bench/
fi
