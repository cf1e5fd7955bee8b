"""Alembic environment: migrations run on the connection the service hands over (no ini file,
no URL from the environment), so ``likelens serve`` and ``likelens keys`` migrate on start."""

from __future__ import annotations

from alembic import context

from likelens.service.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
