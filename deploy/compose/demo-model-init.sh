#!/bin/sh
# Registers the demo model in the compose MLflow as fraud-detector v1 (alias champion) and v2 (alias
# challenger), each tagged with the compose address its `mlflow models serve` container answers on.
# Runs once per MLflow volume: if the model already has two versions it changes nothing, so
# `docker compose up` can be repeated and the servers keep serving models:/fraud-detector/1 and /2.
set -eu
: "${MLFLOW_TRACKING_URI:?MLFLOW_TRACKING_URI must be set}"
model=fraud-detector
demo=/opt/demo-model

if python - "$model" <<'PY'
import sys
from mlflow import MlflowClient
versions = MlflowClient().search_model_versions(f"name='{sys.argv[1]}'")
sys.exit(0 if len(versions) >= 2 else 1)
PY
then
  echo "demo-model: $model already has its versions; nothing to do" >&2
  exit 0
fi

python "$demo/log_model.py" --model-name "$model" --label v1 --tag flowgate.address=demo-v1:8080 --alias champion
python "$demo/log_model.py" --model-name "$model" --label v2 --tag flowgate.address=demo-v2:8080 --alias challenger
