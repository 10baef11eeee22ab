// The endpoints that receive JWT access tokens, which oidc-provider neither stores nor looks up: userinfo,
// RFC 7662 introspection and RFC 7009 revocation, with INDIGO IAM's rules:
// - introspection needs an authenticated client that an administrator allowed to introspect; any other
//   authenticated client gets {"active": false}, as from IAM;
// - revocation needs an authenticated client and revokes only that client's tokens (403 otherwise): a refresh
//   token is deleted (the grant and its other tokens stay), an access token is marked revoked until it expires;
//   unknown or malformed tokens are answered 200 (RFC 7009 2.2).
import { timingSafeEqual } from 'node:crypto';

import { TokenError } from './token_store.js';

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('request too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function same(a, b) {
  const x = Buffer.from(String(a));
  const y = Buffer.from(String(b));
  return x.length === y.length && timingSafeEqual(x, y);
}

// The registered client whose credentials came with the request (Basic or form), or undefined.
function authenticate(req, form, registry) {
  let id = form.get('client_id');
  let secret = form.get('client_secret');
  const header = req.headers.authorization || '';
  if (header.startsWith('Basic ')) {
    const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    if (i < 0) return undefined;
    try {
      id = decodeURIComponent(decoded.slice(0, i));
      secret = decodeURIComponent(decoded.slice(i + 1));
    } catch {
      return undefined;
    }
  }
  const client = registry.get(id);
  return client && client.secret && secret && same(secret, client.secret) ? client : undefined;
}

function send(res, status, body, headers = {}) {
  res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', ...headers });
  res.end(body === undefined ? '' : JSON.stringify(body));
}

function unauthenticated(res) {
  send(res, 401, { error: 'invalid_client', error_description: 'client authentication failed' },
    { 'WWW-Authenticate': 'Basic realm="dev IAM"' });
}

function looksLikeJwt(token) {
  return token.split('.').length === 3;
}

export async function introspect(req, res, { provider, registry, store, users }) {
  const form = await readForm(req);
  const client = authenticate(req, form, registry);
  if (!client) return unauthenticated(res);
  const token = form.get('token');
  if (token === null) {
    return send(res, 400, { error: 'invalid_request', error_description: 'missing required parameter \'token\'' });
  }
  if (!client.introspection || !token) return send(res, 200, { active: false });
  if (looksLikeJwt(token)) {
    try {
      const { payload, scopes, clientId } = await store.verify(token);
      const { scope, aud, ...claims } = payload;
      const user = users.bySub.get(payload.sub);
      return send(res, 200, {
        ...claims,
        active: true,
        token_type: 'Bearer',
        client_id: clientId,
        ...(scopes.length ? { scope: scopes.join(' ') } : {}),
        ...(aud ? { aud: [aud].flat().join(' ') } : {}),
        ...(user ? { username: user.username } : {}),
      });
    } catch (err) {
      if (!(err instanceof TokenError)) throw err;
      return send(res, 200, { active: false });
    }
  }
  const refresh = await provider.RefreshToken.find(token).catch(() => undefined);
  if (!refresh || refresh.isExpired || refresh.consumed) return send(res, 200, { active: false });
  return send(res, 200, {
    active: true,
    token_type: 'refresh_token',
    sub: refresh.accountId,
    client_id: refresh.clientId,
    scope: refresh.scope,
    exp: refresh.exp,
    iat: refresh.iat,
    iss: provider.issuer,
  });
}

export async function userinfo(req, res, { store, users, profile }) {
  const header = req.headers.authorization || '';
  const token = header.startsWith('Bearer ') ? header.slice(7).trim() : '';
  let verified;
  try {
    verified = await store.verify(token);
  } catch (err) {
    if (!(err instanceof TokenError)) throw err;
    return send(res, 401, { error: 'invalid_token', error_description: 'invalid, expired or revoked access token' },
      { 'WWW-Authenticate': 'Bearer error="invalid_token"' });
  }
  const user = users.bySub.get(verified.payload.sub);
  if (!user || !verified.scopes.includes('openid')) {
    return send(res, 403, {
      error: 'insufficient_scope',
      error_description: 'the token was not granted the openid scope',
    }, { 'WWW-Authenticate': 'Bearer error="insufficient_scope", scope="openid"' });
  }
  return send(res, 200, profile.userinfoClaims(user, verified.scopes, verified.payload));
}

const NOT_YOURS = { error: 'Client is not allowed to revoke this token' };

async function revokeAccessToken(res, client, token, store) {
  let verified;
  try {
    verified = await store.verify(token);
  } catch (err) {
    if (!(err instanceof TokenError)) throw err;
    return send(res, 200);
  }
  if (verified.clientId !== client.clientId) return send(res, 403, NOT_YOURS);
  store.revoke(verified.payload.jti, verified.payload.exp);
  return send(res, 200);
}

async function revokeRefreshToken(res, client, token, provider) {
  const refresh = await provider.RefreshToken.find(token).catch(() => undefined);
  if (!refresh) return send(res, 200);
  if (refresh.clientId !== client.clientId) return send(res, 403, NOT_YOURS);
  await refresh.destroy();
  return send(res, 200);
}

export async function revoke(req, res, { provider, registry, store }) {
  const form = await readForm(req);
  const client = authenticate(req, form, registry);
  if (!client) return unauthenticated(res);
  const token = form.get('token');
  if (!token) {
    return send(res, 400, { error: 'invalid_request', error_description: 'missing required parameter \'token\'' });
  }
  const hint = form.get('token_type_hint');
  if (hint !== null && hint !== 'access_token' && hint !== 'refresh_token') {
    return send(res, 400, { error: 'unsupported_token_type', error_description: `unknown token_type_hint ${hint}` });
  }
  // As in IAM, a hint is obeyed: a refresh token sent as an access token is not revoked.
  const asAccessToken = hint ? hint === 'access_token' : looksLikeJwt(token);
  if (asAccessToken) return revokeAccessToken(res, client, token, store);
  return revokeRefreshToken(res, client, token, provider);
}
