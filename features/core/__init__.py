"""The shared kernel of both floors: typed errors, the registry class, atomic file writes (`io`), the
`device` rule and the `versions` every run records."""
