# Kubernetes (k8s/): render the overlay from config.yaml + Terraform outputs, validate it offline,
# install the platform (pinned Helm add-ons + the overlay) and drain Karpenter's nodes.
# `make apply AGENT_VERSION=<v>` (mk/terraform.mk) writes $(OUTPUTS)/k8s.json, then runs k8s-validate,
# and with K8S_APPLY=yes `make platform`; `make destroy CONFIRM=yes` runs k8s-drain first.
# k8s-render alone falls back to example values without k8s.json.
ENV ?= dev
OUTPUTS ?= build/outputs
# Private kubeconfig of the cluster (never the ambient ~/.kube/config or its current context).
KUBE_DIR ?= build/kube
# Pinned EKS AL2023 AMI release of the GPU nodes (default: sdq_k8s.render.DEFAULT_AMI_ALIAS).
AMI_ALIAS ?=
K8S_OVERLAY = k8s/overlays/$(ENV)
# sdq_k8s is importable from its source tree even before the venv installs it editable.
SDQ_K8S := PYTHONPATH=k8s/src $(PY) -m sdq_k8s

.PHONY: k8s-render k8s-validate k8s-apply k8s-test platform k8s-drain

k8s-render: setup ## write k8s/overlays/$(ENV)/ from $(CONFIG) + $(OUTPUTS)/k8s.json (example values if absent; AMI_ALIAS=al2023@vYYYYMMDD)
	@$(SDQ_K8S) render --config $(CONFIG) --env $(ENV) --outputs $(OUTPUTS) $(if $(AMI_ALIAS),--ami-alias $(AMI_ALIAS))

k8s-validate: k8s-render ## kubectl kustomize the overlay and schema-check every object (offline)
	@$(SDQ_K8S) check --config $(CONFIG) --env $(ENV)

platform: k8s-validate ## kubeconfig (private), spot role, pinned Karpenter/KEDA/NVIDIA plugin, then the overlay (idempotent)
	@$(SDQ_K8S) platform install --config $(CONFIG) --env $(ENV) --outputs $(OUTPUTS) --kube-dir $(KUBE_DIR)

k8s-apply: platform ## same as `make platform` (the overlay needs the add-ons' CRDs first)

k8s-drain: setup ## delete sdq's workloads, NodePools, NodeClaims; wait for Karpenter's EC2 instances to end
	@$(SDQ_K8S) platform drain --config $(CONFIG) --outputs $(OUTPUTS) --kube-dir $(KUBE_DIR) $(if $(DRAIN_TIMEOUT),--timeout $(DRAIN_TIMEOUT))

k8s-test: setup ## the k8s rendering, validation and platform tests
	@$(PY) -m pytest -q k8s/tests
