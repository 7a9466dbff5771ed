"""The department's policy: its model, loading it with line-numbered errors, host names."""
