// The signing key (RS256) and cookie keys, created once and kept (mode 0600) in the state directory, so that
// tokens signed before a restart still verify after it.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { exportJWK, generateKeyPair, importJWK } from 'jose';

function writePrivate(path, text) {
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, text, { mode: 0o600 });
  renameSync(tmp, path);
}

async function create(path) {
  const { privateKey } = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
  const stored = {
    privateJwk: { ...(await exportJWK(privateKey)), kid: randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' },
    cookieKeys: [randomBytes(32).toString('base64url')],
  };
  writePrivate(path, JSON.stringify(stored));
  return stored;
}

export async function loadOrCreateKeys(stateDir) {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const path = join(stateDir, 'keys.json');
  const stored = existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')) : await create(path);
  const { d, p, q, dp, dq, qi, ...publicJwk } = stored.privateJwk;
  return {
    privateJwk: stored.privateJwk,
    publicJwk,
    kid: stored.privateJwk.kid,
    cookieKeys: stored.cookieKeys,
    privateKey: await importJWK(stored.privateJwk, 'RS256'),
    publicKey: await importJWK(publicJwk, 'RS256'),
  };
}
