# Infrastructure (terraform/): cdktf synth, Terraform plan/apply/destroy, releases, checks.
# Terraform always runs with the generated CLI config build/terraformrc (providers from the
# offline mirror $(SDQ_TF_PLUGIN_MIRROR), default /opt/tf-plugins; shared plugin cache).
# Emulator mode: `make apply SDQ_TF_ENDPOINT=http://127.0.0.1:PORT` (routing, model_sync, runtimes).

INFRA := $(PY) -m sdq_infra
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)
export SDQ_TF_ENDPOINT SDQ_TF_PLUGIN_MIRROR SDQ_STATE_BUCKET
export TF_CLI_CONFIG_FILE := $(abspath build/terraformrc)

.PHONY: synth plan apply destroy doctor release lambda-zips checkov checkov-venv

lambda-zips: setup ## build the Lambda zips into build/lambda/
	@$(PY) -m sdq_infra.package api_validator model_sync

synth: setup ## synthesize every Terraform stack (build/cdktf.out/stacks/<stack>)
	@$(INFRA) synth

plan: lambda-zips ## terraform init + plan every stack in order (STACKS="a b" to pick)
	@$(INFRA) plan $(if $(STACKS),--stacks $(STACKS))

apply: lambda-zips ## plan + apply every stack, then write build/outputs/<stack>.json
	@$(INFRA) apply $(if $(STACKS),--stacks $(STACKS))

destroy: setup ## destroy the stacks in reverse order (needs CONFIRM=yes; keeps `state`)
	@$(INFRA) destroy $(if $(filter yes,$(CONFIRM)),--yes) $(if $(STACKS),--stacks $(STACKS))

doctor: setup ## check AWS credentials, terraform, provider mirror, kubectl, docker
	@$(INFRA) doctor

release: setup ## SERVICE=<queue_agent|api_validator|model_sync> VERSION=<v>
	@test -n "$(SERVICE)" -a -n "$(VERSION)" || { echo "usage: make release SERVICE=<queue_agent|api_validator|model_sync> VERSION=<v>" >&2; exit 2; }
	@$(INFRA) release $(SERVICE) $(VERSION)

$(CHECKOV_STAMP):
	@echo "==> creating $(CHECKOV_VENV) (checkov $(CHECKOV_VERSION); its pins conflict with ours)"
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	@$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check "checkov==$(CHECKOV_VERSION)"
	@touch $@

checkov-venv: $(CHECKOV_STAMP) ## create .venv-checkov (separate venv, pinned checkov)

checkov: checkov-venv synth ## checkov over the synthesized JSON (skip list: terraform/checkov.yaml)
	@$(CHECKOV_VENV)/bin/checkov -d build/cdktf.out/stacks --config-file terraform/checkov.yaml
