#!/usr/bin/env bash
# Sets up this machine for Nebula Command, from a fresh clone: the system services the tests
# and `nebula up` use (Debian/Ubuntu packages), and a virtualenv in .venv with Nebula installed.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."

packages=()
command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
# The git fetching tests serve repositories with git http-backend, sshd and an openssl cert.
[ -x /usr/lib/git-core/git-http-backend ] || packages+=(git)
[ -x /usr/sbin/sshd ] || packages+=(openssh-server)
command -v openssl >/dev/null 2>&1 || packages+=(openssl)
# The browser test (tests/e2e) drives Debian's chromium through Playwright.
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
if [ ${#packages[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing system packages: ${packages[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
echo "installing Python packages into .venv"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
