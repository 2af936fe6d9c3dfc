#!/usr/bin/env bash
# Runs each fuzz target for FUZZTIME (default 90s) and writes
# test/faults/results-fuzz.md: executions, new inputs and crashes per
# target, with the machine. A crash is saved by Go under the package's
# testdata/fuzz/<target>/ and becomes a regression test that `go test` (and
# so `make test`) runs from then on; this script fails when any target
# crashed. FUZZ_SAVE_CORPUS=1 also copies the inputs the fuzzer found
# interesting into testdata/fuzz, so they are committed as the seed corpus.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
FUZZTIME="${FUZZTIME:-90s}"
targets=(
	"./internal/intake FuzzWebhook the webhook: decoding, checking and answering any body"
	"./internal/alertlabels FuzzOf what labels name: Falco, kube-state-metrics, node-exporter, renamed labels"
	"./internal/match FuzzPlaybookExpressions a playbook's CEL when, templates, drift rule, message and matcher regexp"
	"./internal/cli FuzzOfflineFile the files kubectl riposte test reads"
)
logs="$(mktemp -d)"
cache="$(go env GOCACHE)/fuzz"
module="$(go list -m)"
failed=0
rows=""
total=0
for t in "${targets[@]}"; do
	read -r pkg name what <<<"$t"
	log="$logs/$name.log"
	echo "fuzz: $name ($pkg) for $FUZZTIME" >&2
	status=passed
	if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 2s "$pkg" >"$log" 2>&1; then
		status="CRASHED: $(grep -m1 -o 'testdata/fuzz/[^ ]*' "$log" || echo "see the log")"
		failed=1
		cat "$log" >&2
	fi
	execs="$(grep -o 'execs: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)"
	found="$(grep -o 'new interesting: [0-9]*' "$log" | tail -1 | cut -d' ' -f3)"
	execs="${execs:-0}"
	total=$((total + execs))
	rows+="| \`$name\` ($pkg) | $what | $execs | ${found:-0} | $status |"$'\n'
	if [[ "${FUZZ_SAVE_CORPUS:-}" == 1 && -d "$cache/$module/${pkg#./}/$name" ]]; then
		mkdir -p "$pkg/testdata/fuzz/$name"
		cp "$cache/$module/${pkg#./}/$name"/* "$pkg/testdata/fuzz/$name/"
	fi
done
mkdir -p test/faults
{
	echo "# Fuzzing"
	echo
	echo "Written by \`make fuzz\` (hack/fuzz.sh) on $(date -u +%Y-%m-%dT%H:%M:%SZ), each target for $FUZZTIME with Go's native fuzzing."
	echo
	echo "## Machine"
	echo
	echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
	echo "- Go: $(go env GOVERSION)"
	echo
	echo "## Targets"
	echo
	echo "Each target states what must hold for every input, not only that nothing panics; the seed corpus (testdata/fuzz and the seeds in the code) runs in every \`go test\`."
	echo
	echo "| target | what it is given | executions | new inputs found | result |"
	echo "|---|---|---|---|---|"
	printf "%s" "$rows"
	echo
	echo "**$total executions in total.**"
} >test/faults/results-fuzz.md
cat test/faults/results-fuzz.md
exit "$failed"
