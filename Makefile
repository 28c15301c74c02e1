# Wirelace. `make demo` shows the mesh in the lab; `make test` runs every test.
# Both set up what they need on a fresh machine (Debian packages, a real
# kube-apiserver and etcd built from the module proxy into .cache/).

GO            ?= go
BIN           := $(CURDIR)/bin
CACHE         := $(CURDIR)/.cache
# controller-gen is a tool of our module (go.mod's tool block): built with
# our versions of apimachinery, x/tools and the rest, it shares their
# compiled packages with vet instead of compiling its own set cold.
CONTROLLER_GEN := $(CACHE)/tools/controller-gen-$(shell $(GO) list -m -f '{{.Version}}' sigs.k8s.io/controller-tools)
export WIRELACE_CACHE := $(CACHE)
export CONTROLLER_GEN

# What is not built with the race detector is built as the image ships it
# (static, -trimpath): vet, the lab's tools and tests, the CNI reference
# plugins and the image the cluster tests assemble then share one compile
# of the dependencies, where cgo and static builds would need two.
export CGO_ENABLED := 0
export GOFLAGS := -trimpath $(GOFLAGS)

# Everything under ./e2e needs root and the lab; the rest are unit tests.
UNIT_PKGS = $(shell $(GO) list ./... | grep -v '/e2e')

WIREGUARD_GO := $(CACHE)/tools/wireguard-go-$(shell $(GO) list -m -f '{{.Version}}' golang.zx2c4.com/wireguard)

.PHONY: all build build-race cni-plugins k8s lab-bins lab-bins-background generate deps test unit checks fuzz e2e e2e-run demo bench clean fmt vet

all: build

# What ships, and the lab's own tools (demo, bench, building what the lab
# runs besides Wirelace).
PRODUCT  := ./cmd/... ./plugins/wirelace ./plugins/wirelace-ipam
BINARIES := $(PRODUCT) ./e2e/cmd/...

# Static, as the image ships them (the Dockerfile builds the same way; the
# lab's image test packs bin/ into an image).
build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ $(BINARIES)

# The lab runs the product's binaries for minutes in make test: built with
# the race detector (which needs cgo), and a race stops the process (GORACE
# below), so the test that saw it fails. demo and bench use the plain
# build. The lab's tools are not among them: no test runs them, and their
# plotting and image libraries would be compiled with the race detector
# for nothing.
build-race:
	@mkdir -p $(BIN)
	CGO_ENABLED=1 $(GO) build -race -o $(BIN)/ $(PRODUCT)

# The reference CNI plugins, at the version in go.mod: the lab's stand-ins
# for a primary CNI that wirelace is chained after (bridge, ptp with
# host-local). libcni in the lab looks here after bin/. They are "tool"
# lines in go.mod, so go.sum pins them and go mod tidy keeps them.
CNI_PLUGINS_PKG := github.com/containernetworking/plugins/plugins
cni-plugins:
	@mkdir -p $(CACHE)/cni-plugins
	$(GO) build -o $(CACHE)/cni-plugins/ $(CNI_PLUGINS_PKG)/main/bridge $(CNI_PLUGINS_PKG)/main/ptp $(CNI_PLUGINS_PKG)/ipam/host-local

$(CONTROLLER_GEN):
	@mkdir -p $(dir $@)
	$(GO) build -o $@.tmp sigs.k8s.io/controller-tools/cmd/controller-gen
	mv $@.tmp $@

