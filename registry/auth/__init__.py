"""Who may do what: principals, grants per namespace, bearer tokens, the authorisation
middleware and `/token` (docs/auth.md).

Handlers that need to know who is calling use `caller_of(request)`; it is None when
authentication is disabled (then everything is allowed).
"""

from registry.auth.caller import Caller, caller_of

__all__ = ["Caller", "caller_of"]
