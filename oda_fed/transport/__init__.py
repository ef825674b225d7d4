"""The wire protocol both the node and the coordinator speak, and what carries and audits it."""
