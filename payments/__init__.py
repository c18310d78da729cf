"""Payments: validate, fraud-check, capture through a gateway, refund, settle."""
