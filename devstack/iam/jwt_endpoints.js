// The endpoints that must understand JWT access tokens, which oidc-provider does not store and therefore cannot
// look up: userinfo (IAM serves it for its access tokens) and RFC 7662 introspection for an authenticated client
// (JWTs verified with the signing key; refresh tokens looked up in the provider).
import { timingSafeEqual } from 'node:crypto';

import { jwtVerify } from 'jose';

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

function authenticate(req, form, clients) {
  let id = form.get('client_id');
  let secret = form.get('client_secret');
  const header = req.headers.authorization || '';
  if (header.startsWith('Basic ')) {
    const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    id = decodeURIComponent(decoded.slice(0, i));
    secret = decodeURIComponent(decoded.slice(i + 1));
  }
  const client = clients.find((c) => c.client_id === id);
  return Boolean(client && client.client_secret && secret && same(secret, client.client_secret));
}

function send(res, status, body) {
  res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
  res.end(JSON.stringify(body));
}

export async function introspect(req, res, { provider, keys, clients }) {
  const form = await readForm(req);
  if (!authenticate(req, form, clients)) {
    send(res, 401, { error: 'invalid_client', error_description: 'client authentication failed' });
    return;
  }
  const token = form.get('token');
  if (!token) {
    send(res, 400, { error: 'invalid_request', error_description: 'missing required parameter \'token\'' });
    return;
  }
  try {
    const { payload } = await jwtVerify(token, keys.publicKey, { issuer: provider.issuer, algorithms: ['RS256'] });
    send(res, 200, { active: true, token_type: 'Bearer', ...payload });
    return;
  } catch {
    // not a valid JWT of ours: maybe a refresh token
  }
  const refresh = await provider.RefreshToken.find(token).catch(() => undefined);
  if (refresh && !refresh.isExpired) {
    send(res, 200, {
      active: true,
      token_type: 'refresh_token',
      sub: refresh.accountId,
      client_id: refresh.clientId,
      scope: refresh.scope,
      exp: refresh.exp,
      iat: refresh.iat,
      iss: provider.issuer,
    });
    return;
  }
  send(res, 200, { active: false });
}

const SCOPE_CLAIMS = {
  openid: ['sub'],
  profile: ['name', 'preferred_username', 'groups'],
  email: ['email', 'email_verified'],
};

export async function userinfo(req, res, { provider, keys, users }) {
  const header = req.headers.authorization || '';
  const token = header.startsWith('Bearer ') ? header.slice(7).trim() : '';
  let payload;
  try {
    ({ payload } = await jwtVerify(token, keys.publicKey, { issuer: provider.issuer, algorithms: ['RS256'],
      typ: 'at+jwt' }));
  } catch {
    res.writeHead(401, { 'WWW-Authenticate': `Bearer realm="${provider.issuer}", error="invalid_token"`,
      'Content-Type': 'application/json' });
    res.end(JSON.stringify({ error: 'invalid_token', error_description: 'invalid or expired access token' }));
    return;
  }
  const user = users.bySub.get(payload.sub);
  const scopes = String(payload.scope || '').split(' ');
  if (!user || !scopes.includes('openid')) {
    send(res, 403, { error: 'insufficient_scope', error_description: 'the token does not carry the openid scope' });
    return;
  }
  const claims = {};
  for (const scope of scopes) {
    for (const claim of SCOPE_CLAIMS[scope] || []) claims[claim] = user.claims[claim];
  }
  send(res, 200, claims);
}
