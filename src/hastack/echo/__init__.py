"""A diagnostic TCP echo service (like Perlbal's EchoService role).

Useful as the "small service on the VIP" in failover tests and for checking a supervisor or a
config end to end. Each line sent is answered with ``<host name> <line>`` so a client can tell
which host answered.
"""
