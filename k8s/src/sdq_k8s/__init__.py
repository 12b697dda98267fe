"""Render sdq's Kustomize overlays from config.yaml + IaC outputs, and validate them offline."""
