"""The bottom layer every other package may use: errors, the class table, the layer
geometry and the record helpers. It imports nothing else of diffseg (import contracts in
pyproject.toml)."""
