"""The glimpse web server: a FastAPI app (``create_app``) and its static search page.

Import ``glimpse.server.app`` only where the server runs: it needs the ``server`` extra (fastapi, uvicorn,
python-multipart).
"""
