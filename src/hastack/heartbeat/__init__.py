"""heartbeat: leader election with a floating IP and resource groups (Heartbeat, keepalived)."""
