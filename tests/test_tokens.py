"""hcp/tokens.py: tokens people pass as `--token VALUE` never begin with "-" (one in 64 of
`secrets.token_urlsafe`'s do, which failed a CI run: argparse took the token for an option)."""

import secrets

from hcp.tokens import cli_safe_token


def test_a_cli_safe_token_never_begins_with_a_dash_and_keeps_token_urlsafe_s_form():
    tokens = [cli_safe_token(16) for _ in range(3000)]  # (63/64)^3000 < 1e-20: the old way fails
    assert not [t for t in tokens if t.startswith("-")]
    assert {len(t) for t in tokens} == {len(secrets.token_urlsafe(16))}
    assert len(set(tokens)) == len(tokens)
    assert set("".join(tokens)) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert any("-" in t for t in tokens)  # a dash inside a token is still drawn


def test_a_simulated_halls_tokens_are_drawn_again_when_they_begin_with_a_dash(monkeypatch, tmp_path):
    from simulator.services import GatewayProcess, HubProcess

    drawn = iter(["-first", "queue", "-again", "admin", "-hub", "hub-admin"])
    monkeypatch.setattr(secrets, "token_urlsafe", lambda nbytes: next(drawn))
    gw = GatewayProcess(tmp_path / "gw", {})
    hub = HubProcess(tmp_path / "hub")
    try:
        assert (gw.settings["queue_token"], gw.settings["admin_token"]) == ("queue", "admin")
        assert hub.admin_token == "hub-admin"
    finally:
        gw.http.close()
        hub.close()
