"""Logs the demo model to an MLflow tracking server and registers it as a new version.

    python log_model.py --tracking-uri http://127.0.0.1:5000 --model-name fraud-detector --label v1 \
        [--tag flowgate.address=127.0.0.1:8001] [--alias champion] [--signature]

--signature logs the version WITH an MLflow model signature: inputs `amount` (double, required) and
`merchant` (string, optional), outputs `version_label` (string), `score` (double) and `flagged` (boolean),
and a `threshold` param (double, default 0.5). MLflow writes it into the version's MLmodel file, where
Flowgate reads it to validate requests before they reach the model.

Prints {"name": ..., "version": "N", "runId": ..., "source": ...} as one JSON line on stdout (logs go to
stderr). Needs only the packages already in the venv: nothing is downloaded, at log time or at serve time.
"""

import argparse
import json
import logging
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def demo_signature():
    """The demo model's contract, written by hand rather than inferred (inference would run the model)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("double", "amount"), ColSpec("string", "merchant", required=False)]),
        outputs=Schema([ColSpec("string", "version_label"), ColSpec("double", "score"), ColSpec("boolean", "flagged")]),
        params=ParamSchema([ParamSpec("threshold", "double", 0.5)]),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"), help="MLflow tracking server URL")
    parser.add_argument("--model-name", required=True, help="registered model to add a version to (created if missing)")
    parser.add_argument("--label", required=True, help="returned as version_label in every prediction")
    parser.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="model version tag (repeatable)")
    parser.add_argument("--alias", action="append", default=[], help="alias to point at the new version (repeatable)")
    parser.add_argument("--signature", action="store_true", help="log the version with its model signature (see above)")
    args = parser.parse_args()
    if not args.tracking_uri:
        parser.error("--tracking-uri or MLFLOW_TRACKING_URI is required")
    tags = {}
    for item in args.tag:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--tag must be KEY=VALUE (got {item!r})")
        tags[key] = value

    # MLflow prints progress to stdout in places; keep stdout for the one JSON line.
    real_stdout = sys.stdout
    sys.stdout = sys.stderr
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(args.tracking_uri)
    signature = demo_signature() if args.signature else None
    with mlflow.start_run(run_name=f"{args.model_name}-{args.label}") as run:
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=os.path.join(HERE, "demo_model.py"),
            model_config={"label": args.label},
            # Pinned explicitly: skips MLflow's requirement inference, which imports the model in a subprocess.
            pip_requirements=[f"mlflow=={mlflow.__version__}", "pandas"],
            registered_model_name=args.model_name,
            signature=signature,
        )
    version = str(info.registered_model_version)
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(args.model_name, version, key, value)
    for alias in args.alias:
        client.set_registered_model_alias(args.model_name, alias, version)

    sys.stdout = real_stdout
    print(json.dumps({"name": args.model_name, "version": version, "runId": run.info.run_id, "source": info.model_uri}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
