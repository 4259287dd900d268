"""node_config: the node as the site expects it (NHC's catalogue as parameters); see probe.py."""
