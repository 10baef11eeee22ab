// Token and userinfo claims as INDIGO IAM shapes them under its `iam` and `wlcg` JWT profiles.
//
// iam:  groups (names without a leading `/`) in userinfo, ID token and access token; `scope` in access tokens
//       unless the instance leaves it out (IAM's default does); no `aud` unless one was asked for.
// wlcg: `wlcg.ver` "1.0" on access and ID tokens; never `groups`; `wlcg.groups` (`/escape/users`, sorted) in the
//       access token and ID token only when the `wlcg.groups` scope was granted, and in userinfo only when the
//       access token presented carries it; access tokens always carry `scope`, `nbf`, and an `aud`
//       (https://wlcg.cern.ch/jwt/v1/any when none was asked for).

export const PROFILES = ['iam', 'wlcg'];
export const WLCG_VER = '1.0';
export const WLCG_ANY_AUDIENCE = 'https://wlcg.cern.ch/jwt/v1/any';
export const WLCG_GROUPS = 'wlcg.groups';
export const BASE_SCOPES = ['openid', 'profile', 'email', 'offline_access'];
// IAM's SCIM API scopes (scim.js): only for clients an administrator registered for them, as in IAM.
export const SCIM_READ = 'scim:read';
export const SCIM_WRITE = 'scim:write';
export const SCOPES = [...BASE_SCOPES, WLCG_GROUPS, SCIM_READ, SCIM_WRITE];

function wlcgGroupNames(user) {
  return [...user.groups].sort().map((g) => `/${g}`);
}

export function makeProfile(name, { scopeClaim }) {
  const wlcg = name === 'wlcg';

  // Standard claims by scope (the `claims` setting of oidc-provider, and userinfo).
  const scopeClaims = {
    openid: wlcg ? ['sub', 'wlcg.ver'] : ['sub'],
    profile: wlcg ? ['name', 'preferred_username'] : ['name', 'preferred_username', 'groups'],
    email: ['email', 'email_verified'],
    ...(wlcg ? { [WLCG_GROUPS]: [WLCG_GROUPS] } : {}),
  };

  // Every claim the user can have; oidc-provider keeps those of the granted scopes in the ID token.
  function userClaims(user) {
    const claims = {
      sub: user.sub,
      name: user.name,
      preferred_username: user.username,
      email: user.email,
      email_verified: true,
    };
    if (!wlcg) return { ...claims, groups: user.groups };
    const groups = wlcgGroupNames(user);
    return { ...claims, 'wlcg.ver': WLCG_VER, ...(groups.length ? { [WLCG_GROUPS]: groups } : {}) };
  }

  // Claims an access token carries beyond iss/sub/aud/iat/exp/jti/client_id.
  function accessTokenClaims(user, scopes, issuedAt) {
    const scope = scopes.join(' ');
    if (!wlcg) {
      return {
        ...(scopeClaim && scope ? { scope } : {}),
        groups: user.groups,
        preferred_username: user.username,
      };
    }
    const groups = scopes.includes(WLCG_GROUPS) ? wlcgGroupNames(user) : [];
    return {
      ...(scope ? { scope } : {}),
      'wlcg.ver': WLCG_VER,
      nbf: issuedAt,
      ...(groups.length ? { [WLCG_GROUPS]: groups } : {}),
    };
  }

  // Claims of an access token issued to a client for itself (client_credentials: no user), beyond
  // iss/sub/aud/iat/exp/jti/client_id: `scope` as the profile puts it into user tokens.
  function clientTokenClaims(scopes, issuedAt) {
    const scope = scopes.join(' ');
    if (!wlcg) return scopeClaim && scope ? { scope } : {};
    return { ...(scope ? { scope } : {}), 'wlcg.ver': WLCG_VER, nbf: issuedAt };
  }

  // ID token claims for the granted scopes (used where the dev IAM signs ID tokens itself: token exchange).
  function idTokenClaims(user, scopes) {
    const all = userClaims(user);
    const claims = {};
    for (const scope of scopes) {
      for (const claim of scopeClaims[scope] || []) {
        if (all[claim] !== undefined) claims[claim] = all[claim];
      }
    }
    return claims;
  }

  // userinfo for an access token with `scopes`: under wlcg, groups come from the token itself, as in IAM.
  function userinfoClaims(user, scopes, tokenPayload) {
    const claims = idTokenClaims(user, scopes.filter((s) => s !== WLCG_GROUPS));
    delete claims['wlcg.ver'];
    if (wlcg && Array.isArray(tokenPayload[WLCG_GROUPS])) claims[WLCG_GROUPS] = tokenPayload[WLCG_GROUPS];
    return claims;
  }

  return {
    name,
    wlcg,
    scopeClaims,
    defaultAudience: wlcg ? WLCG_ANY_AUDIENCE : undefined,
    userClaims,
    accessTokenClaims,
    clientTokenClaims,
    idTokenClaims,
    userinfoClaims,
  };
}
