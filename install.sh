#!/usr/bin/env bash
# Install the harness into the current Python environment, with the offline NLTK data that METEOR and
# tokenisation need (WordNet 3.0 from Debian's packages; no NLTK downloader, no network but the registries).
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -f /usr/share/wordnet/data.noun ] || [ ! -f /usr/share/wordnet/index.sense ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wordnet-base wordnet-sense-index >/dev/null
fi

python3 -m pip install -q -e ".[dev]"
if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi  # make the new `harness` script visible
python3 -m harness.cli setup nltk
