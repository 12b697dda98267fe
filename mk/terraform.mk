# Infrastructure (terraform/): cdktf synth, Terraform plan/apply/destroy, releases, checks.
# Terraform always runs with the generated CLI config build/terraformrc (providers from the
# offline mirror $(SDQ_TF_PLUGIN_MIRROR), default /opt/tf-plugins; shared plugin cache).
# Emulator mode: `make apply SDQ_TF_ENDPOINT=http://127.0.0.1:PORT` (routing, model_sync, runtimes).
# After a cloud apply: AGENT_VERSION=<released queue agent tag> writes build/outputs/k8s.json,
# then the k8s overlay is rendered + validated (mk/k8s.mk); with K8S_APPLY=yes `make platform`
# installs the pinned add-ons and applies it. `make destroy` drains Karpenter's nodes first.

INFRA := $(PY) -m sdq_infra
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)
export SDQ_TF_ENDPOINT SDQ_TF_PLUGIN_MIRROR SDQ_STATE_BUCKET
export TF_CLI_CONFIG_FILE := $(abspath build/terraformrc)

.PHONY: synth plan apply destroy doctor release lambda-zips checkov checkov-venv smoke

lambda-zips: setup ## build the Lambda zips into build/lambda/
	@$(PY) -m sdq_infra.package api_validator model_sync

synth: setup ## synthesize every Terraform stack (build/cdktf.out/stacks/<stack>)
	@$(INFRA) synth

plan: lambda-zips ## terraform init + plan every stack in order (STACKS="a b" to pick)
	@$(INFRA) plan $(if $(STACKS),--stacks $(STACKS))

apply: lambda-zips ## plan + apply every stack, write build/outputs/*.json, render + validate the k8s overlay (AGENT_VERSION=v); K8S_APPLY=yes: + make platform
	@$(INFRA) apply $(if $(STACKS),--stacks $(STACKS)) $(if $(AGENT_VERSION),--agent-version $(AGENT_VERSION))
	@if [ -n "$(SDQ_TF_ENDPOINT)" ]; then \
	  echo "emulator mode: no k8s overlay"; \
	elif [ ! -f $(OUTPUTS)/k8s.json ]; then \
	  echo "k8s overlay skipped: no $(OUTPUTS)/k8s.json (reason above)"; \
	elif [ "$(K8S_APPLY)" = yes ]; then \
	  $(MAKE) --no-print-directory platform ENV=$(ENV) OUTPUTS=$(OUTPUTS); \
	else \
	  $(MAKE) --no-print-directory k8s-validate ENV=$(ENV) OUTPUTS=$(OUTPUTS) && \
	  echo "overlay $(K8S_OVERLAY) rendered and valid; install the platform with K8S_APPLY=yes (or make platform)"; \
	fi

destroy: setup ## destroy the stacks in reverse order, draining Karpenter's nodes before the cluster (needs CONFIRM=yes; keeps `state`)
	@# It refuses first if a bucket or registry still holds data; then, before the cluster goes,
	@# `sdq_k8s platform drain` ends Karpenter's instances (they are not in Terraform's state).
	@# SKIP_DRAIN=yes when the cluster is already gone or unreachable (then check EC2 yourself).
	@$(INFRA) destroy $(if $(filter yes,$(CONFIRM)),--yes) $(if $(filter yes,$(SKIP_DRAIN)),--skip-drain) $(if $(STACKS),--stacks $(STACKS))

doctor: setup ## check AWS credentials, G/VT GPU vCPU quotas, terraform, provider mirror, kubectl, helm, docker
	@$(INFRA) doctor

release: setup ## SERVICE=<queue_agent|sdwebui|comfyui|api_validator|model_sync> VERSION=<v> (images: linux/amd64, pushed to ECR)
	@test -n "$(SERVICE)" -a -n "$(VERSION)" || { echo "usage: make release SERVICE=<queue_agent|sdwebui|comfyui|api_validator|model_sync> VERSION=<v>" >&2; exit 2; }
	@$(INFRA) release $(SERVICE) $(VERSION)

$(CHECKOV_STAMP):
	@echo "==> creating $(CHECKOV_VENV) (checkov $(CHECKOV_VERSION); its pins conflict with ours)"
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	@$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check "checkov==$(CHECKOV_VERSION)"
	@touch $@

checkov-venv: $(CHECKOV_STAMP) ## create .venv-checkov (separate venv, pinned checkov)

checkov: checkov-venv synth ## checkov over the synthesized JSON (skip list: terraform/checkov.yaml)
	@$(CHECKOV_VENV)/bin/checkov -d build/cdktf.out/stacks --config-file terraform/checkov.yaml

smoke: setup ## after make apply: one task per runtime through the deployed API, S3 outputs checked + deleted, timings (TIMEOUT=s)
	@$(VENV)/bin/sdq configure --outputs $(or $(OUTPUTS),build/outputs) --config $(CONFIG) --write build/smoke-profile.json
	@$(VENV)/bin/sdq smoke --profile build/smoke-profile.json --config $(CONFIG) $(if $(TIMEOUT),--timeout $(TIMEOUT))
