# Riposte's Makefile. Tools are pinned here and installed into bin/; the test
# control plane (kube-apiserver, etcd, kubectl) and Alertmanager are built from
# source by hack/build-testbins.sh and cached outside the clone.

KUBE_VERSION ?= 1.37.2
ETCD_VERSION ?= 3.6.16
ALERTMANAGER_VERSION ?= 0.28.1
CONTROLLER_TOOLS_VERSION ?= v0.23.0

LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
KUBEBUILDER_ASSETS ?= $(LOCALBIN)/k8s/$(KUBE_VERSION)
ALERTMANAGER ?= $(LOCALBIN)/alertmanager
HELM ?= $(LOCALBIN)/helm
export KUBE_VERSION ETCD_VERSION ALERTMANAGER_VERSION

GO_TEST_FLAGS ?= -count=1

.PHONY: all
all: build

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate the CRDs and the manager's RBAC from markers, and copy them into the Helm chart.
	$(CONTROLLER_GEN) rbac:roleName=riposte-manager crd paths="./..." output:crd:artifacts:config=config/crd/bases
	hack/sync-chart.sh
	go run ./hack/gen-reference config/crd/bases docs/reference.md

.PHONY: generate
generate: controller-gen ## Generate the DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./..."

.PHONY: fmt
fmt: ## go fmt.
	go fmt ./...

.PHONY: vet
vet: ## go vet.
	go vet ./...

.PHONY: verify
verify: manifests generate ## Fail when generated files or formatting are stale.
	@test -z "$$(gofmt -l api cmd controllers internal test hack)" || { echo "gofmt needed on:"; gofmt -l api cmd controllers internal test hack; exit 1; }
	@git diff --exit-code -- api config charts docs/reference.md || { echo "generated files or the chart's copies are stale: run 'make manifests generate' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- api config charts docs/reference.md)" || { echo "untracked generated files:"; git status --porcelain -- api config charts; exit 1; }

.PHONY: testbins
testbins: ## Build kube-apiserver, etcd, kubectl, Alertmanager and SeaweedFS from source (cached), and install Debian's Chromium.
	hack/build-testbins.sh all
	hack/install-chromium.sh

.PHONY: test
test: verify vet testbins helm-lint ## Run every test: unit, controllers on a real API server, e2e with a real Alertmanager, then the fault suite at a small scale.
	KUBEBUILDER_ASSETS=$(KUBEBUILDER_ASSETS) ALERTMANAGER=$(ALERTMANAGER) HELM=$(HELM) go test $(GO_TEST_FLAGS) $$(go list ./... | grep -v /test/faults)
	# Alone, after the rest: its leases and timeouts are short, and the
	# other suites would share its two cores.
	KUBEBUILDER_ASSETS=$(KUBEBUILDER_ASSETS) ALERTMANAGER=$(ALERTMANAGER) go test $(GO_TEST_FLAGS) -timeout 30m ./test/faults/

.PHONY: helm-lint
helm-lint: testbins ## Lint the Helm chart and render it with every option on.
	$(HELM) lint charts/riposte --strict --kube-version $(KUBE_VERSION)
	$(HELM) lint charts/riposte --strict --kube-version $(KUBE_VERSION) --set intake.token=x,intake.tlsSecretName=tls,metrics.serviceMonitor.enabled=true,metrics.prometheusRule.enabled=true,grafana.dashboard.enabled=true,alertmanagerURL=http://alertmanager.monitoring:9093,budget.maxWorkloadFraction=0.5,remediator.enabled=false,records.sink=dir
	$(HELM) lint charts/riposte --strict --kube-version $(KUBE_VERSION) --set records.sink=s3,records.s3.bucket=riposte-records,records.s3.credentialsSecret=riposte-s3,records.s3.objectLock=8760h
	$(HELM) template riposte charts/riposte --namespace riposte-system --kube-version $(KUBE_VERSION) > /dev/null

# The attacks on the trust model (TestAttack...) and the tests of the
# defences that already held; docs/security.md maps each to its guarantee.
SECURITY_TESTS ?= TestAttack|TestReportScope|TestDecisionsAreBoundToTheCaller|TestRequesterCannotApproveTheirOwnIncident|TestApproveVerbIsScopedByRoleBinding|TestGatePlanIsImmutableAndDecisionsAppendOnly|TestIncidentIdentityIsImmutable|TestNothingRunsWithoutTheApprovedPlan|TestUndoRequestsCannotBeForged|TestIncidentsThatMustNotBeRemediated|TestEnrichmentNeverCopiesSecrets|TestPlaybookAccountBoundsWhatChanges|TestManagerPermissionsAreDocumented|TestIntakeNeverTakesOverAnIncidentItDidNotStore|TestNotifyToAnUnlistedHost|TestHandlerNeverLogsTheToken|TestDecodeRefusesDuplicateKeys|TestDecodeBoundsAlerts|TestIncidentName|TestDestinations|TestPostClassifiesAnswers|TestTrustedWebhookFollowsNoRedirect|TestNamespaceComesOnlyFromNamespaceLabels|TestIncidentNamespaceFromRealLabelSets|TestKubeStateMetricsAlertLandsWithItsTarget|TestIntakeIgnoresAStaleNotification|TestTimeRefusal|TestOddStoredTimesNeverFreezeAnIncident|TestPolicyPackWorkloadIsolationTakesOnlyItsPods|TestRetentionDeletesOnlyWhatIsClosedAndHoldsNothing|TestVerifyCatchesEveryTampering|TestDirRefusesARecordAlreadyStored|TestRecordsOutliveTheIncident|TestAttackForgingWhereARecordIs|TestAgentProposesAndPeopleDecide|TestAgentPermissionsAreDocumented

.PHONY: test-security
test-security: testbins ## Only the attack suite (TestAttack...): each attack on the trust model, on a real API server with the shipped RBAC and admission policies.
	KUBEBUILDER_ASSETS=$(KUBEBUILDER_ASSETS) go test $(GO_TEST_FLAGS) ./controllers ./controllers/drift ./controllers/retention ./internal/drift ./internal/intake ./internal/notify ./internal/alertlabels ./internal/record -run '$(SECURITY_TESTS)'

.PHONY: test-e2e
test-e2e: testbins ## Only the end-to-end tests.
	KUBEBUILDER_ASSETS=$(KUBEBUILDER_ASSETS) ALERTMANAGER=$(ALERTMANAGER) go test $(GO_TEST_FLAGS) -v ./test/e2e/...

.PHONY: bench
bench: testbins ## Measure webhook-to-Remediated, per-action, enrichment and drift detection, then the fault suite; writes test/bench/results*.md and test/faults/results.md.
	KUBEBUILDER_ASSETS=$(KUBEBUILDER_ASSETS) hack/bench.sh
	$(MAKE) test-faults

.PHONY: test-faults
test-faults: testbins ## The fault suite at full scale (100 leader kills, API-server outage, etcd restart, drift restart on 10,000 pods, 50,000-alert soak); writes test/faults/results.md.
	KUBEBUILDER_ASSETS=$(KUBEBUILDER_ASSETS) ALERTMANAGER=$(ALERTMANAGER) hack/faults.sh

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 90s); writes test/faults/results-fuzz.md, fails on any crash.
	hack/fuzz.sh

