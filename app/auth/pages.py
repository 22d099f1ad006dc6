"""The sign-in page: one small self-contained HTML form (no scripts, no external assets)."""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from fastapi.responses import HTMLResponse

# No script may run on this page and it may not be framed; the form posts only to this site.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
}

STYLE = """
body{font-family:system-ui,sans-serif;background:#f4f6f8;margin:0;display:flex;min-height:100vh;
align-items:center;justify-content:center}
main{background:#fff;padding:2rem 2.5rem;border-radius:8px;box-shadow:0 1px 4px #0002;width:20rem}
h1{font-size:1.4rem;margin:0 0 1.2rem}label{display:block;margin:.8rem 0 .3rem;font-size:.9rem}
input{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem;border:1px solid #bbb;border-radius:4px}
button{margin-top:1.2rem;width:100%;padding:.6rem;font-size:1rem;border:0;border-radius:4px;
background:#1f5fa8;color:#fff;cursor:pointer}
#login-error{color:#a11;min-height:1.2em;margin:.6rem 0 0;font-size:.9rem}
.sso{display:block;text-align:center;margin-top:1rem}
"""


def login_page(*, csrf_token: str, next_path: str, error: str = "", username: str = "", sso: bool = False,
               status_code: int = 200) -> HTMLResponse:
    """The sign-in page; every value shown is HTML-escaped."""
    sso_link = (f'<a class="sso" id="login-sso" href="/login/sso?next={escape(quote(next_path, safe=""))}">'
                "Sign in with hospital SSO</a>") if sso else ""
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Sign in - SurgReview</title><style>{STYLE}</style></head>
<body><main>
<h1>SurgReview</h1>
<form method="post" action="/login">
<input type="hidden" name="csrf_token" value="{escape(csrf_token)}">
<input type="hidden" name="next" value="{escape(next_path)}">
<label for="username">Username</label>
<input id="username" name="username" autocomplete="username" required autofocus value="{escape(username)}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<p id="login-error" role="alert">{escape(error)}</p>
<button id="login" type="submit">Sign in</button>
</form>
{sso_link}
</main></body></html>
"""
    return HTMLResponse(body, status_code=status_code, headers=HEADERS)


def sign_out_page() -> HTMLResponse:
    """Asked when a sign-out link was followed from another site: a button that signs out from this one."""
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Sign out - SurgReview</title><style>{STYLE}</style></head>
<body><main>
<h1>SurgReview</h1>
<p>A link on another site asked to sign you out.</p>
<form method="post" action="/logout"><button id="logout" type="submit">Sign out</button></form>
</main></body></html>
"""
    return HTMLResponse(body, status_code=403, headers=HEADERS)
