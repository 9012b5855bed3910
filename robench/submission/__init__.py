"""Putting models on a board: submit (re-evaluate, never trust), submit --list, undo, and verify
(re-run committed records). These drive the engine, so they sit above it, apart from the torch-free
boards."""
