"""public.pipelines: SQLAlchemy models, the one repository that writes it, migrations."""
