"""Apache Airflow provider for the Coverbase Workflows API.

Kept cheap to import: Airflow loads this package when it discovers providers.
"""

__version__ = "0.1.0"
