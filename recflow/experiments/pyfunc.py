"""The MLflow pyfunc of a recflow serving bundle, logged as "models from code" (nothing pickled).

Input: a DataFrame with a ``user_id`` column (recommendations) or a ``title`` column (similar
movies); a row with both uses ``user_id``. Params: ``k`` (10), ``mode`` (similar: content / cf /
hybrid, "" for the model's default), ``fallback`` ("popular" answers cold and unknown users).
Output: one row per answer item: ``query_row``, ``query``, ``rank``, ``item_id``, ``title``,
``score``, ``model``. Answers come from ``recflow.retrieval.search.Retriever`` over the bundled files,
exactly as ``recflow recommend`` / ``recflow similar`` compute them.
"""

import math

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

OUTPUT_COLUMNS = ["query_row", "query", "rank", "item_id", "title", "score", "model"]


class RecflowServingModel(PythonModel):
    def load_context(self, context) -> None:
        from recflow.retrieval.search import Retriever

        self.retriever = Retriever.from_sources(context.artifacts)

    # a DataFrame hint: MLflow validates against the logged signature instead of inferring one
    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        params = {"k": 10, "mode": "", "fallback": "", **(params or {})}
        k, mode, fallback = int(params["k"]), params["mode"] or None, params["fallback"] or None
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if "user_id" not in frame.columns and "title" not in frame.columns:
            raise ValueError(f"input needs a 'user_id' or a 'title' column, got {list(frame.columns)}")
        rows = []
        for i, record in enumerate(frame.to_dict("records")):
            user, title = record.get("user_id"), record.get("title")
            if user is not None and not (isinstance(user, float) and math.isnan(user)):
                answer = self.retriever.recommend(int(user), k, fallback)
            elif isinstance(title, str) and title.strip():
                answer = self.retriever.similar(title, k, mode)
            else:
                raise ValueError(f"input row {i}: give a user_id or a title")
            rows.extend({"query_row": i, "query": answer.query, **r, "model": answer.model} for r in answer.rows())
        return pd.DataFrame(rows, columns=OUTPUT_COLUMNS)


mlflow.models.set_model(RecflowServingModel())
