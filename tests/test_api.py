"""The application as a whole: what ``/openapi.json`` (and so ``/docs``) shows."""

from __future__ import annotations

from fastapi.testclient import TestClient

from revhub.api import DOCUMENTED_TAGS


def test_the_docs_show_every_section_in_their_order(client: TestClient) -> None:
    """The routers are included hot routes first; the docs keep their own order, and a
    router whose tag is not in it would fall to the end unnoticed."""
    schema = client.get("/openapi.json").json()

    assert [tag["name"] for tag in schema["tags"]] == list(DOCUMENTED_TAGS)
    used = {
        tag
        for operations in schema["paths"].values()
        for operation in operations.values()
        for tag in operation.get("tags", [])
    }
    assert used == set(DOCUMENTED_TAGS)
