"""Everything behind the seal: envelope encryption, SQL index, API, retention (issues 4-7)."""
