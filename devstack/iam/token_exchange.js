// RFC 8693 token exchange with INDIGO IAM's rules, request and response shape, checked in IAM's order:
//  1. `scope` is required (IAM >= 1.7.0): invalid_request.
//  2. every requested scope must be registered for the requesting client: invalid_scope "Invalid scope: X".
//  3. the client must have the token-exchange grant (an IAM administrator enables it): 401 invalid_client
//     "Unauthorized grant type: urn:ietf:params:oauth:grant-type:token-exchange".
//  4. `actor_token` / `want_composite`: invalid_request "Delegation not supported".
//  5. the subject token must be a valid, unexpired, unrevoked access token of this IAM: invalid_grant.
//  6. `offline_access` when the requesting client is the client the subject token was issued to: 403
//     access_denied "Token exchange not allowed: same client and offline_access requested".
//  7. every requested scope but offline_access must be registered for the subject token's client (IAM's default
//     exchange policy allows "upscoping" within that client's scopes): invalid_scope.
// The subject token's own scopes do not limit the request. `audience` is optional and space separated; absent,
// the token has no `aud` (iam profile) or the WLCG "any" audience (wlcg profile). `sub` and `iss` are kept; `act`
// names the requesting client. An ID token comes back when openid is granted.
//
// Stricter than IAM: offline_access is refused on every exchange (IAM issues a refresh token when another client
// asks for it); DLaaS never asks for it.
import { randomUUID } from 'node:crypto';

import { SignJWT } from 'jose';
import { errors } from 'oidc-provider';

import { TOKEN_EXCHANGE } from './config.js';
import { TokenError } from './token_store.js';

const PARAMS = ['subject_token', 'subject_token_type', 'audience', 'scope', 'actor_token', 'actor_token_type',
  'requested_token_type', 'resource', 'want_composite'];

function withStatus(err, status, description) {
  Object.assign(err, { status, statusCode: status, error_description: description });
  return err;
}

function invalidGrant(description) {
  return withStatus(new errors.InvalidGrant(), 400, description);
}

const SUBJECT_ERRORS = {
  expired: 'Invalid subject token: it has expired',
  revoked: 'Invalid subject token: it was revoked',
  invalid: 'Invalid subject token: it was not issued by this IAM or is malformed',
};

export function registerTokenExchange(provider, { keys, ttl, users, registry, store, profile }) {
  function sign(claims, { sub, aud, expiresIn, typ }) {
    const jwt = new SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', kid: keys.kid, ...(typ ? { typ } : {}) })
      .setIssuer(provider.issuer)
      .setSubject(sub)
      .setIssuedAt()
      .setExpirationTime(`${expiresIn}s`)
      .setJti(randomUUID());
    if (aud) jwt.setAudience(aud);
    return jwt.sign(keys.privateKey);
  }

  async function handler(ctx) {
    const { params } = ctx.oidc;
    const client = registry.get(ctx.oidc.client.clientId);
    const requested = [...new Set(String(params.scope || '').split(' ').filter(Boolean))];
    if (!requested.length) {
      throw new errors.InvalidRequest('The scope parameter is required for a token exchange request!');
    }
    const unregistered = requested.find((s) => !client.scopes.includes(s));
    if (unregistered) throw new errors.InvalidScope(`Invalid scope: ${unregistered}`, unregistered);
    if (!client.grantTypes.includes(TOKEN_EXCHANGE)) {
      throw withStatus(new errors.InvalidClient(), 401, `Unauthorized grant type: ${TOKEN_EXCHANGE}`);
    }
    if (params.actor_token || params.want_composite) throw new errors.InvalidRequest('Delegation not supported');
    if (!params.subject_token) throw new errors.InvalidRequest('missing required parameter \'subject_token\'');

    let subject;
    try {
      subject = await store.verify(params.subject_token);
    } catch (err) {
      if (!(err instanceof TokenError)) throw err;
      throw invalidGrant(SUBJECT_ERRORS[err.reason]);
    }
    const user = users.bySub.get(subject.payload.sub);
    if (!user) throw invalidGrant('Invalid subject token: it names no known user');
    if (requested.includes('offline_access')) {
      if (subject.clientId === client.clientId) {
        throw withStatus(new errors.AccessDenied(), 403,
          'Token exchange not allowed: same client and offline_access requested');
      }
      throw new errors.InvalidScope('the dev IAM issues no refresh token on token exchange: leave offline_access out',
        'offline_access');
    }
    const origin = registry.get(subject.clientId);
    const notOrigin = requested.find((s) => !origin || !origin.scopes.includes(s));
    if (notOrigin) {
      throw new errors.InvalidScope(`scope not allowed by origin client configuration: ${notOrigin}`, notOrigin);
    }

    const audiences = String(params.audience || '').split(' ').filter(Boolean);
    const aud = audiences.length ? audiences : profile.defaultAudience;
    const now = Math.floor(Date.now() / 1000);
    const act = { sub: client.clientId, ...(subject.payload.act ? { act: subject.payload.act } : {}) };
    const accessToken = await sign(
      { ...profile.accessTokenClaims(user, requested, now), client_id: client.clientId, act },
      { sub: user.sub, aud: Array.isArray(aud) && aud.length === 1 ? aud[0] : aud, expiresIn: ttl.access,
        typ: 'at+jwt' },
    );
    const { jti, exp } = JSON.parse(Buffer.from(accessToken.split('.')[1], 'base64url'));
    store.remember(jti, { clientId: client.clientId, scope: requested.join(' '), exp });
    ctx.body = {
      access_token: accessToken,
      token_type: 'Bearer',
      expires_in: ttl.access,
      scope: requested.join(' '),
      issued_token_type: 'urn:ietf:params:oauth:token-type:jwt',
      ...(requested.includes('openid') ? {
        id_token: await sign(profile.idTokenClaims(user, requested), { sub: user.sub, aud: client.clientId,
          expiresIn: ttl.id }),
      } : {}),
    };
  }

  provider.registerGrantType(TOKEN_EXCHANGE, handler, PARAMS);
}
