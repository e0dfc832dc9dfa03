// graphql-http's server audit (serverAudits) against a served app: node graphql-http-audit.mjs URL KEY
// Prints one JSON line per audit: {"id", "name", "status": "ok"|"warn"|"error", "reason"}.
// The key is added to every request: without it the app answers each audit 401.
import { serverAudits } from "graphql-http";

const [url, key] = process.argv.slice(2);
const fetchFn = (input, init = {}) =>
  fetch(input, { ...init, headers: { ...(init.headers || {}), authorization: `Bearer ${key}` } });

for (const audit of serverAudits({ url, fetchFn })) {
  const result = await audit.fn();
  console.log(JSON.stringify({ id: audit.id, name: audit.name, status: result.status, reason: result.reason ?? null }));
}
