// A real OpenID provider for the SSO tests: oidc-provider with its development login form.
// Usage: node oidc_provider.mjs PORT REDIRECT_URI  (NODE_PATH: the folder holding node_modules/oidc-provider)
// Whatever login name is typed becomes the account; its email is the name itself when it has an @,
// else <name>@example.org. Names starting "nogroup" get no groups; others are in "developers".
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.env.OIDC_PROVIDER_DIR, "package.json"));
const { default: Provider } = await import(require.resolve("oidc-provider"));

const [port, redirectUri] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [{
    client_id: "devyard",
    client_secret: "devyard-test-secret",
    redirect_uris: [redirectUri],
    grant_types: ["authorization_code"],
    response_types: ["code"],
  }],
  claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["preferred_username", "name"], groups: ["groups"] },
  scopes: ["openid", "email", "profile", "groups"],
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ["devyard-test-cookie-key"] },
  async findAccount(ctx, id) {
    const email = id.includes("@") ? id : `${id}@example.org`;
    return {
      accountId: id,
      async claims() {
        return { sub: id, email, email_verified: true, preferred_username: id.split("@")[0], name: id,
                 groups: id.startsWith("nogroup") ? [] : ["developers"] };
      },
    };
  },
});
provider.proxy = false;
provider.listen(Number(port), "127.0.0.1", () => console.log("ready"));
