// SCIM 2.0 API shaped like INDIGO IAM's (/scim/Users, /scim/Groups), for the account sync (dlaas-rucio-sync) and
// for tests that change who belongs to a group while everything runs, as IAM administrators do.
//
// Authorisation as in IAM: a bearer access token of this IAM carrying scope `scim:read` (reads) or `scim:write`
// (changes); such tokens come from the client_credentials grant of a client registered for those scopes. No token:
// 401 `unauthorized`; a bad one: 401 `invalid_token`; a token without the scope (a user's login token, say): 403
// {"error": "insufficient_scope", "error_description": "Insufficient scope for this resource", "scope": ...}.
//
// As in IAM:
// - a user's `id` is its `sub`; users are listed by userName; `groups` of a user name its direct groups;
// - groups are named by their full path (`escape/users`, display name), parents included; IAM leaves `members` out of
//   group resources and pages them at /scim/Groups/{id}/members ({display, value, $ref}, ordered by userName);
// - paging: `startIndex` (1-based, default 1) and `count` (default and maximum 100); answers are ListResponses with
//   totalResults, itemsPerPage, startIndex and Resources;
// - /scim/Users takes `filter` on userName, givenName, familyName, emails, active with `eq` or `co` (IAM has no
//   group filter: a group's members are read from the group);
// - errors have the SCIM error shape {"status": "404", "detail": ..., "schemas": [...Error]};
// - POST /scim/Users creates a user (userName and emails required, both unique; `password` optional), PATCH
//   /scim/Groups/{id} adds or removes `members` (IAM's `operations`, or SCIM's `Operations`), POST /scim/Groups
//   creates a group.
// Changes live in memory: a restart of the dev IAM starts again from users.json. Tokens and passwords never reach
// an answer or the log.
import { createHash, randomUUID } from 'node:crypto';

import { SCIM_READ, SCIM_WRITE } from './profile.js';
import { TokenError } from './token_store.js';

const LIST = 'urn:ietf:params:scim:api:messages:2.0:ListResponse';
const ERROR = 'urn:ietf:params:scim:api:messages:2.0:Error';
const USER_SCHEMAS = ['urn:ietf:params:scim:schemas:core:2.0:User', 'urn:indigo-dc:scim:schemas:IndigoUser'];
const GROUP_SCHEMAS = ['urn:ietf:params:scim:schemas:core:2.0:Group', 'urn:indigo-dc:scim:schemas:IndigoGroup'];
const INDIGO_GROUP = 'urn:indigo-dc:scim:schemas:IndigoGroup';
const CONTENT_TYPE = 'application/scim+json;charset=UTF-8';
const MAX_PAGE = 100;
const MAX_BODY = 64 * 1024;
const FILTER = /^\s*(\w+)\s+(eq|co)\s+(?:"([^"]*)"|(\S+))\s*$/i;

class ScimError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

