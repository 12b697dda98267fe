"""Reusable constructs. Each takes a frozen spec, exposes typed outputs and never creates a
provider or a backend (stacks do). Construct ids are Terraform state addresses: renaming one
moves state and must ship with a ``moved`` block."""
