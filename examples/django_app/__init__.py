"""A small Django app on securedb's PostgreSQL backend with Django's pool.

See `settings` for its configuration (all from the environment) and `views` for what it
serves. Run it as in production::

    DJANGO_SECRET_KEY=... SECUREDB_URL=postgresql://app_user@mydb...:5432/app \\
    SECUREDB_AUTH=iam gunicorn --preload --workers 4 examples.django_app.wsgi

It needs the table of the FastAPI example::

    CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL);
"""
