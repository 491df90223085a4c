#!/usr/bin/env bash
# Install gitops-hooks into its own virtual environment and guard a bare repository with it.
#   ./install.sh /srv/git/platform.git          (creates the repository if it does not exist)
# Running it again upgrades the suite in place. GITOPS_HOOKS_HOME chooses where the suite lives
# (default: /opt/gitops-hooks as root, ~/.local/share/gitops-hooks otherwise).
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 /path/to/repo.git [gitops-hooks install options]" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
if [ "$(id -u)" = 0 ]; then default_home=/opt/gitops-hooks; else default_home="$HOME/.local/share/gitops-hooks"; fi
home="${GITOPS_HOOKS_HOME:-$default_home}"
python="${PYTHON:-python3}"
mkdir -p "$home"
if [ ! -x "$home/venv/bin/python" ]; then
  "$python" -m venv "$home/venv"
fi
"$home/venv/bin/python" -m pip install --quiet --upgrade pip
# [helm]: Helm's engine, so that the repository's charts are rendered and checked at push.
"$home/venv/bin/python" -m pip install --quiet --upgrade "$here[helm]"
exec "$home/venv/bin/gitops-hooks" install "$@"
