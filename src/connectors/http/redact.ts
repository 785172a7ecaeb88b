/**
 * Keeps credentials out of errors and logs. A partner may echo what we sent (an Authorization
 * header, a form body, a JSON dump of the request) in an error body, so every text taken from an
 * answer, and every message we build, is passed through {@link redact} with all the forms a
 * credential can take on the wire.
 */

export const REDACTED = '***';

/** Replaces every occurrence of each secret in `text` by `***` (longest secrets first). */
export function redact(text: string, secrets: Iterable<string>): string {
  const ordered = [...new Set(secrets)].filter((secret) => secret.length > 0);
  ordered.sort((a, b) => b.length - a.length);
  let out = text;
  for (const secret of ordered) {
    if (out.includes(secret)) out = out.split(secret).join(REDACTED);
  }
  return out;
}

/**
 * The spellings of a secret value worth hiding: as is, percent-encoded (URL and form), escaped
 * inside a JSON string, and base64 / base64url.
 */
export function secretForms(value: string): string[] {
  if (!value) return [];
  const forms = [
    value,
    encodeURIComponent(value),
    new URLSearchParams({ v: value }).toString().slice(2),
    JSON.stringify(value).slice(1, -1),
    Buffer.from(value, 'utf8').toString('base64'),
    Buffer.from(value, 'utf8').toString('base64url'),
  ];
  return [...new Set(forms)].filter((form) => form.length > 0);
}

/** `Basic` credentials (RFC 7617): base64 of `user:password`, and the pair itself. */
export function basicAuthForms(user: string, password: string): string[] {
  const pair = `${user}:${password}`;
  return [...secretForms(pair), `Basic ${Buffer.from(pair, 'utf8').toString('base64')}`];
}
