"""dlaas-preflight: check, before the first login, that IAM, Rucio and EOS are set up the way the hub needs them.

Every one of these is configured by another team, and each mistake only shows at a user's first login (or worse, at
their first Rucio call). Run from the hub pod (or next to the local hub), it reads the hub's own configuration and
checks, printing one line per check and what to ask for when it fails:

- IAM: the discovery document (issuer spelled exactly, endpoints, signing keys, revocation);
- IAM: that the hub's client may use token exchange for every target with its scopes - probed with a subject token
  IAM must reject, so no user is needed: IAM checks the client's scopes and grant before the subject token;
- EOS: that the token line can be written from IAM's userinfo endpoint (no port: EOS cannot read one);
- Rucio: that the server answers;
- with `--subject-token-file` (an IAM access token of a test user, e.g. your own): the real exchanges, that Rucio
  accepts the exchanged token (audience, scope, identity mapping) and that Rucio refuses that user a replica on the
  scratch RSE (the DLaaS policy package is loaded).

    dlaas-preflight [--config /usr/local/etc/jupyterhub/jupyterhub_config.py] [--subject-token-file FILE]

Exit status 0 when every check passed, 1 otherwise. Tokens are never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import requests

from hub_plugins.discovery import ENDPOINTS, OPTIONAL_ENDPOINTS, DiscoveryError, discovery_url, parse
from hub_plugins.token_exchange import ACCESS_TOKEN_TYPE, GRANT_TYPE, Target
from singleuser import contract

PROBE_TOKEN = "dlaas-preflight-probe-not-a-token"
DEFAULT_CONFIG = "/usr/local/etc/jupyterhub/jupyterhub_config.py"


@dataclass
class Check:
    name: str
    ok: bool | None  # None: skipped
    detail: str

    def line(self) -> str:
        word = {True: "OK  ", False: "FAIL", None: "SKIP"}[self.ok]
        return f"{word} {self.name}: {self.detail}"


@dataclass
class HubSettings:
    issuer: str
    client_id: str
    client_secret: str
    targets: list[Target]
    rucio_url: str
    scratch_rse: str
    rucio_ca_cert: str = ""


def hub_settings(config_file: str) -> HubSettings:
    """The settings the checks need, from the hub's configuration file (executed as JupyterHub would)."""
    from traitlets.config.loader import PyFileConfigLoader

    path = Path(config_file)
    config = PyFileConfigLoader(path.name, str(path.parent)).load_config()
    auth = config.EscapeIAMAuthenticator
    generic = config.GenericOAuthenticator
    oauth = config.OAuthenticator

    def pick(name: str, env: str = "") -> str:
        for section in (auth, generic, oauth):
            if name in section:
                return section[name]
        return os.environ.get(env, "") if env else ""

    targets = auth.get("exchange_targets") or {"rucio": {"audience": "rucio", "scope": "openid profile"}}
    env = config.DataLakeEnvironment
    return HubSettings(
        issuer=pick("issuer"),
        client_id=pick("client_id", "OAUTH_CLIENT_ID"),
        client_secret=pick("client_secret", "OAUTH_CLIENT_SECRET"),
        targets=[Target.parse(name, spec) for name, spec in targets.items()],
        rucio_url=env.get("rucio_base_url", ""),
        scratch_rse=env.get("scratch_rse", contract.SCRATCH_RSE.default),
        rucio_ca_cert=env.get("rucio_ca_cert", ""),
    )


