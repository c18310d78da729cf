"""Notifications: email, SMS, push, signed webhooks, templates, delivery tracking, retries."""
