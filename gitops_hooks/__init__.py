"""gitops-hooks: git server-side hooks that gate and trigger GitOps."""

__version__ = "0.1.0"
