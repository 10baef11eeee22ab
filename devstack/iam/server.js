// Dev IAM: an OpenID provider shaped like INDIGO IAM, built on oidc-provider, for the local data lake.
//
// IAM's endpoint paths (/authorize /token /userinfo /jwk /introspect), a real login form checked against
// users.json, authorization code + PKCE, refresh tokens (offline_access), JWT access tokens (RS256), and RFC 8693
// token exchange with IAM's request/response shape. The signing key and cookie keys persist in the state
// directory, so tokens stay valid across restarts. Tokens and passwords are never logged.
//
//   node server.js --host 127.0.0.1 --port 0 --state-dir DIR --users users.json --clients clients.json
//                  [--access-ttl 3600] [--refresh-ttl 2592000] [--id-ttl 3600]
// Prints `READY <issuer>` once listening.

import http from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

import { loadClients, loadUsers } from './config.js';
import { mountInteractions } from './interactions.js';
import { introspect, userinfo } from './jwt_endpoints.js';
import { loadOrCreateKeys } from './keys.js';
import { registerTokenExchange } from './token_exchange.js';

const { values: args } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '8085' },
    'state-dir': { type: 'string' },
    users: { type: 'string' },
    clients: { type: 'string' },
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
const ttl = {
  access: Number(args['access-ttl']),
  refresh: Number(args['refresh-ttl']),
  id: Number(args['id-ttl']),
};
for (const [name, value] of Object.entries(ttl)) {
  if (!Number.isInteger(value) || value <= 0) fail(`--${name}-ttl must be a positive number of seconds`);
}

const users = loadUsers(args.users);
const clients = loadClients(args.clients);
const keys = await loadOrCreateKeys(args['state-dir']);
// Access tokens requested without a resource get this audience: JWT access tokens must carry one.
const DEFAULT_AUDIENCE = 'urn:escape:dlaas:iam';

let provider;
const server = http.createServer((req, res) => {
  const path = req.url.split('?')[0];
  let handler;
  if (req.method === 'POST' && path === '/introspect') handler = introspect;
  if ((req.method === 'GET' || req.method === 'POST') && path === '/userinfo') handler = userinfo;
  if (!handler) {
    provider.callback()(req, res);
    return;
  }
  handler(req, res, { provider, keys, clients, users })
    .then(() => process.stdout.write(`${req.method} ${path} ${res.statusCode}\n`))
    .catch((err) => {
      res.statusCode = 500;
      res.end(JSON.stringify({ error: 'server_error', error_description: err.message }));
    });
});

server.on('error', (err) => fail(err.code === 'EADDRINUSE'
  ? `port ${args.port} on ${args.host} is already in use`
  : err.message));

server.listen(Number(args.port), args.host, () => {
  const { port } = server.address();
  const issuer = `http://${args.host}:${port}/`;
  provider = new Provider(issuer, {
    clients,
    jwks: { keys: [keys.privateJwk] },
    cookies: { keys: keys.cookieKeys },
    findAccount: async (ctx, sub) => {
      const user = users.bySub.get(sub);
      if (!user) return undefined;
      return { accountId: sub, claims: async () => user.claims };
    },
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username', 'groups'],
      email: ['email', 'email_verified'],
    },
    scopes: ['openid', 'profile', 'email', 'offline_access'],
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
      revocation: { enabled: true },
      introspection: { enabled: true },  // advertised; served by introspection.js, which also knows JWTs
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => DEFAULT_AUDIENCE,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx, resource) => ({
          scope: 'openid profile email offline_access',
          audience: resource,
          accessTokenTTL: ttl.access,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
    extraTokenClaims: async (ctx, token) => {
      const user = users.bySub.get(token.accountId);
      return user ? { groups: user.claims.groups, preferred_username: user.claims.preferred_username } : undefined;
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
    rotateRefreshToken: false,
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    renderError: async (ctx, out) => {
      ctx.type = 'html';
      ctx.body = `<!doctype html><title>Dev IAM error</title><h1>${escapeHtml(out.error)}</h1>`
        + `<p>${escapeHtml(out.error_description || '')}</p>`;
    },
  });
  provider.proxy = false;
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
  mountInteractions(provider, users);
  registerTokenExchange(provider, { keys, ttl, defaultAudience: DEFAULT_AUDIENCE, users });
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
