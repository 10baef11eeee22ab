// RFC 8693 token exchange with INDIGO IAM's request and response shape.
//
// POST /token, grant_type urn:ietf:params:oauth:grant-type:token-exchange, client authenticated (Basic or body);
// subject_token required (a valid, unexpired access token of this provider), subject_token_type optional,
// audience optional and space separated (becomes `aud`), scope optional (defaults to the subject token's and must
// not exceed it), actor_token refused ("Delegation not supported"). `sub` and `iss` are kept.
import { randomUUID } from 'node:crypto';

import { jwtVerify, SignJWT } from 'jose';
import { errors } from 'oidc-provider';

import { TOKEN_EXCHANGE } from './config.js';

const PARAMS = ['subject_token', 'subject_token_type', 'audience', 'scope', 'actor_token', 'actor_token_type',
  'requested_token_type', 'resource'];

function invalidGrant(description) {
  const err = new errors.InvalidGrant(description);
  err.error_description = description;
  return err;
}

export function registerTokenExchange(provider, { keys, ttl, defaultAudience, users }) {
  async function verifySubject(token) {
    try {
      const { payload } = await jwtVerify(token, keys.publicKey, {
        issuer: provider.issuer,
        algorithms: ['RS256'],
        typ: 'at+jwt',
      });
      return payload;
    } catch (err) {
      throw invalidGrant(`subject_token is invalid: ${err.code === 'ERR_JWT_EXPIRED'
        ? 'it has expired' : 'it was not issued by this provider or is malformed'}`);
    }
  }

  async function handler(ctx) {
    const { params, client } = ctx.oidc;
    if (params.actor_token) throw new errors.InvalidRequest('Delegation not supported');
    if (!params.subject_token) throw new errors.InvalidRequest('missing required parameter \'subject_token\'');
    const subject = await verifySubject(params.subject_token);
    if (!users.bySub.has(subject.sub)) throw invalidGrant('subject_token names an unknown user');
    const granted = new Set(String(subject.scope || '').split(' ').filter(Boolean));
    const requested = params.scope ? params.scope.split(' ').filter(Boolean) : [...granted];
    const excess = requested.filter((s) => !granted.has(s));
    if (excess.length) throw new errors.InvalidScope(`scope exceeds the subject token's: ${excess.join(' ')}`, excess.join(' '));
    const audiences = params.audience ? params.audience.split(' ').filter(Boolean) : [defaultAudience];
    const user = users.bySub.get(subject.sub);
    const scope = requested.join(' ');
    const accessToken = await new SignJWT({
      scope,
      client_id: client.clientId,
      groups: user.claims.groups,
      preferred_username: user.claims.preferred_username,
    })
      .setProtectedHeader({ alg: 'RS256', kid: keys.kid, typ: 'at+jwt' })
      .setIssuer(provider.issuer)
      .setSubject(subject.sub)
      .setAudience(audiences.length === 1 ? audiences[0] : audiences)
      .setIssuedAt()
      .setNotBefore('0s')
      .setExpirationTime(`${ttl.access}s`)
      .setJti(randomUUID())
      .sign(keys.privateKey);
    ctx.body = {
      access_token: accessToken,
      token_type: 'Bearer',
      expires_in: ttl.access,
      scope,
      issued_token_type: 'urn:ietf:params:oauth:token-type:jwt',
    };
  }

  provider.registerGrantType(TOKEN_EXCHANGE, handler, PARAMS);
}
