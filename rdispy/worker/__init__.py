"""The node side: `rdispy worker` runs a supervisor that keeps one consumer process per core."""
