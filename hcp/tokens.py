"""Random tokens that are safe to pass as a command-line option's value.

`secrets.token_urlsafe` draws from A-Z a-z 0-9 - _, so one token in 64 begins with "-", and then
`--token <it>` is read by argparse as another option ("expected one argument"). Tokens the project
makes for people to type or paste (an issued gateway token, a simulated hall's queue and admin
tokens) are drawn again until they do not begin with one. The alphabet and length stay those of
`token_urlsafe`; only the first character loses one of its 64 values (under 0.03 bit).
"""

import secrets


def cli_safe_token(nbytes: int) -> str:
    """`secrets.token_urlsafe(nbytes)` that does not begin with "-"."""
    while (token := secrets.token_urlsafe(nbytes)).startswith("-"):
        pass
    return token
