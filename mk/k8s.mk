# Kubernetes overlays (k8s/): render from config.yaml + Terraform outputs, validate offline, apply.
# `make apply AGENT_VERSION=<v>` (mk/terraform.mk) writes $(OUTPUTS)/k8s.json, then runs k8s-validate
# (and k8s-apply with K8S_APPLY=yes); k8s-render alone falls back to example values without it.
ENV ?= dev
OUTPUTS ?= build/outputs
K8S_OVERLAY = k8s/overlays/$(ENV)
# sdq_k8s is importable from its source tree even before the venv installs it editable.
SDQ_K8S := PYTHONPATH=k8s/src $(PY) -m sdq_k8s

.PHONY: k8s-render k8s-validate k8s-apply k8s-test

k8s-render: setup ## write k8s/overlays/$(ENV)/ from $(CONFIG) + $(OUTPUTS)/k8s.json (example values if absent)
	@$(SDQ_K8S) render --config $(CONFIG) --env $(ENV) --outputs $(OUTPUTS)

k8s-validate: k8s-render ## kubectl kustomize the overlay and schema-check every object (offline)
	@$(SDQ_K8S) check --config $(CONFIG) --env $(ENV)

k8s-apply: k8s-validate ## kubectl apply -k the overlay (after `make apply`; needs cluster access)
	kubectl apply --server-side -k $(K8S_OVERLAY)

k8s-test: setup ## the k8s rendering and validation tests
	@$(PY) -m pytest -q k8s/tests
