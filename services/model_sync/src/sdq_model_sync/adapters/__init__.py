"""Adapters to AWS: one module per external system (EC2 node lookup, SSM commands)."""
