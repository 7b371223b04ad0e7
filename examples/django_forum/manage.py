#!/usr/bin/env python
"""The MODX forums example: ``python examples/django_forum/manage.py runserver 127.0.0.1:8001``.

``runserver`` applies the migrations first (the forum's tables and a demo user), so that one
command starts the site. ``CONSENTMW_SECRET_KEYS`` holds consentmw's signing keys; when it is
not set, a throwaway key is made for the process and the command says so.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    sys.path.insert(0, str(HERE))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "forum.settings")
    if not os.environ.get("CONSENTMW_SECRET_KEYS"):
        os.environ["CONSENTMW_SECRET_KEYS"] = secrets.token_urlsafe(32)
        print("CONSENTMW_SECRET_KEYS is not set: using a throwaway key (cookies end with it)")
    from django.core.management import call_command, execute_from_command_line

    if len(sys.argv) > 1 and sys.argv[1] == "runserver":
        import django

        django.setup()
        call_command("migrate", interactive=False, verbosity=0)
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
