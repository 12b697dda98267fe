"""Stacks: one Terraform state each. A stack applies the provider and backend, then wires
constructs from :mod:`sdq_infra.components` with values from the deployment config."""
