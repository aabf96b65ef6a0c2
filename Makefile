# k8sseed: make install | demo | test | lint | bench | e2e   (system packages: sudo make deps)
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin
OUT    ?= out

APT_PACKAGES = python3-venv python3-pip cloud-init shellcheck xorriso genisoimage bird2 keepalived haproxy \
               cloud-image-utils openssl systemd iproute2 curl frr pipx etcd-server etcd-client \
               dnsmasq-base chromium jq ignition gnupg apt-utils \
               skopeo docker-registry busybox-static gcc libc6-dev libcap2-bin
# wrk, ab (apache2-utils): bench/serve_load.py's closed loop and burst with C load generators (skipped without)
BENCH_PACKAGES = wrk apache2-utils
VM_PACKAGES  = qemu-system-x86 qemu-utils debootstrap e2fsprogs xorriso ipxe-qemu
# The real-Kubernetes proof (tests/realk8s): the image tests of make test need skopeo (pushes to docker-registry
# over TLS), gcc -static (pause) and getcap (CoreDNS's file capability), so they are in APT_PACKAGES above; the
# realk8s tests also run Debian 12's own dockerd 20.10 (docker.io, the distro runtime of the reference design).
REAL_PACKAGES = docker.io

.PHONY: real-k8s test-real e2e-real install demo test lint bench bench-serve e2e e2e-harness e2e-cluster e2e-etcd deps e2e-deps clean docs

$(BIN)/k8sseed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/k8sseed

# Installed without starting any daemon, and every unit the packages enable is left disabled (etcd, frr, bird,
# haproxy, keepalived: the tests run them as programs, never as services). README: "make deps".
deps:
	apt-get update -q
	tools/apt-install-disabled.sh $(APT_PACKAGES) $(BENCH_PACKAGES)

e2e-deps: deps
	tools/apt-install-disabled.sh $(VM_PACKAGES) $(REAL_PACKAGES)

# Build the reference cluster's seeds into $(OUT)/reference with a demo secret kept beside it.
demo: install
	mkdir -p $(OUT)
	test -f $(OUT)/demo.secret || (umask 077 && head -c 32 /dev/urandom | base64 > $(OUT)/demo.secret)
	$(BIN)/k8sseed validate profiles/reference.yaml
	$(BIN)/k8sseed build profiles/reference.yaml -o $(OUT)/reference --secret $(OUT)/demo.secret
	$(BIN)/k8sseed inspect $(OUT)/reference/cp-1.iso

test: install
	$(BIN)/pytest -q -m "not vm and not realk8s"

lint: install
	$(BIN)/ruff check k8sseed tests bench

bench: install
	$(BIN)/python bench/build_benchmark.py --nodes 1000

# 500 clients fetching seeds from `k8sseed serve` and posting status over loopback: closed-loop stress (Python
# clients, then wrk), then the rack model (power-on spread, reports as phases progress). docs/serve-load.md.
bench-serve: install
	$(BIN)/python bench/serve_load.py --clients 500

# CI runs `e2e` (~35 min on 2 cores under TCG). `e2e-cluster` boots the whole reference cluster (~40 min),
# `e2e-harness` is the harness's own self-test: both too long to sit beside the rest in CI's 90 minutes.
# Each VM target has its own --basetemp: pytest prunes all but its 3 newest temp dirs under /tmp/pytest-of-$USER,
# so another pytest run on the machine would otherwise delete a running VM test's overlays and console logs.
E2E_TMP ?= /tmp/k8sseed-e2e

e2e: install
	mkdir -p $(E2E_TMP)
	$(BIN)/pytest -q -m "vm and not vm_selftest and not vm_cluster and not vm_etcd and not vm_real" --basetemp=$(E2E_TMP)/e2e

e2e-cluster: install
	mkdir -p $(E2E_TMP)
	$(BIN)/pytest -q -s -m vm_cluster --basetemp=$(E2E_TMP)/cluster

# Three etcd VMs of profiles/external-etcd.yaml: formation, a member killed, back on its disk, then re-imaged.
e2e-etcd: install
	mkdir -p $(E2E_TMP)
	$(BIN)/pytest -q -s -m vm_etcd --basetemp=$(E2E_TMP)/etcd

e2e-harness: install
	mkdir -p $(E2E_TMP)
	$(BIN)/pytest -q -m vm_selftest --basetemp=$(E2E_TMP)/harness

# Real Kubernetes (1.36.5 and 1.35.4), etcd, cri-dockerd, crictl and the CNI plugins, built from their Go modules
# into $(REAL_CACHE) (never into the repository); the second run costs nothing. tests/realk8s/README.md.
REAL_CACHE ?= /var/cache/k8sseed-real
real-k8s:
	K8SSEED_REAL_CACHE=$(REAL_CACHE) bash tests/realk8s/build.sh

# The tests that run those binaries on this host (real kubeadm on every seed's config, cri-dockerd against
# Debian's Docker in a namespace): a missing binary fails here instead of skipping.
test-real: install
	K8SSEED_REAL_CACHE=$(REAL_CACHE) K8SSEED_REQUIRE_REAL=1 $(BIN)/pytest -q -m realk8s

# Real Kubernetes from the seeds in a VM (tests/vm/test_vm_real.py): the image without stand-ins, packages, images
# and cri-dockerd from make real-k8s served as a site's mirror and registry serve them. Outside CI's 90 minutes.
e2e-real: install
	mkdir -p $(E2E_TMP)
	K8SSEED_VM_FLAVOUR=real K8SSEED_REAL_CACHE=$(REAL_CACHE) K8SSEED_REQUIRE_REAL=1 \
		$(BIN)/pytest -q -s -m vm_real --basetemp=$(E2E_TMP)/real

clean:
	rm -rf $(VENV) $(OUT) build *.egg-info .pytest_cache .ruff_cache

docs: install
	$(BIN)/python -m k8sseed.profile.reference_doc > docs/profile.md
