// A real OpenID provider for the SSO tests: oidc-provider with its development login form.
// Usage: node oidc_provider.mjs PORT REDIRECT_URI  (NODE_PATH: the folder holding node_modules/oidc-provider)
// Whatever login name is typed becomes the account; its email is the name itself when it has an @,
// else <name>@example.org. Names starting "nogroup" get no groups; others are in "developers", unless the JSON
// file named by OIDC_GROUPS_FILE (read at every sign-in) lists the account's groups. The groups are sent in
// both the `groups` and the `roles` claim.
import { createRequire } from "node:module";
import fs from "node:fs";
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
  claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["preferred_username", "name"], groups: ["groups", "roles"] },
  scopes: ["openid", "email", "profile", "groups"],
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ["devyard-test-cookie-key"] },
  async findAccount(ctx, id) {
    const email = id.includes("@") ? id : `${id}@example.org`;
    return {
      accountId: id,
      async claims() {
        const listed = process.env.OIDC_GROUPS_FILE ? JSON.parse(fs.readFileSync(process.env.OIDC_GROUPS_FILE, "utf8")) : {};
        const groups = listed[id] ?? (id.startsWith("nogroup") ? [] : ["developers"]);
        return { sub: id, email, email_verified: true, preferred_username: id.split("@")[0], name: id, groups, roles: groups };
      },
    };
  },
});
provider.proxy = false;
provider.listen(Number(port), "127.0.0.1", () => console.log("ready"));
