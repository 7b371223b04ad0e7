"""Template libraries of ``consentmw.django`` (``{% load consentmw %}``)."""