// A stable id for a group name (IAM keeps a UUID per group; here it follows from the name).
function groupId(name) {
  const h = createHash('sha1').update(`dev-iam-group:${name}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

function ancestors(name) {
  const parts = name.split('/');
  return parts.map((_, i) => parts.slice(0, i + 1).join('/'));
}

function splitName(full) {
  const [given, ...family] = String(full || '').trim().split(/\s+/);
  return { givenName: given || '', familyName: family.join(' '), formatted: String(full || '').trim() };
}

function send(res, status, body, headers = {}) {
  res.writeHead(status, { 'Content-Type': CONTENT_TYPE, 'Cache-Control': 'no-store', ...headers });
  res.end(body === undefined ? '' : JSON.stringify(body));
}

function sendError(res, status, detail) {
  send(res, status, { status: String(status), detail, schemas: [ERROR] });
}

async function readJson(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_BODY) throw new ScimError(413, 'request too large');
    chunks.push(chunk);
  }
  try {
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    if (body && typeof body === 'object' && !Array.isArray(body)) return body;
  } catch {
    // answered below
  }
  throw new ScimError(400, 'the request body is not a JSON object');
}

function pageParams(query) {
  const parse = (name, fallback) => {
    const raw = query.get(name);
    if (raw === null || raw === '') return fallback;
    if (!/^-?\d+$/.test(raw)) throw new ScimError(400, `${name} must be an integer`);
    return Number(raw);
  };
  const count = Math.min(Math.max(parse('count', MAX_PAGE), 0), MAX_PAGE);
  const startIndex = Math.max(parse('startIndex', 1), 1);
  return { count, startIndex };
}

function listResponse(all, { count, startIndex }) {
  const resources = all.slice(startIndex - 1, startIndex - 1 + count);
  return {
    totalResults: all.length,
    itemsPerPage: resources.length,
    startIndex,
    schemas: [LIST],
    Resources: resources,
  };
}

// Users, groups and memberships as SCIM resources, over the dev IAM's user records (shared with login and tokens:
// a membership changed here shows in the next token's groups).
export class Directory {
  constructor(users, issuer) {
    this.users = users;
    this.base = issuer.replace(/\/$/, '');
    this.started = new Date().toISOString();
    this.meta = new Map(); // sub or group name -> { created, lastModified }
    this.groups = new Map(); // name -> { id, name }
    for (const user of users.bySub.values()) {
      for (const g of user.groups) this.ensureGroup(g);
    }
  }

  ensureGroup(name) {
    for (const g of ancestors(name)) {
      if (!this.groups.has(g)) this.groups.set(g, { id: groupId(g), name: g });
    }
    return this.groups.get(name);
  }

  groupById(id) {
    return [...this.groups.values()].find((g) => g.id === id);
  }

  touch(key) {
    const now = new Date().toISOString();
    this.meta.set(key, { created: this.meta.get(key)?.created || now, lastModified: now });
  }

  metaOf(key, location, resourceType) {
    const { created, lastModified } = this.meta.get(key) || { created: this.started, lastModified: this.started };
    return { created, lastModified, location, resourceType };
  }

  sortedUsers() {
    return [...this.users.bySub.values()].sort((a, b) => a.username.localeCompare(b.username));
  }

  ref(kind, id) {
    return `${this.base}/scim/${kind}/${id}`;
  }

  userResource(user) {
    return {
      id: user.sub,
      meta: this.metaOf(user.sub, this.ref('Users', user.sub), 'User'),
      schemas: USER_SCHEMAS,
      userName: user.username,
      name: splitName(user.name),
      displayName: user.username,
      active: user.active !== false,
      emails: user.email ? [{ type: 'work', value: user.email, primary: true }] : [],
      groups: user.groups.map((name) => {
        const g = this.ensureGroup(name);
        return { display: g.name, value: g.id, $ref: this.ref('Groups', g.id) };
      }),
      [USER_SCHEMAS[1]]: {},
    };
  }

  groupResource(group) {
    const parentName = group.name.includes('/') ? group.name.slice(0, group.name.lastIndexOf('/')) : null;
    const parent = parentName ? this.groups.get(parentName) : null;
    return {
      id: group.id,
      meta: this.metaOf(group.name, this.ref('Groups', group.id), 'Group'),
      schemas: GROUP_SCHEMAS,
      displayName: group.name,
      [INDIGO_GROUP]: parent
        ? { parentGroup: { display: parent.name, value: parent.id, $ref: this.ref('Groups', parent.id) } }
        : {},
    };
  }

  members(group) {
    return this.sortedUsers()
      .filter((u) => u.groups.includes(group.name))
      .map((u) => ({ display: u.name || u.username, value: u.sub, $ref: this.ref('Users', u.sub) }));
  }

  userById(id) {
    const user = this.users.bySub.get(id);
    if (!user) throw new ScimError(404, `No user mapped to id '${id}'`);
    return user;
  }

  filterUsers(filter) {
    const users = this.sortedUsers();
    if (filter === null || filter.trim() === '') return users;
    const m = filter.match(FILTER);
    if (!m) throw new ScimError(400, `Unsupported filter: ${filter}`);
    const attribute = m[1].toLowerCase();
    const op = m[2].toLowerCase();
    const wanted = (m[3] ?? m[4]).toLowerCase();
    const values = {
      username: (u) => [u.username],
      givenname: (u) => [splitName(u.name).givenName],
      familyname: (u) => [splitName(u.name).familyName],
      emails: (u) => (u.email ? [u.email] : []),
      active: (u) => [String(u.active !== false)],
    }[attribute];
    if (!values) throw new ScimError(400, `Unsupported filter attribute: ${m[1]}`);
    const match = op === 'eq' ? (v) => v.toLowerCase() === wanted : (v) => v.toLowerCase().includes(wanted);
    return users.filter((u) => values(u).some(match));
  }

  createUser(body) {
    const userName = typeof body.userName === 'string' ? body.userName.trim() : '';
    if (!userName) throw new ScimError(400, 'userName is required');
    const emails = Array.isArray(body.emails) ? body.emails.filter((e) => e && typeof e.value === 'string') : [];
    const email = (emails.find((e) => e.primary) || emails[0])?.value;
    if (!email) throw new ScimError(400, 'an email is required');
    if (this.users.byName.has(userName)) throw new ScimError(409, `userName is already taken: ${userName}`);
    if ([...this.users.bySub.values()].some((u) => u.email === email)) {
      throw new ScimError(409, `email already taken by another user: ${email}`);
    }
    const name = body.name && typeof body.name === 'object'
      ? (body.name.formatted || [body.name.givenName, body.name.familyName].filter(Boolean).join(' '))
      : '';
    const user = {
      username: userName,
      // No password: nobody can log in with the form (as an IAM user who only signs in through another IdP).
      password: typeof body.password === 'string' && body.password ? body.password : randomUUID() + randomUUID(),
      sub: randomUUID(),
      name: name || userName,
      email,
      groups: [],
      active: body.active !== false,
    };
    this.users.byName.set(user.username, user);
    this.users.bySub.set(user.sub, user);
    this.touch(user.sub);
    return user;
  }

  createGroup(body) {
    const name = typeof body.displayName === 'string' ? body.displayName.trim() : '';
    if (!name || name.split('/').some((p) => !p)) throw new ScimError(400, 'displayName is required');
    if (this.groups.has(name)) throw new ScimError(409, `Group '${name}' already exists`);
    const group = this.ensureGroup(name);
    this.touch(name);
    return group;
  }

  patchGroup(group, body) {
    const ops = body.operations || body.Operations;
    if (!Array.isArray(ops) || !ops.length) throw new ScimError(400, 'operations are required');
    const changes = ops.map((op) => {
      const kind = String(op?.op || '').toLowerCase();
      if (!['add', 'remove'].includes(kind)) throw new ScimError(400, `Unsupported patch operation: ${op?.op}`);
      if (op.path !== 'members') throw new ScimError(400, `Unsupported patch path: ${op.path}`);
      if (!Array.isArray(op.value)) throw new ScimError(400, 'value must be a list of members');
      return { kind, users: op.value.map((v) => this.userById(v?.value)) };
    });
    // Every member was found: apply all operations, or (above) none.
    for (const { kind, users } of changes) {
      for (const user of users) {
        const has = user.groups.includes(group.name);
        if (kind === 'add' && !has) user.groups = [...user.groups, group.name];
        if (kind === 'remove' && has) user.groups = user.groups.filter((g) => g !== group.name);
        this.touch(user.sub);
      }
    }
    this.touch(group.name);
  }
}

async function authorise(req, res, store, scope) {
  const header = req.headers.authorization || '';
  if (!header.startsWith('Bearer ')) {
    send(res, 401, { error: 'unauthorized', error_description: 'Full authentication is required to access this resource' },
      { 'WWW-Authenticate': 'Bearer realm="dev IAM"' });
    return false;
  }
  let verified;
  try {
    verified = await store.verify(header.slice(7).trim());
  } catch (err) {
    if (!(err instanceof TokenError)) throw err;
    send(res, 401, { error: 'invalid_token', error_description: 'invalid, expired or revoked access token' },
      { 'WWW-Authenticate': 'Bearer error="invalid_token"' });
    return false;
  }
  if (!verified.scopes.includes(scope)) {
    send(res, 403, { error: 'insufficient_scope', error_description: 'Insufficient scope for this resource', scope },
      { 'WWW-Authenticate': `Bearer error="insufficient_scope", scope="${scope}"` });
    return false;
  }
  return true;
}

// [method, path pattern, scope, handler(directory, match, query, req) -> [status, body, headers?]]
const ROUTES = [
  ['GET', /^\/scim\/Users$/, SCIM_READ, (d, m, q) => [200,
    listResponse(d.filterUsers(q.get('filter')).map((u) => d.userResource(u)), pageParams(q))]],
  ['POST', /^\/scim\/Users$/, SCIM_WRITE, async (d, m, q, req) => {
    const user = d.createUser(await readJson(req));
    return [201, d.userResource(user), { Location: d.ref('Users', user.sub) }];
  }],
  ['GET', /^\/scim\/Users\/([^/]+)$/, SCIM_READ, (d, m) => [200, d.userResource(d.userById(m[1]))]],
  ['GET', /^\/scim\/Groups$/, SCIM_READ, (d, m, q) => [200,
    listResponse([...d.groups.values()].sort((a, b) => a.name.localeCompare(b.name)).map((g) => d.groupResource(g)),
      pageParams(q))]],
  ['POST', /^\/scim\/Groups$/, SCIM_WRITE, async (d, m, q, req) => {
    const group = d.createGroup(await readJson(req));
    return [201, d.groupResource(group), { Location: d.ref('Groups', group.id) }];
  }],
  ['GET', /^\/scim\/Groups\/([^/]+)$/, SCIM_READ, (d, m) => [200, d.groupResource(groupOf(d, m[1]))]],
  ['GET', /^\/scim\/Groups\/([^/]+)\/members$/, SCIM_READ, (d, m, q) => [200,
    listResponse(d.members(groupOf(d, m[1])), pageParams(q))]],
  ['PATCH', /^\/scim\/Groups\/([^/]+)$/, SCIM_WRITE, async (d, m, q, req) => {
    d.patchGroup(groupOf(d, m[1]), await readJson(req));
    return [204, undefined];
  }],
];

function groupOf(directory, id) {
  const group = directory.groupById(id);
  if (!group) throw new ScimError(404, `No group mapped to id '${id}'`);
  return group;
}

export function isScimPath(path) {
  return path === '/scim' || path.startsWith('/scim/');
}

export async function scim(req, res, { store, directory }) {
  const [path, rawQuery = ''] = req.url.split('?', 2);
  const candidates = ROUTES.filter(([, pattern]) => pattern.test(path));
  const route = candidates.find(([method]) => method === req.method);
  if (!route) {
    if (candidates.length) return sendError(res, 405, `Request method '${req.method}' not supported`);
    return sendError(res, 404, `No SCIM resource at ${path}`);
  }
  const [, pattern, scope, handler] = route;
  if (!(await authorise(req, res, store, scope))) return undefined;
  try {
    const [status, body, headers] = await handler(directory, path.match(pattern), new URLSearchParams(rawQuery), req);
    return send(res, status, body, headers);
  } catch (err) {
    if (!(err instanceof ScimError)) throw err;
    return sendError(res, err.status, err.message);
  }
}
