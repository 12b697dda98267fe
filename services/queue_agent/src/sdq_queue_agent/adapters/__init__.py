"""Adapters: one module per external system (AWS, runtimes, HTTP inputs, webhooks, health)."""
