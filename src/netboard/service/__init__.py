"""``netboard serve``: the HTTP API, the CDS Hooks 2.0 service and the web page.

Everything here needs the ``service`` extra (FastAPI, uvicorn, PyJWT, httpx) and is imported
only by ``netboard serve`` and the tests, so the CLI starts without it.
"""
