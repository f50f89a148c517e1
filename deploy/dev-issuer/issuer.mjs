// A local OpenID Connect issuer for trying palisade in production mode on one machine
// (docs/adopting.md, "Try production mode locally"). node-oidc-provider, a certified OpenID
// provider, issuing RS256 JWT access tokens by the client credentials grant: discovery at
// /.well-known/openid-configuration, keys at /jwks, tokens at /token. Its keys live in memory
// and change on every start; the client secrets below are public. Never for production.
import Provider from 'oidc-provider';

const port = Number(process.env.PORT ?? 9400);
const audience = process.env.AUDIENCE ?? 'urn:palisade:api';
const issuer = `http://127.0.0.1:${port}`;
const scopes = ['todos:read', 'todos:write', 'tenant:admin', 'platform:admin'];

// Two machine clients: an operator who may create tenants, and a CI job bound to tenant `acme`
// (its tokens carry `tenant_id: acme`, the claim palisade reads by default).
const clients = [
  { client_id: 'operator', client_secret: 'operator-dev-secret', scope: 'platform:admin' },
  { client_id: 'acme-ci', client_secret: 'acme-dev-secret', scope: 'todos:read todos:write tenant:admin', tenant_id: 'acme' },
].map((client) => ({ ...client, grant_types: ['client_credentials'], redirect_uris: [], response_types: [] }));

const provider = new Provider(issuer, {
  clients,
  scopes,
  extraClientMetadata: { properties: ['tenant_id'] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => audience,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource, client) => ({
        audience,
        scope: client.scope,
        accessTokenFormat: 'jwt',
        accessTokenTTL: 600,
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  extraTokenClaims: (ctx, token) => {
    const tenant = ctx.oidc.client?.tenant_id;
    return tenant ? { tenant_id: tenant } : undefined;
  },
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`dev issuer: ${issuer} (audience ${audience}); not for production`);
});
