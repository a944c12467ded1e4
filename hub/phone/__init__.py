"""The phone rating page behind the device's QR code (docs/phone.md): the gateway-signed token
(token.py), what the page offers and what a post does (rules.py), the form (form.py), the
languages (i18n.py, messages.toml), sealed contact details (crypto.py, contacts.py), post limits
(limits.py) and the page itself (web.py, templates/)."""
