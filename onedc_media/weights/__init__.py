"""Embedded default model weights (safetensors + config.json per model)."""
