"""What turns a source into objects: Helm charts (kustomize still lives in `gitops_hooks.kustomize`)."""