##@ Build and run

.PHONY: build
build: ## Build the manager and the kubectl plugin (with kubectl's completion hook for it).
	go build -o $(LOCALBIN)/riposte ./cmd/riposte
	go build -o $(LOCALBIN)/kubectl-riposte ./cmd/kubectl-riposte
	install -m 0755 hack/kubectl_complete-riposte $(LOCALBIN)/

IMG ?= riposte:latest

.PHONY: docker-build
docker-build: ## Build the manager image (needs a Docker engine).
	docker build -t $(IMG) .

.PHONY: install-plugin
install-plugin: ## Install the kubectl plugin (kubectl riposte) and kubectl's completion hook for it (kubectl_complete-riposte) into $GOBIN.
	go install ./cmd/kubectl-riposte
	@gobin="$$(go env GOBIN)"; gobin="$${gobin:-$$(go env GOPATH)/bin}"; \
	  install -m 0755 hack/kubectl_complete-riposte "$$gobin/" && echo "installed $$gobin/kubectl-riposte and $$gobin/kubectl_complete-riposte"

.PHONY: run
run: testbins ## Run Riposte: against the kubeconfig's cluster when reachable, else on a local control plane.
	KUBEBUILDER_ASSETS=$(KUBEBUILDER_ASSETS) hack/run.sh

.PHONY: run-clean
run-clean: ## Forget what the local control plane of make run stored (its etcd data in bin/local/etcd); the next make run starts from nothing.
	rm -rf bin/local/etcd

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN)
$(CONTROLLER_GEN):
	@mkdir -p $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
	mv $(LOCALBIN)/controller-gen $(CONTROLLER_GEN)

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-14s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
