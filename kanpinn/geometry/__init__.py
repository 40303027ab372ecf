"""Constructive geometry on top of ``kanpinn.domains``.

``polygon.Polygon`` (simple polygons), ``ball.Ball`` (balls in any dimension >= 2),
``csg`` (``a - b``, ``a | b``, ``a & b`` of any two domains of one dimension) and
``rfunctions`` (the torch R-functions behind every domain's smooth ``distance``).

This package imports nothing on import: ``kanpinn.domains`` uses ``rfunctions`` while
the domain modules here build on ``kanpinn.domains``, so each is imported by name.
"""
