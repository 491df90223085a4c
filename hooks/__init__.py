"""Hook scripts installed by `gitops-hooks install` (package data)."""
