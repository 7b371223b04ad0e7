"""A small Django project for the integration tests; its settings are made by the tests
(``tests/integrations/conftest.py``), not by a settings module."""
