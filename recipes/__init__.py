"""The seed paper's experiments as data (one TOML file each) and the command that runs them: `python -m recipes`."""
