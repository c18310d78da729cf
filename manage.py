#!/usr/bin/env python
"""Django's command-line entry point for kafka-platform."""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kafka_platform.settings")
    from django.core.management import execute_from_command_line

    from kafka_platform.production import SettingsRefused

    try:
        execute_from_command_line(sys.argv)
    except SettingsRefused as refused:
        # What to set, not where in Django it was noticed: no traceback.
        sys.stderr.write(f"{refused}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
