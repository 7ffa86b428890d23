"""The central syslog collector: RFC 3164/5424 over UDP, TCP, TLS; files per host/program."""
