"""Request and response handlers for the SageMaker TensorFlow Serving container.

The container imports this file from `code/inference.py` in model.tar.gz. A request is a
list of documents' raw feature vectors (before normalisation), because the SavedModel's
serving signature normalises them itself. Each document is scored on its own, so one
request may hold the documents of one query or of several.

Accepted request bodies:
* application/json: `{"instances": [[f1, ..., fn], ...]}`, `{"features": [[...], ...]}`
  or a bare list of feature lists.
* text/csv: one document per line, n comma-separated numbers.

Response (application/json): `{"scores": [...], "ranking": [...]}`, where `ranking`
lists the document indices by score, highest first, ties in request order.
"""

import csv
import io
import json
import math
import os

SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema.json")


def _num_features():
    with open(SCHEMA_PATH, encoding="utf-8") as file:
        return int(json.load(file)["num_features"])


def _read_body(data):
    body = data.read() if hasattr(data, "read") else data
    return body.decode("utf-8") if isinstance(body, bytes) else body


def parse_documents(body, content_type, num_features):
    """Return the documents' feature lists. Raises ValueError for an invalid request."""
    content_type = (content_type or "application/json").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            payload = json.loads(body)
        except json.JSONDecodeError as error:
            raise ValueError(f"request body is not valid JSON: {error}") from error
        if isinstance(payload, dict):
            key = "instances" if "instances" in payload else "features"
            if key not in payload:
                raise ValueError('JSON request needs an "instances" or "features" list')
            payload = payload[key]
        documents = payload
    elif content_type == "text/csv":
        documents = [row for row in csv.reader(io.StringIO(body)) if row]
    else:
        raise ValueError(
            f"unsupported content type {content_type!r}: use application/json or text/csv"
        )

    if not isinstance(documents, list) or not documents:
        raise ValueError("request must contain at least one document")
    parsed = []
    for index, document in enumerate(documents):
        if not isinstance(document, list) or len(document) != num_features:
            length = len(document) if isinstance(document, list) else type(document).__name__
            raise ValueError(
                f"document {index} must be a list of {num_features} numbers, got {length}"
            )
        try:
            values = [float(value) for value in document]
        except (TypeError, ValueError) as error:
            raise ValueError(f"document {index} has a non-numeric feature: {error}") from error
        if not all(math.isfinite(value) for value in values):
            raise ValueError(f"document {index} has a NaN or infinite feature")
        parsed.append(values)
    return parsed


def input_handler(data, context):
    """Turn a request into the TensorFlow Serving REST body `{"instances": [...]}`."""
    documents = parse_documents(_read_body(data), context.request_content_type, _num_features())
    return json.dumps({"instances": documents})


def output_handler(response, context):
    """Turn TensorFlow Serving's response into `({"scores", "ranking"} JSON, content type)`."""
    if response.status_code != 200:
        raise ValueError(response.content.decode("utf-8"))
    scores = json.loads(response.content)["predictions"]
    # sorted() is stable, so tied documents keep their request order.
    ranking = sorted(range(len(scores)), key=lambda index: -scores[index])
    return json.dumps({"scores": scores, "ranking": ranking}), "application/json"
