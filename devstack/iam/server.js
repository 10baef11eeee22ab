// Dev IAM: an OpenID provider shaped like INDIGO IAM, built on oidc-provider, for the local data lake.
//
// IAM's endpoint paths (/authorize /token /userinfo /jwk /introspect /revoke), a real login form checked against
// users.json, authorization code + PKCE, refresh tokens (offline_access), JWT access tokens (RS256), RFC 8693
// token exchange and RFC 7009 revocation with IAM's rules (see token_exchange.js, jwt_endpoints.js), IAM's
// `iam` or `wlcg` token profile (profile.js), the client_credentials grant for clients registered for it, and IAM's
// SCIM API for clients with scim:read / scim:write (scim.js). The signing key and cookie keys persist in the state directory, so
// tokens stay valid across restarts. Tokens and passwords are never logged.
//
//   node server.js --host 127.0.0.1 --port 0 --state-dir DIR --users users.json --clients clients.json
//                  [--profile iam|wlcg] [--rotate-refresh-tokens] [--no-scope-claim]
//                  [--access-ttl 3600] [--refresh-ttl 2592000] [--id-ttl 3600]
// Prints `READY <issuer>` once listening.

import http from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

import { loadClients, loadUsers } from './config.js';
import { mountInteractions } from './interactions.js';
import { introspect, revoke, userinfo } from './jwt_endpoints.js';
import { loadOrCreateKeys } from './keys.js';
import { makeProfile, PROFILES, SCOPES } from './profile.js';
import { Directory, isScimPath, scim } from './scim.js';
import { registerTokenExchange } from './token_exchange.js';
import { TokenStore } from './token_store.js';

const { values: args } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '8085' },
    'state-dir': { type: 'string' },
    users: { type: 'string' },
    clients: { type: 'string' },
    profile: { type: 'string', default: 'iam' },
    'rotate-refresh-tokens': { type: 'boolean', default: false },
    'no-scope-claim': { type: 'boolean', default: false },
    'access-ttl': { type: 'string', default: '3600' },
    'refresh-ttl': { type: 'string', default: String(30 * 24 * 3600) },
    'id-ttl': { type: 'string', default: '3600' },
  },
});

function fail(message) {
  process.stderr.write(`dev IAM: ${message}\n`);
  process.exit(2);
}

for (const name of ['state-dir', 'users', 'clients']) {
  if (!args[name]) fail(`--${name} is required`);
}
if (!PROFILES.includes(args.profile)) fail(`--profile must be one of ${PROFILES.join(', ')}`);
if (args['no-scope-claim'] && args.profile !== 'iam') {
  fail('--no-scope-claim applies to the iam profile only: WLCG profile tokens always carry scope');
}
const ttl = {
  access: Number(args['access-ttl']),
  refresh: Number(args['refresh-ttl']),
  id: Number(args['id-ttl']),
};
for (const [name, value] of Object.entries(ttl)) {
  if (!Number.isInteger(value) || value <= 0) fail(`--${name}-ttl must be a positive number of seconds`);
}

const profile = makeProfile(args.profile, { scopeClaim: !args['no-scope-claim'] });
const users = loadUsers(args.users);
const { registry, forProvider } = loadClients(args.clients, SCOPES);
const keys = await loadOrCreateKeys(args['state-dir']);
// IAM leaves `aud` out of access tokens nobody asked an audience for (iam profile); oidc-provider cannot sign a
// JWT access token without one, so login and refresh tokens get this placeholder, which no service accepts.
const LOGIN_AUDIENCE = profile.defaultAudience || 'urn:escape:dlaas:iam';
// Served here rather than by oidc-provider, which cannot look up JWT access tokens (jwt_endpoints.js).
const ROUTES = {
  'POST /introspect': introspect,
  'POST /revoke': revoke,
  'GET /userinfo': userinfo,
  'POST /userinfo': userinfo,
};

let provider;
let context;
const server = http.createServer((req, res) => {
  const path = req.url.split('?')[0];
  const handler = ROUTES[`${req.method} ${path}`] || (isScimPath(path) ? scim : undefined);
  if (!handler) {
    provider.callback()(req, res);
    return;
  }
  handler(req, res, context)
    .then(() => process.stdout.write(`${req.method} ${path} ${res.statusCode}\n`))
    .catch((err) => {
      process.stdout.write(`${req.method} ${path} 500 ${err.name}\n`);
      if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: 'server_error' }));
    });
});

