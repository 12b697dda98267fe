"""sdq's shared pytest fixtures (the plugin ``sdq_testing.pytest_plugin``): test-only, so that
installing the CLI or the local stack never pulls pytest."""
