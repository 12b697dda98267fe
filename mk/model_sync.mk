# model_sync: the AWS CLI the node sync script needs in tests and the local stack.
# PyPI's awscli (v1) pins its own botocore, so it lives in its own venv, not in $(VENV).
# Tests and sdq_local look for .venv-awscli/bin/aws first, then any `aws` on PATH.
AWSCLI_VENV := .venv-awscli
AWSCLI_VERSION ?= 1.45.11

.PHONY: awscli

$(AWSCLI_VENV)/bin/aws:
	@echo "==> creating $(AWSCLI_VENV) (awscli==$(AWSCLI_VERSION))"
	@$(PYTHON) -m venv $(AWSCLI_VENV)
	@$(AWSCLI_VENV)/bin/pip install --quiet --disable-pip-version-check "awscli==$(AWSCLI_VERSION)"

awscli: $(AWSCLI_VENV)/bin/aws ## the AWS CLI for the model sync script tests (own venv)
