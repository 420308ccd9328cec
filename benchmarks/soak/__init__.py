"""The fleet soak: both example apps behind real app servers on the bed (`make soak`)."""
