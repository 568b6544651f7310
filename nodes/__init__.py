"""The node agent: one per machine, it detects hardware and reports heartbeats to the store."""
