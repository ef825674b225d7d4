"""What an operator's monitoring sees of a running coordinator or node: Prometheus metrics and
JSON log lines, neither carrying personal data, record ids, CLKs or the linkage secret."""
