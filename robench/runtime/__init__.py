"""Where evaluation runs: devices (and what a record says about them) and torchrun process groups."""
