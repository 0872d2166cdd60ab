"""The OneDC learned codec plugin."""
