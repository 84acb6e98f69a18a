"""Airflow plugins of the provider: the Coverbase webhook receiver (``webhooks.py``) and the UI views (``ui.py``)."""
