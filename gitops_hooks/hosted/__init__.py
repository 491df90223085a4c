"""The webhook service: the gate and the reconcile for repositories on GitHub, GitLab, Bitbucket, Gitea
and Forgejo, where no server hook can be installed (`gitops-hooks serve`)."""
