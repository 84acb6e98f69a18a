"""Airflow plugins of the provider: the Coverbase webhook receiver (``webhooks.py``)."""