server.on('error', (err) => fail(err.code === 'EADDRINUSE'
  ? `port ${args.port} on ${args.host} is already in use`
  : err.message));

server.listen(Number(args.port), args.host, () => {
  const { port } = server.address();
  const issuer = `http://${args.host}:${port}/`;
  const store = new TokenStore({ issuer, publicKey: keys.publicKey });
  provider = new Provider(issuer, {
    clients: forProvider,
    jwks: { keys: [keys.privateJwk] },
    cookies: { keys: keys.cookieKeys },
    findAccount: async (ctx, sub) => {
      const user = users.bySub.get(sub);
      if (!user) return undefined;
      return { accountId: sub, claims: async () => profile.userClaims(user) };
    },
    claims: profile.scopeClaims,
    scopes: SCOPES,
    conformIdTokenClaims: false,
    routes: {
      authorization: '/authorize',
      token: '/token',
      userinfo: '/userinfo',
      jwks: '/jwk',
      introspection: '/introspect',
      revocation: '/revoke',
      end_session: '/logout',
    },
    features: {
      devInteractions: { enabled: false },
      // Only for clients registered with the grant (IAM: an administrator enables it), e.g. for the SCIM API.
      clientCredentials: { enabled: true },
      // Both advertised in discovery; served by jwt_endpoints.js, which also knows JWT access tokens.
      revocation: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => LOGIN_AUDIENCE,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx, resource) => ({
          scope: SCOPES.join(' '),
          audience: resource,
          accessTokenTTL: ttl.access,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
    formats: {
      customizers: {
        // The profile's access token claims; the record of the token's scope (it may carry none) and client.
        jwt: async (ctx, token, jwt) => {
          const { scope, ...payload } = jwt.payload;
          const user = token.accountId ? users.bySub.get(token.accountId) : undefined;
          store.remember(payload.jti, { clientId: token.clientId, scope: scope || '', exp: payload.exp });
          const scopes = String(scope || '').split(' ').filter(Boolean);
          const claims = user ? profile.accessTokenClaims(user, scopes, payload.iat)
            : token.kind === 'ClientCredentials' ? profile.clientTokenClaims(scopes, payload.iat) : {};
          jwt.payload = { ...payload, ...claims };
        },
      },
    },
    pkce: { required: (ctx, client) => client.tokenEndpointAuthMethod === 'none' },
    ttl: {
      AccessToken: ttl.access,
      AuthorizationCode: 60,
      IdToken: ttl.id,
      RefreshToken: ttl.refresh,
      Interaction: 600,
      Session: 24 * 3600,
      Grant: ttl.refresh,
    },
    rotateRefreshToken: args['rotate-refresh-tokens'],
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    renderError: async (ctx, out) => {
      ctx.type = 'html';
      ctx.body = `<!doctype html><title>Dev IAM error</title><h1>${escapeHtml(out.error)}</h1>`
        + `<p>${escapeHtml(out.error_description || '')}</p>`;
    },
  });
  provider.proxy = false;
  context = { provider, registry, store, users, profile, directory: new Directory(users, issuer) };
  // IAM grants offline_access without prompt=consent; oidc-provider drops it unless consent is prompted. Consent
  // is automatic here, so asking for it changes nothing for the user and keeps the refresh token coming.
  provider.use(async (ctx, next) => {
    if (ctx.path === '/authorize') {
      const query = new URLSearchParams(ctx.querystring);
      const prompts = (query.get('prompt') || '').split(' ').filter(Boolean);
      if ((query.get('scope') || '').split(' ').includes('offline_access') && !prompts.includes('none')
          && !prompts.includes('consent')) {
        query.set('prompt', [...prompts, 'consent'].join(' '));
        ctx.querystring = query.toString();
      }
    }
    return next();
  });
  // Rotation as IAM does it: the old refresh token is deleted (oidc-provider would keep it as "consumed" and,
  // when it comes back, revoke the whole grant; IAM answers invalid_grant and leaves the new token working).
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.path === '/token' && ctx.status === 200) {
      await ctx.oidc?.entities?.RotatedRefreshToken?.destroy();
    }
  });
  mountInteractions(provider, users);
  registerTokenExchange(provider, { keys, ttl, users, registry, store, profile });
  // Log requests without query strings or bodies: codes, tokens and passwords never reach the log.
  provider.use(async (ctx, next) => {
    await next();
    process.stdout.write(`${ctx.method} ${ctx.path} ${ctx.status}\n`);
  });
  process.stdout.write(`READY ${issuer}\n`);
});

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
