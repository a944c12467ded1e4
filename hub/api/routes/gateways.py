from fastapi import APIRouter, Depends, status

from hcp.tokens import cli_safe_token

from ..deps import ADMIN_ERRORS, BODY_ERRORS, StoreDep, require_admin, token_sha256
from ..models import GatewayRegistration, GatewayToken

TOKEN_BYTES = 32  # 256 bits of randomness: not guessable, short enough for a config file

router = APIRouter(tags=["registration"], dependencies=[Depends(require_admin)],
                   responses=ADMIN_ERRORS | BODY_ERRORS)


@router.post("/gateways", status_code=status.HTTP_201_CREATED, response_model=GatewayToken)
async def register_gateway(body: GatewayRegistration, store: StoreDep) -> GatewayToken:
    """Register a hall's gateway (admin) and issue its ingest token, shown only in this answer.

    Registering a hall again rotates its token (the old one stops working at once) and replaces its
    phone-token signing key. The hub keeps only the token's SHA-256; the key is never returned.
    """
    token = cli_safe_token(TOKEN_BYTES)
    await store.register_gateway(body.hall, token_sha256(token), body.key_bytes())
    return GatewayToken(hall=body.hall, token=token)
