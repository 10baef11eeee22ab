// Users and clients of the dev IAM, read from JSON files and checked at start-up.
//
// A client registration holds what an IAM administrator sets: redirect URIs, grant types (token exchange only
// when enabled for that client), the scopes the client may ask for, and whether it may introspect tokens.
import { readFileSync } from 'node:fs';

function readJson(path, what) {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    process.stderr.write(`dev IAM: cannot read ${what} from ${path}: ${err.message}\n`);
    process.exit(2);
  }
}

function fail(message) {
  process.stderr.write(`dev IAM: ${message}\n`);
  process.exit(2);
}

export function loadUsers(path) {
  const list = readJson(path, 'users');
  const byName = new Map();
  const bySub = new Map();
  for (const u of list) {
    if (!u.username || !u.password || !u.sub) fail(`every user in ${path} needs username, password and sub`);
    const user = {
      username: u.username,
      password: u.password,
      sub: u.sub,
      name: u.name || u.username,
      email: u.email,
      groups: u.groups || [],
    };
    byName.set(u.username, user);
    bySub.set(u.sub, user);
  }
  return { byName, bySub };
}

export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';

// `registry`: the registrations as given (the exchange grant, scopes, introspection are checked against these).
// `forProvider`: what oidc-provider gets; every client may send the exchange grant to /token so that the dev IAM,
// not oidc-provider, answers a client without it, with IAM's error.
export function loadClients(path, supportedScopes) {
  const registry = new Map();
  for (const c of readJson(path, 'clients')) {
    if (!c.client_id) fail(`every client in ${path} needs a client_id`);
    const scopes = c.scopes || [];
    const unknown = scopes.filter((s) => !supportedScopes.includes(s));
    if (unknown.length) {
      fail(`client ${c.client_id} is registered for scopes the dev IAM does not offer: ${unknown.join(' ')}`);
    }
    registry.set(c.client_id, {
      clientId: c.client_id,
      secret: c.client_secret,
      redirectUris: c.redirect_uris || [],
      grantTypes: c.grant_types || [],
      scopes,
      introspection: Boolean(c.introspection),
      authMethod: c.client_secret ? (c.token_endpoint_auth_method || 'client_secret_basic') : 'none',
    });
  }
  const forProvider = [...registry.values()].map((c) => ({
    client_id: c.clientId,
    ...(c.secret ? { client_secret: c.secret } : {}),
    redirect_uris: c.redirectUris,
    response_types: c.redirectUris.length && c.grantTypes.includes('authorization_code') ? ['code'] : [],
    grant_types: [...new Set([...c.grantTypes.filter((g) => g !== TOKEN_EXCHANGE), TOKEN_EXCHANGE])],
    scope: c.scopes.join(' '),
    token_endpoint_auth_method: c.authMethod,
  }));
  return { registry, forProvider };
}
