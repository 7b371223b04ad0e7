"""consentmw."""
