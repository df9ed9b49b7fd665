#!/usr/bin/env bash
# Installs Google Research Football (gfootball 2.10.2) for the grf: environments.
#
#   PYTHON=.venv/bin/python bash experiments/install_gfootball.sh
#
# gfootball compiles its C++ engine: it needs Debian's (or Ubuntu's) build tools, SDL 2, OpenGL and
# Boost (installed with apt-get, through sudo when not root), then psutil, setuptools and wheel in the
# target environment, and a build without pip's isolation. Its build calls `python3` from PATH,
# so the target interpreter's folder goes first on PATH. Takes about 5 minutes on 2 cores.
set -euo pipefail
PY=${PYTHON:-python3}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q cmake build-essential libgl1-mesa-dev libsdl2-dev \
    libsdl2-image-dev libsdl2-ttf-dev libsdl2-gfx-dev libdirectfb-dev libboost-all-dev
"$PY" -m pip install -q psutil setuptools wheel
BIN=$(dirname "$("$PY" -c 'import sys; print(sys.executable)')")
PATH="$BIN:$PATH" "$PY" -m pip install -q --no-build-isolation gfootball==2.10.2
"$PY" -c "import gfootball.env.football_env" && echo "gfootball installed"
