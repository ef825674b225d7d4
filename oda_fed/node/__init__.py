"""The node: a partner's agent, on its premises, that dials out to the coordinator."""
