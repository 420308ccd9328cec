"""The WSGI application, for ``gunicorn --preload examples.django_app.wsgi``.

With ``--preload`` this module is imported once in gunicorn's master and the workers are
forked from it: nothing here opens a connection or starts a thread, so each worker opens
its own pool and securedb starts its refresher in the worker that needs it.
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application  # type: ignore[import-untyped]

from examples import stats

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_app.settings")
if stats.enabled():
    stats.install()
application = get_wsgi_application()
