"""The ground floor: measurement and verdict types, errors, exit codes, statistics, time, atomic
writes, TOML, the typed codec. Imports nothing else of hpcbench.
"""
