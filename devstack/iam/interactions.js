// The login form (checked against users.json) and automatic consent for the configured clients.
import { timingSafeEqual } from 'node:crypto';

const MAX_BODY = 16 * 1024;

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function loginPage(uid, clientId, error, username = '') {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ESCAPE IAM (dev) - sign in</title>
<style>body{font-family:sans-serif;max-width:24rem;margin:4rem auto}label,input,button{display:block;width:100%;margin:.4rem 0}
.error{color:#b00020}</style></head>
<body><h1>ESCAPE IAM <small>(dev)</small></h1>
<p>Sign in to continue to <b>${escapeHtml(clientId)}</b>.</p>
${error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login" autocomplete="off">
<label for="username">Username</label><input id="username" name="username" value="${escapeHtml(username)}" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" required>
<button type="submit">Sign in</button>
</form></body></html>`;
}

async function readForm(req) {
  let size = 0;
  const chunks = [];
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_BODY) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function samePassword(given, expected) {
  const a = Buffer.from(given, 'utf8');
  const b = Buffer.from(expected, 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}

async function grantConsent(provider, interaction) {
  const { prompt: { details }, params, session: { accountId } } = interaction;
  const grant = interaction.grantId
    ? await provider.Grant.find(interaction.grantId)
    : new provider.Grant({ accountId, clientId: params.client_id });
  if (details.missingOIDCScope) grant.addOIDCScope(details.missingOIDCScope.join(' '));
  if (details.missingOIDCClaims) grant.addOIDCClaims(details.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(details.missingResourceScopes || {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  return { consent: { grantId: await grant.save() } };
}

export function mountInteractions(provider, users) {
  provider.use(async (ctx, next) => {
    const match = ctx.path.match(/^\/interaction\/([\w-]+)(\/login)?$/);
    if (!match) return next();
    ctx.set('Cache-Control', 'no-store');
    let interaction;
    try {
      interaction = await provider.interactionDetails(ctx.req, ctx.res);
    } catch {
      ctx.status = 400;
      ctx.type = 'html';
      ctx.body = '<!doctype html><title>Dev IAM</title><p>This sign-in attempt expired or is unknown: start again '
        + 'from the application.</p>';
      return undefined;
    }
    const { uid, prompt, params } = interaction;
    if (!match[2] && ctx.method === 'GET') {
      if (prompt.name === 'consent') {
        ctx.respond = false;
        return provider.interactionFinished(ctx.req, ctx.res, await grantConsent(provider, interaction),
          { mergeWithLastSubmission: true });
      }
      ctx.type = 'html';
      ctx.body = loginPage(uid, params.client_id);
      return undefined;
    }
    if (match[2] && ctx.method === 'POST' && prompt.name === 'login') {
      let form;
      try {
        form = await readForm(ctx.req);
      } catch {
        ctx.status = 413;
        return undefined;
      }
      const username = form.get('username') || '';
      const user = users.byName.get(username);
      if (!user || !samePassword(form.get('password') || '', user.password)) {
        ctx.status = 401;
        ctx.type = 'html';
        ctx.body = loginPage(uid, params.client_id, 'Wrong username or password.', username);
        return undefined;
      }
      ctx.respond = false;
      return provider.interactionFinished(ctx.req, ctx.res, { login: { accountId: user.sub } },
        { mergeWithLastSubmission: false });
    }
    ctx.status = 405;
    return undefined;
  });
}
