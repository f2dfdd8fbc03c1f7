# clusterbake: `make image ROLE=compute` bakes an image; `make test` runs every test.
# Both set themselves up on a fresh Debian machine (as root): system tools and a venv.

SHELL := /bin/bash
CLUSTER ?= cluster.yaml
OUT ?= out
ROLE ?=
NODE ?=
ARGS ?=
VENV := .venv
PY := $(VENV)/bin/python

# Debian packages the builder and its tests call (see README "Dependencies").
SYSTEM_PACKAGES := mtools dosfstools fdisk e2fsprogs mount util-linux qemu-user-static \
	xz-utils zstd pigz gnupg debootstrap bmap-tools iproute2 python3-venv ca-certificates \
	qemu-system-arm cpio openssh-client debian-archive-keyring device-tree-compiler nftables \
	dnsmasq-base tftp-hpa

.PHONY: deps system-deps venv check fetch image images demo test measure cluster-test boot-test release verify-release flash bench lint clean status apply node-card netboot

deps: system-deps venv

system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing system packages: $$missing (run 'sudo make deps')" >&2; exit 2; fi; \
	  echo "installing system packages: $$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.stamp

# The editable install gives $(VENV)/bin/clusterbake (pyproject's console script), same main as `python -m builder`.
$(VENV)/.stamp: requirements.txt requirements-dev.txt pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

check: deps
	$(PY) -m builder check --cluster $(CLUSTER)

fetch: deps
	$(PY) -m builder fetch --cluster $(CLUSTER) $(ARGS)

# make image ROLE=compute | make image NODE=node03   (DEMO=1: from the offline stand-in base)
image: deps
	@if [ -n "$(NODE)" ]; then target="--node $(NODE)"; elif [ -n "$(ROLE)" ]; then target="--role $(ROLE)"; \
	else echo "make image: say which image: ROLE=<role> or NODE=<node> (roles: see $(CLUSTER))" >&2; exit 1; fi; \
	if [ -n "$(DEMO)" ]; then $(PY) -m builder demo --cluster $(CLUSTER) $$target --out $(OUT) $(ARGS); \
	else $(PY) -m builder build --cluster $(CLUSTER) $$target --out $(OUT) $(ARGS); fi

images: deps
	$(PY) -m builder images --cluster $(CLUSTER) --out $(OUT) $(ARGS)

# Offline: build a Raspberry-Pi-OS-like stand-in from Debian's arm64 packages (once), serve it
# on 127.0.0.1 and build every role image of the cluster through the real pipeline.
demo: deps
	$(PY) -m builder demo --cluster $(CLUSTER) --out $(OUT) $(ARGS)

test: deps
	$(PY) -m pytest $(ARGS)

# The README's test figures: one whole run of the suite recorded in tests/measured/suite.json (commit,
# machine, counts and minutes per folder), then the README's generated sections made from the records.
measure: deps
	CLUSTERBAKE_SUITE_RECORD=tests/measured/suite.json $(PY) -m pytest; status=$$?; \
	$(PY) -m tests.readme_numbers --write; exit $$status

# The proof: boot the controller, time server and compute images of a 4-node test cluster in
# network namespaces and run srun across them (also part of `make test`).
cluster-test: deps
	$(PY) -m pytest tests/cluster -s $(ARGS)

# The proof by a real boot: the role images as QEMU VMs (aarch64, TCG) under their own systemd,
# on a private LAN in a network namespace; first boot, Slurm with cgroups, the power button
# (also part of `make test`; about 15 minutes on 2 cores, once the images are cached).
boot-test: deps
	$(PY) -m pytest tests/boot -s $(ARGS)

# Release artefacts in dist/: xz images, bmaps, SHA256SUMS(.asc), os_list.json, manifests.
RELEASE_KEY ?=
release: deps
	$(PY) -m builder release --cluster $(CLUSTER) --key "$(RELEASE_KEY)" $(ARGS)

verify-release: deps
	$(PY) -m builder verify-release --key "$(RELEASE_KEY)" $(ARGS)

# Diskless compute nodes: the served tree in $(OUT)/netboot, from the compute role image (DEMO=1: stand-in base);
# PUSH=1: then onto the running file server over SSH (as apply reaches it).
netboot: deps
	$(PY) -m builder netboot --cluster $(CLUSTER) --out $(OUT) $(if $(DEMO),--demo) $(if $(PUSH),--push) $(ARGS)

IMAGE ?=
DEVICE ?=
flash: deps
	$(PY) -m builder flash "$(IMAGE)" "$(DEVICE)" $(ARGS)

# Day two: compare the running nodes with the cluster file; bring them to it (ARGS=--yes for scripts).
status: deps
	$(PY) -m builder status --cluster $(CLUSTER) $(ARGS)

apply: deps
	$(PY) -m builder apply --cluster $(CLUSTER) $(ARGS)

# A new node on a card of its role's image, no new image: its node.txt (see README, "Add a compute node").
node-card: deps
	$(PY) -m builder node-card "$(NODE)" --cluster $(CLUSTER) --out $(OUT)/$(NODE)/node.txt $(ARGS)

# Timings and peak memory of each pipeline step, cold and warm caches.
bench: deps
	$(PY) -m tests.bench.speed $(ARGS)

lint: venv
	$(PY) -m pytest tests/test_linters.py

clean:
	rm -rf $(OUT) dist .pytest_cache .mypy_cache .ruff_cache