# CRDs and deepcopy code come from the Go types in api/; a unit test fails
# when the committed files differ from what this produces.
generate: $(CONTROLLER_GEN)
	$(CONTROLLER_GEN) object paths=./api/...
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=install/crds
	cp install/crds/*.yaml install/helm/wirelace/crds/

deps:
	@e2e/deps.sh

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi

vet:
	$(GO) vet ./...

# Unit tests include the plugins' integration tests, which call ping and ip:
# deps first, so a fresh machine passes too.
unit: deps $(CONTROLLER_GEN)
	CGO_ENABLED=1 $(GO) test -race -count=1 $(UNIT_PKGS)

# kube-apiserver and etcd, built once into .cache/ (minutes when cold), before
# any test or lab starts its clock.
k8s:
	$(GO) run ./e2e/cmd/wirelace-lab-build --root $(CURDIR) --control-plane-only

# And what labs with real Kubernetes nodes and the chart tests need:
# kubelet, kube-controller-manager, kube-scheduler, containerd, helm.
lab-bins:
	$(GO) run ./e2e/cmd/wirelace-lab-build --root $(CURDIR)

# Native Go fuzz targets for every parser of untrusted input (package:target).
# make test runs each for FUZZTIME, a few thousand inputs (they must not have
# regressed; a count, not a duration: a short -fuzztime duration sometimes
# ends a clean run with "context deadline exceeded"); make fuzz FUZZTIME=5m
# looks harder. Crashers land in the package's testdata/fuzz, where go test
# replays them from then on.
FUZZTIME ?= 3000x
FUZZ_TARGETS := \
	netconf:FuzzLoadPluginConf netconf:FuzzLoadIPAMConf netconf:FuzzParsePodArgs \
	daemon/mesh:FuzzMeshNode \
	relay/protocol:FuzzReadFrame relay/protocol:FuzzHandshake \
	relay/server:FuzzServerConn relay/stunserver:FuzzHandle
fuzz:
	@mkdir -p $(CACHE); for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$pkg $$fn for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$$fn\$$" -fuzztime=$(FUZZTIME) ./$$pkg >$(CACHE)/fuzz.log 2>&1 || { cat $(CACHE)/fuzz.log; exit 1; }; \
	done

# The lab tests run in two passes: first those that need only kube-apiserver
# and etcd, then those that also need the node binaries and helm
# (E2E_LATE). In make test those are still building, in the background,
# during the first pass. A test that needs binaries another process is
# building waits for them on a lock, so the list only decides how much
# overlaps, never what passes.
E2E_LATE := ^(TestCluster|TestInstall|TestEnsureHelm|TestControlPlaneWithControllers)
E2E_GO_TEST := GORACE=halt_on_error=1 $(GO) test -count=1 -timeout 40m -v

e2e: deps build-race cni-plugins lab-bins
	@$(MAKE) --no-print-directory e2e-run

e2e-run:
	{ $(E2E_GO_TEST) -skip '$(E2E_LATE)' ./e2e/... && $(E2E_GO_TEST) -run '$(E2E_LATE)' ./e2e/...; } 2>&1 | e2e/summarize.sh

# The lab's binaries (kube-apiserver, kubelet, containerd, helm: long when
# cold) build in the background at a lower CPU priority from the start,
# while vet, the unit tests, fuzzing and the first lab pass run, which leave
# the CPUs idle while they fetch modules, link and wait on timers. Their
# progress goes to .cache/lab-bins.log, shown in full if the build fails.
# (The command that builds them needs none of our dependencies: it starts
# in seconds on a cold machine.)
test: deps fmt
	@$(MAKE) --no-print-directory -j2 checks lab-bins-background

checks: vet
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory fuzz
	@$(MAKE) --no-print-directory build-race cni-plugins
	@$(MAKE) --no-print-directory e2e-run

lab-bins-background:
	@mkdir -p $(CACHE)
	@echo "building the lab's binaries in the background (progress: $(CACHE)/lab-bins.log)"
	@start=$$(date +%s); nice -n 10 $(MAKE) --no-print-directory lab-bins >$(CACHE)/lab-bins.log 2>&1 \
		|| { cat $(CACHE)/lab-bins.log; echo "lab binaries: build failed"; exit 1; }; \
		echo "lab binaries ready after $$(( $$(date +%s) - start )) s"

# The demo's second part is a real cluster (kubelet nodes, helm): it needs
# the node binaries too; its first part runs as soon as they are built.
demo: deps build lab-bins
	$(BIN)/wirelace-lab demo

# Stock wireguard-go (default Bind), from the same module version the daemon
# embeds, for the side-by-side throughput comparison.
$(WIREGUARD_GO):
	@mkdir -p $(dir $@)
	$(GO) build -o $@ golang.zx2c4.com/wireguard

# Throughput through lace0 (direct) against stock wireguard-go between the
# same namespaces in the same run, and through the relay; prints ratios.
bench: deps build k8s $(WIREGUARD_GO)
	$(BIN)/wirelace-lab --wireguard-go $(WIREGUARD_GO) bench

clean:
	rm -rf $(BIN) .lab
