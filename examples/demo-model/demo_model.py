"""The demo model's code, logged with MLflow's models-from-code: a pyfunc that scores a transaction amount.

Every answer carries the label it was logged with (model_config["label"]), so a caller can tell which
registered version served it. The score is a pure function of the amount, so tests can check it exactly.
A version logged with a signature (log_model.py --signature) gets a `threshold` param from MLflow and also
answers `flagged` (score >= threshold).
"""

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


def score(amount: float) -> float:
    """A fraud-ish score in [0, 1): grows with the amount, 0.5 at 100."""
    amount = max(float(amount), 0.0)
    return round(amount / (amount + 100.0), 6)


class DemoModel(PythonModel):
    def load_context(self, context):
        self.label = str((context.model_config or {}).get("label", "unlabelled"))

    def predict(self, context, model_input, params=None):
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        amounts = frame["amount"] if "amount" in frame.columns else pd.Series([0.0] * len(frame))
        scores = [score(a) for a in amounts]
        answer = {"version_label": [self.label] * len(frame), "score": scores}
        if params and "threshold" in params:
            answer["flagged"] = [s >= float(params["threshold"]) for s in scores]
        return pd.DataFrame(answer)


mlflow.models.set_model(DemoModel())
