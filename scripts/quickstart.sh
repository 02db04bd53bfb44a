#!/usr/bin/env bash
# The quickstart: installs what is missing (scripts/setup.sh), then brings up real MLflow with a demo model
# (two versions, each served by `mlflow models serve`) and the LLM demo (an MLflow ChatModel on the
# OpenAI-compatible API at /v1), the Flowgate control plane and Envoy on :10000.
# Prints the curl commands to try; Ctrl-C stops everything. Options: bash scripts/quickstart.sh --help
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export FLOWGATE_LOG_LEVEL=${FLOWGATE_LOG_LEVEL:-warn}
exec node dist/src/quickstart/main.js "$@"
