"""The login page: self-contained HTML (no scripts, no external files), so that it loads before any login."""

from __future__ import annotations

import html
import urllib.parse

from rehab.app.sso import START_PATH as SSO_START_PATH

LOGIN_PATH = "/login"


def login_page(next_path: str = "/", message: str | None = None, user: str = "", local: bool = True,
               sso: bool = False) -> str:
    """The password form (``local``: there are local accounts) and/or the single sign-on button (``sso``)."""
    error = f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
    query = urllib.parse.urlencode({"next": next_path})
    action = html.escape(f"{LOGIN_PATH}?{query}", quote=True)
    form = f"""<form method="post" action="{action}">
<label for="user">User name</label>
<input id="user" name="user" autocomplete="username" required autofocus value="{html.escape(user[:64], quote=True)}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Log in</button>
</form>
<p class="note">Accounts are made on the server with <code>rehab users add NAME</code>.</p>""" if local else ""
    single_sign_on = (f'<p><a class="sso" href="{html.escape(f"{SSO_START_PATH}?{query}", quote=True)}">'
                      'Sign in with your organisation&#39;s account</a></p>') if sso else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Log in · Rehab pose monitor</title>
<style>
body {{font-family: system-ui, sans-serif; background: #f5f6f8; color: #222; margin: 0;}}
main {{max-width: 22rem; margin: 12vh auto; background: #fff; padding: 2rem; border-radius: .6rem;
       box-shadow: 0 1px 4px rgba(0,0,0,.12);}}
h1 {{font-size: 1.35rem; margin-top: 0;}} label {{display: block; margin: 1rem 0 .3rem;}}
input {{width: 100%; box-sizing: border-box; padding: .55rem; font-size: 1rem; border: 1px solid #bbb;
        border-radius: .3rem;}}
button {{margin-top: 1.4rem; width: 100%; padding: .6rem; font-size: 1rem; border: 0; border-radius: .3rem;
         background: #ff4b4b; color: #fff; cursor: pointer;}}
.error {{color: #a40000; background: #fdecec; padding: .5rem .7rem; border-radius: .3rem;}}
.note {{font-size: .85rem; color: #666;}}
.sso {{display: block; margin-top: 1.4rem; padding: .6rem; text-align: center; border: 1px solid #ff4b4b;
       border-radius: .3rem; color: #c22; text-decoration: none;}}
</style></head>
<body><main>
<h1>Rehab pose monitor</h1>
{error}
{form}{single_sign_on}
</main></body></html>
"""
