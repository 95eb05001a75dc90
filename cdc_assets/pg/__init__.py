"""psycopg 3 plumbing: connecting with clean errors, catalog look-ups, SQL composition helpers."""
