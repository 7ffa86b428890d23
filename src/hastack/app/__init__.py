"""The example web application behind the proxy (docs/app.md)."""
