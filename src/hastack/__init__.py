"""hastack: the 2008 BBC high-availability web stack as pure-Python asyncio services."""

__version__ = "0.1.0"
