"""Stand-ins for the outside world: a local HTTP server and a signing key.

Raspberry Pi's download servers are out of reach for the tests and for `make demo`, so
these let the real acquisition path run against files served on 127.0.0.1 and signed
with a key generated on the spot.
"""
