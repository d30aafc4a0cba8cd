"""The kopf operator that reconciles FingerprintDB resources (imported as ``citywok_operator``)."""
