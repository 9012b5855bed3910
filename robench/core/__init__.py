"""The torch-free core: errors, names, configuration, records, locks and statistics.

Boards, CI and config checks read YAML and records with this package alone; nothing here imports torch
(tests/test_layers.py)."""
