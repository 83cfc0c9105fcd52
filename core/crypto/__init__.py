"""Cryptography: the streaming envelope, KEK/DEK handling, member identities and CAs.

Only primitives from ``cryptography`` (and pycose for COSE); nothing home-made.
"""
