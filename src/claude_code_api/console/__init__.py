"""The web console at ``/ui``: a page and its files (public, they hold no data) and
an admin JSON API under ``/ui/api`` (an admin key, or no key on loopback when auth
is not required). See docs/console.md."""
