"""The bare strawberry baseline as an ASGI app, for the HTTP load test (no caches, like a default app)."""

import gc
import os

from api.data.database import make_async_engine, make_session_factory
from bench.bare import bare_asgi

app = bare_asgi(make_session_factory(make_async_engine(os.environ["PARTNER_API_DATABASE_URL"])), caches=False)
gc.freeze()  # as the API does at startup (api.http.app's lifespan): the comparison stays like for like
