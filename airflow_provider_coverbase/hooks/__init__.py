"""Part of airflow_provider_coverbase."""
