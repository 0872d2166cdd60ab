"""Training OneDC: stages, resumable loop, checkpoints, export (imports torch)."""
