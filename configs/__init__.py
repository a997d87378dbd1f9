"""The configs shipped with mil: this folder installs as the package `mil.configs` (see pyproject.toml), so
`--config npm1` works from a wheel too. Read it through `mil.config.shipped` / `named_configs`."""
