"""Every field of every importable kind, given a value of the wrong type: the importer answers with a
problem on that field (or converts it), never with a traceback and never with the catch-all message.

Each manifest of the importer tests is mutated one field at a time; the output of a conversion that
succeeds must also go through `parse_resource` without raising.
"""

from __future__ import annotations

import pytest

from phalanx.api import parse_resource
from phalanx.api.yamlfile import parse_yaml
from phalanx.importers import InputError, import_documents
from tests.mutation import field_paths, replaced
from tests.unit.importers.test_aibrix import FLEET, RAY_CLUSTER
from tests.unit.importers.test_kaito import WORKSPACE
from tests.unit.importers.test_kthena import EXPORTED, MODEL_INFER
from tests.unit.importers.test_lws import SGLANG

WRONG = (None, [], {}, "x", 1.5, -1, 10**20, [None], True)
MANIFESTS = {
    "kthena": EXPORTED,
    "model-infer": MODEL_INFER,
    "lws": SGLANG,
    "kaito": WORKSPACE,
    "fleet": FLEET,
    "ray-cluster": RAY_CLUSTER,
}


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_a_wrong_type_anywhere_is_a_field_error_or_converts(name: str) -> None:
    documents = [d.data for d in parse_yaml(MANIFESTS[name])]
    unplaced: list[str] = []
    tried = 0
    for index, document in enumerate(documents):
        for path in field_paths(document):
            for value in WRONG:
                mutated = list(documents)
                mutated[index] = replaced(document, path, value)
                tried += 1
                try:
                    result = import_documents(mutated)
                except InputError as exc:
                    unplaced += [f"{path} = {value!r}: {p.message}" for p in exc.problems if not p.path]
                    continue
                for item in result.items:
                    if item.obj is not None:
                        parse_resource(item.obj)
    assert tried > 100
    # Problems without a field are the importer's catch-all: a check it lacks.
    assert not unplaced, "\n".join(unplaced)
