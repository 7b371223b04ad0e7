"""consentmw's benchmark suite: ``python -m benchmarks`` (see ``__main__`` for the options).

Sections (``--only`` picks some): ``request`` (the request path and HTML responses,
in-process), ``tracked`` (full cost of tracked requests, delivery into SQLite and JSON Lines
included), ``frameworks`` (inside Flask and Django, next to Flask's session and
django-cookie-consent), ``trackers`` (``ctx.record()`` next to Segment, PostHog and
Snowplow), ``throughput`` (the dispatcher into SQLite, JSON Lines, PostgreSQL and Redis,
next to the bare clients), ``load`` (gunicorn with 2 workers on 127.0.0.1 driven by
``wrk``), ``memory`` (RSS during a burst of a million events with the sink down) and
``startup`` (import time, middleware construction).

The older single-purpose scripts (``bench_request.py``, ``bench_inject.py``,
``bench_enrich.py``) still run on their own.
"""
