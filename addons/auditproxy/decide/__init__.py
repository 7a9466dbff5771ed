"""Who asks, for what, and what the policy says: classify -> identify -> decide."""