class Preflight:
    def __init__(self, settings: HubSettings, *, timeout: float = 10.0, subject_token: str = ""):
        self.s = settings
        self.timeout = timeout
        self.subject_token = subject_token
        self.http = requests.Session()
        self.rucio_http = requests.Session()
        if settings.rucio_ca_cert:  # Rucio's certificate may come from a CA the system bundle lacks (as the servers')
            self.rucio_http.verify = settings.rucio_ca_cert
        self.endpoints: dict[str, str] = {}
        self.exchanged: dict[str, str] = {}
        self.checks: list[Check] = []

    def add(self, name: str, ok: bool | None, detail: str) -> bool | None:
        self.checks.append(Check(name, ok, detail))
        return ok

    def run(self) -> list[Check]:
        if self.discovery():
            self.signing_keys()
            for target in self.s.targets:
                self.exchange_grant(target)
            self.eos_line()
        self.rucio_ping()
        if not self.subject_token:
            self.add(
                "user token checks",
                None,
                "give --subject-token-file (an IAM access token of a test user) to "
                "check real exchanges, Rucio's acceptance of them and its scratch policy",
            )
        elif self.endpoints:
            for target in self.s.targets:
                self.exchange(target)
            self.rucio_with_token()
        return self.checks

    # --- IAM -----------------------------------------------------------------------------------------------------

    def discovery(self) -> bool:
        if not self.s.issuer:
            return bool(
                self.add("IAM discovery", False, "EscapeIAMAuthenticator.issuer is not set in the hub's configuration")
            )
        url = discovery_url(self.s.issuer)
        try:
            answer = self.http.get(url, timeout=self.timeout, headers={"Accept": "application/json"})
            answer.raise_for_status()
            self.endpoints = parse(answer.content, self.s.issuer, url)
        except requests.RequestException as e:
            return bool(
                self.add(
                    "IAM discovery",
                    False,
                    f"cannot read {url} ({type(e).__name__}): is the issuer right and IAM reachable from the hub?",
                )
            )
        except DiscoveryError as e:
            return bool(self.add("IAM discovery", False, str(e)))
        missing = [key for trait, key in OPTIONAL_ENDPOINTS.items() if not self.endpoints.get(trait)]
        note = f"; no {', '.join(missing)} advertised (logout cannot revoke IAM tokens)" if missing else ""
        return bool(self.add("IAM discovery", True, f"{self.s.issuer} ({len(ENDPOINTS)} endpoints){note}"))

    def signing_keys(self) -> None:
        try:
            keys = self.http.get(self.endpoints["jwks_url"], timeout=self.timeout).json().get("keys", [])
        except (requests.RequestException, ValueError, AttributeError) as e:
            self.add("IAM signing keys", False, f"cannot read {self.endpoints['jwks_url']} ({type(e).__name__})")
            return
        usable = [k for k in keys if isinstance(k, dict) and k.get("kty") in ("RSA", "EC")]
        self.add(
            "IAM signing keys",
            bool(usable),
            f"{len(usable)} public keys"
            if usable
            else "the JWKS holds no RSA or EC key: the hub cannot verify exchanged tokens",
        )

    def _exchange(self, target: Target, subject: str) -> requests.Response:
        return self.http.post(
            self.endpoints["token_url"],
            timeout=self.timeout,
            auth=(self.s.client_id, self.s.client_secret),
            data={
                "grant_type": GRANT_TYPE,
                "subject_token": subject,
                "subject_token_type": ACCESS_TOKEN_TYPE,
                "audience": target.audience,
                "scope": target.scope or "",
            },
        )

    def exchange_grant(self, target: Target) -> None:
        name = f"token exchange grant ({target.name})"
        try:
            answer = self._exchange(target, PROBE_TOKEN)
        except requests.RequestException as e:
            self.add(name, False, f"IAM's token endpoint is unreachable ({type(e).__name__})")
            return
        error, description = _oauth_error(answer)
        client = self.s.client_id
        if answer.status_code == 200:
            self.add(name, False, "IAM exchanged a token that is not a token: do not use this IAM")
        elif "grant type" in description.lower() or error == "unauthorized_client":
            self.add(
                name,
                False,
                f"IAM does not let the hub's client {client} use token exchange ({description}): "
                "ask an IAM administrator to enable the token-exchange grant for this client",
            )
        elif error == "invalid_client":
            self.add(
                name,
                False,
                f"IAM does not accept the hub's client id/secret for {client} ({description}): "
                "check EscapeIAMAuthenticator.client_id/client_secret",
            )
        elif error == "invalid_scope":
            self.add(
                name,
                False,
                f"the client {client} is not registered for the scopes {target.scope!r} "
                f"({description}): add them to the client in IAM",
            )
        elif error == "invalid_request":
            self.add(name, False, f"IAM refused the request shape: {description}")
        elif error == "invalid_grant":
            self.add(
                name,
                True,
                f"client {client} may exchange for audience {target.audience!r}, "
                f"scope {target.scope!r} (IAM rejected only the probe's subject token, as it must)",
            )
        else:
            self.add(name, False, f"unexpected answer HTTP {answer.status_code} {error} {description}".strip())

    def exchange(self, target: Target) -> None:
        name = f"token exchange ({target.name})"
        try:
            answer = self._exchange(target, self.subject_token)
        except requests.RequestException as e:
            self.add(name, False, f"IAM's token endpoint is unreachable ({type(e).__name__})")
            return
        if answer.status_code != 200:
            error, description = _oauth_error(answer)
            self.add(name, False, f"IAM refused the exchange of the test user's token: {error} {description}")
            return
        import jwt

        token = answer.json().get("access_token", "")
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            self.add(name, False, "IAM returned an access token that is not a JWT")
            return
        audiences = claims.get("aud") if isinstance(claims.get("aud"), list) else [claims.get("aud")]
        if target.audience not in audiences:
            self.add(name, False, f"the token's aud is {claims.get('aud')!r}, not {target.audience!r}")
            return
        self.exchanged[target.name] = token
        scope_note = "" if "scope" in claims else "; no scope claim (Rucio will ask IAM's introspection endpoint)"
        self.add(name, True, f"aud {target.audience!r}, sub kept{scope_note}")

    def eos_line(self) -> None:
        from singleuser.token_files import eos_resource

        if not self.endpoints["userdata_url"].startswith("https://"):
            self.add(
                "EOS token line",
                None,
                "IAM's userinfo endpoint is not https (a development IAM): EOS calls "
                "https://<host>/<path> on port 443 only",
            )
            return
        try:
            resource = eos_resource(self.endpoints["userdata_url"])
        except ValueError as e:
            self.add(
                "EOS token line",
                False,
                f"{e}: EOS reads `oauth2:<token>:<host>/<path>` and cannot be given this userinfo endpoint",
            )
            return
        self.add("EOS token line", True, f"oauth2:<token>:{resource} (EOS calls https://{resource})")

    # --- Rucio ---------------------------------------------------------------------------------------------------

    def rucio_ping(self) -> None:
        if not self.s.rucio_url:
            self.add("Rucio", False, "DataLakeEnvironment.rucio_base_url is not set in the hub's configuration")
            return
        try:
            version = self.rucio_http.get(f"{self.s.rucio_url.rstrip('/')}/ping", timeout=self.timeout).json()
            self.add("Rucio", True, f"{self.s.rucio_url} answers (version {version.get('version', '?')})")
        except (requests.RequestException, ValueError, AttributeError) as e:
            self.add("Rucio", False, f"{self.s.rucio_url}/ping does not answer ({type(e).__name__})")

    def rucio_with_token(self) -> None:
        token = self.exchanged.get("rucio")
        if not token or not self.s.rucio_url:
            self.add("Rucio accepts exchanged tokens", None, "no exchanged Rucio token (see above)")
            return
        base = self.s.rucio_url.rstrip("/")
        headers = {"X-Rucio-Auth-Token": token}
        answer = self.rucio_http.get(f"{base}/accounts/whoami", headers=headers, timeout=self.timeout)
        if answer.status_code != 200:
            self.add(
                "Rucio accepts exchanged tokens",
                False,
                f"Rucio refused the token (HTTP {answer.status_code} "
                f"{answer.headers.get('ExceptionMessage', '')}): check [oidc] expected_audience/expected_scope, "
                "the IAM entry in idpsecrets.json and the user's identity 'SUB=<sub>, ISS=<issuer>'",
            )
            return
        account = answer.json()["account"]
        self.add("Rucio accepts exchanged tokens", True, f"the test user is Rucio account {account!r}")
        self.scratch_policy(base, headers, account)

    def scratch_policy(self, base: str, headers: dict, account: str) -> None:
        name = "Rucio scratch policy"
        try:
            answer = self.rucio_http.get(
                f"{base}/rses/{self.s.scratch_rse}/protocols",
                headers=headers,
                params={"operation": "write", "protocol_domain": "wan"},
                timeout=self.timeout,
            ).json()
            protocols = answer.get("protocols", []) if isinstance(answer, dict) else answer
            proto = protocols[0]
        except (requests.RequestException, ValueError, AttributeError, IndexError):
            self.add(name, False, f"the scratch RSE {self.s.scratch_rse} or its protocols cannot be read")
            return
        port = f":{proto['port']}" if proto.get("port") else ""
        probe = f"dlaas-preflight-{uuid.uuid4().hex[:12]}"
        pfn = f"{proto['scheme']}://{proto['hostname']}{port}/{proto['prefix'].strip('/')}/{account}/{probe}"
        answer = self.rucio_http.post(
            f"{base}/replicas/",
            headers=headers,
            timeout=self.timeout,
            data=json.dumps(
                {
                    "rse": self.s.scratch_rse,
                    "files": [
                        {"scope": f"user.{account}", "name": probe, "bytes": 1, "adler32": "00000001", "pfn": pfn}
                    ],
                }
            ),
        )
        if answer.headers.get("ExceptionClass") == "AccessDenied":
            self.add(name, True, f"users cannot register replicas on {self.s.scratch_rse} themselves")
        elif answer.status_code == 201:
            self.add(
                name,
                False,
                f"Rucio let the test user register a replica on {self.s.scratch_rse} (a probe "
                f"for a missing file, user.{account}:{probe}): load the DLaaS policy package "
                "([policy] package = dlaas_rucio_policy) and set dlaas_scratch=True on the RSE",
            )
        else:
            self.add(
                name,
                False,
                f"unexpected answer HTTP {answer.status_code} "
                f"{answer.headers.get('ExceptionClass', '')}: {answer.headers.get('ExceptionMessage', '')}",
            )


def _oauth_error(answer: requests.Response) -> tuple[str, str]:
    try:
        body = answer.json()
    except ValueError:
        return "", answer.text[:200]
    return str(body.get("error", "")), str(body.get("error_description", ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dlaas-preflight", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"the hub's configuration file [{DEFAULT_CONFIG}]")
    parser.add_argument("--subject-token-file", help="an IAM access token of a test user (file, no newline)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request [10]")
    args = parser.parse_args(argv)
    try:
        settings = hub_settings(args.config)
    except (OSError, ValueError) as e:
        print(f"dlaas-preflight: cannot read the hub's configuration {args.config}: {e}", file=sys.stderr)
        return 2
    subject = Path(args.subject_token_file).read_text().strip() if args.subject_token_file else ""
    checks = Preflight(settings, timeout=args.timeout, subject_token=subject).run()
    for check in checks:
        print(check.line())
    failed = [c for c in checks if c.ok is False]
    print(
        f"{len(checks) - len(failed)} of {len(checks)} checks passed"
        if not failed
        else f"{len(failed)} of {len(checks)} checks FAILED: fix those first"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
