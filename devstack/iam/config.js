// Users and clients of the dev IAM, read from JSON files and checked at start-up.
import { readFileSync } from 'node:fs';

function readJson(path, what) {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    process.stderr.write(`dev IAM: cannot read ${what} from ${path}: ${err.message}\n`);
    process.exit(2);
  }
}

export function loadUsers(path) {
  const list = readJson(path, 'users');
  const byName = new Map();
  const bySub = new Map();
  for (const u of list) {
    if (!u.username || !u.password || !u.sub) {
      process.stderr.write(`dev IAM: every user in ${path} needs username, password and sub\n`);
      process.exit(2);
    }
    const user = {
      username: u.username,
      password: u.password,
      sub: u.sub,
      claims: {
        sub: u.sub,
        preferred_username: u.username,
        name: u.name || u.username,
        email: u.email,
        email_verified: true,
        groups: u.groups || [],
      },
    };
    byName.set(u.username, user);
    bySub.set(u.sub, user);
  }
  return { byName, bySub };
}

export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';

export function loadClients(path) {
  return readJson(path, 'clients').map((c) => ({
    client_id: c.client_id,
    ...(c.client_secret ? { client_secret: c.client_secret } : {}),
    redirect_uris: c.redirect_uris || [],
    response_types: c.redirect_uris?.length ? ['code'] : [],
    grant_types: c.grant_types || ['authorization_code', 'refresh_token', TOKEN_EXCHANGE],
    token_endpoint_auth_method: c.client_secret
      ? (c.token_endpoint_auth_method || 'client_secret_basic')
      : 'none',
  }));
}
