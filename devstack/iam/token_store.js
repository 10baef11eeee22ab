// What INDIGO IAM keeps of the access tokens it issued (it stores them in its database): per `jti` the client, the
// granted scope and the expiry, plus the revoked ones. Only this metadata is kept, in memory, never the tokens.
//
// `verify()` is the one check every endpoint that receives an access token makes: our signature, our issuer,
// `typ` at+jwt, not expired, not revoked. Its scope comes from the record (tokens may carry no `scope` claim);
// tokens signed before a restart have no record and fall back to their own `scope` claim, if any.
import { jwtVerify } from 'jose';

const PRUNE_EVERY_MS = 60 * 1000;

export class TokenError extends Error {
  constructor(reason) {
    super(reason);
    this.reason = reason;
  }
}

export class TokenStore {
  constructor({ issuer, publicKey }) {
    this.issuer = issuer;
    this.publicKey = publicKey;
    this.records = new Map();
    this.revoked = new Map();
    setInterval(() => this.prune(), PRUNE_EVERY_MS).unref();
  }

  remember(jti, { clientId, scope, exp }) {
    this.records.set(jti, { clientId, scope, exp });
  }

  revoke(jti, exp) {
    this.revoked.set(jti, exp);
  }

  prune(now = Math.floor(Date.now() / 1000)) {
    for (const map of [this.records, this.revoked]) {
      for (const [jti, value] of map) {
        if ((typeof value === 'number' ? value : value.exp) < now) map.delete(jti);
      }
    }
  }

  // -> { payload, scopes, clientId }; throws TokenError('expired' | 'revoked' | 'invalid').
  async verify(token) {
    let payload;
    try {
      ({ payload } = await jwtVerify(String(token || ''), this.publicKey, {
        issuer: this.issuer,
        algorithms: ['RS256'],
        typ: 'at+jwt',
      }));
    } catch (err) {
      throw new TokenError(err.code === 'ERR_JWT_EXPIRED' ? 'expired' : 'invalid');
    }
    if (!payload.jti) throw new TokenError('invalid');
    if (this.revoked.has(payload.jti)) throw new TokenError('revoked');
    const record = this.records.get(payload.jti);
    const scope = record ? record.scope : payload.scope;
    return {
      payload,
      scopes: String(scope || '').split(' ').filter(Boolean),
      clientId: record ? record.clientId : payload.client_id,
    };
  }
}
