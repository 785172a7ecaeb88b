/**
 * The cookies of the browser `dmp platforms test-sync` plays: kept per domain as a browser keeps
 * them (host-only, or a `Domain` and its subdomains; `Path`; `Max-Age`/`Expires`; `Secure` sent
 * over https only, and over http to a loopback host as browsers do), and read from or written to
 * a curl cookie file (Netscape format, `curl -c jar` / `-b jar`).
 */

export interface StoredCookie {
  readonly name: string;
  readonly value: string;
  /** Lower case, without a leading dot. */
  readonly domain: string;
  /** Sent to subdomains of `domain` too (a `Domain` attribute was given). */
  readonly includeSubdomains: boolean;
  readonly path: string;
  readonly secure: boolean;
  readonly httpOnly: boolean;
  /** Epoch seconds; 0 for a session cookie. */
  readonly expires: number;
}

/** What one `Set-Cookie` did to the jar. */
export interface CookieChange {
  readonly name: string;
  readonly value: string;
  readonly domain: string;
  /** `deleted` when the answer expired the cookie; `refused` when its Domain is not the host's. */
  readonly action: 'set' | 'deleted' | 'refused';
  /** The attributes as sent (`Path=/; Max-Age=...; Secure; HttpOnly; SameSite=None`). */
  readonly attributes: string;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

function domainMatches(host: string, cookie: StoredCookie): boolean {
  if (host === cookie.domain) return true;
  return cookie.includeSubdomains && host.endsWith(`.${cookie.domain}`);
}

function pathMatches(requestPath: string, cookiePath: string): boolean {
  if (requestPath === cookiePath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || requestPath[cookiePath.length] === '/';
}

export class CookieJar {
  private cookies: StoredCookie[] = [];

  constructor(private readonly nowSeconds: () => number = () => Math.floor(Date.now() / 1000)) {}

  /** Every live cookie, oldest first. */
  all(): readonly StoredCookie[] {
    const now = this.nowSeconds();
    this.cookies = this.cookies.filter((cookie) => cookie.expires === 0 || cookie.expires > now);
    return this.cookies;
  }

  /** The live cookie of this name that a request to `url` would carry. */
  get(url: string, name: string): string | undefined {
    return this.forUrl(url).find((cookie) => cookie.name === name)?.value;
  }

  /** The cookies a browser would send to `url`, longest path first. */
  forUrl(url: string): StoredCookie[] {
    const target = new URL(url);
    const host = target.hostname.toLowerCase();
    const secureContext = target.protocol === 'https:' || LOOPBACK.has(host);
    return this.all()
      .filter(
        (cookie) =>
          domainMatches(host, cookie) &&
          pathMatches(target.pathname, cookie.path) &&
          (!cookie.secure || secureContext),
      )
      .sort((a, b) => b.path.length - a.path.length);
  }

  /** The `Cookie` header for a request to `url`, or undefined when there is none to send. */
  header(url: string): string | undefined {
    const cookies = this.forUrl(url);
    return cookies.length === 0
      ? undefined
      : cookies.map((cookie) => `${cookie.name}=${cookie.value}`).join('; ');
  }

  /** Stores one `Set-Cookie` line received from `url`. */
  store(url: string, line: string): CookieChange | undefined {
    const [pair = '', ...parts] = line.split(';');
    const index = pair.indexOf('=');
    if (index <= 0) return undefined;
    const name = pair.slice(0, index).trim();
    const value = pair.slice(index + 1).trim();
    const attributes = new Map<string, string>();
    for (const part of parts) {
      const equals = part.indexOf('=');
      const key = (equals < 0 ? part : part.slice(0, equals)).trim().toLowerCase();
      if (key) attributes.set(key, equals < 0 ? '' : part.slice(equals + 1).trim());
    }
    const target = new URL(url);
    const host = target.hostname.toLowerCase();
    const domainAttribute = attributes.get('domain')?.replace(/^\./, '').toLowerCase();
    const attributeText = parts.map((part) => part.trim()).join('; ');
    if (domainAttribute && host !== domainAttribute && !host.endsWith(`.${domainAttribute}`)) {
      return { name, value, domain: domainAttribute, action: 'refused', attributes: attributeText };
    }
    const domain = domainAttribute ?? host;
    const now = this.nowSeconds();
    const maxAge = attributes.get('max-age');
    const expiresText = attributes.get('expires');
    let expires = 0;
    if (maxAge !== undefined && /^-?\d+$/.test(maxAge))
      expires = Number(maxAge) <= 0 ? -1 : now + Number(maxAge);
    else if (expiresText !== undefined && !Number.isNaN(Date.parse(expiresText))) {
      expires = Math.floor(Date.parse(expiresText) / 1000);
      if (expires <= now) expires = -1;
    }
    const path = attributes.get('path')?.startsWith('/') ? (attributes.get('path') as string) : '/';
    const cookie: StoredCookie = {
      name,
      value,
      domain,
      includeSubdomains: domainAttribute !== undefined,
      path,
      secure: attributes.has('secure'),
      httpOnly: attributes.has('httponly'),
      expires,
    };
    this.cookies = this.cookies.filter(
      (other) => !(other.name === name && other.domain === domain && other.path === path),
    );
    if (expires === -1) return { name, value, domain, action: 'deleted', attributes: attributeText };
    this.cookies.push(cookie);
    return { name, value, domain, action: 'set', attributes: attributeText };
  }

  /** Adds the cookies of a curl cookie file (Netscape format; `#HttpOnly_` lines included). */
  load(text: string): number {
    let count = 0;
    for (const raw of text.split(/\r?\n/)) {
      let line = raw;
      let httpOnly = false;
      if (line.startsWith('#HttpOnly_')) {
        line = line.slice('#HttpOnly_'.length);
        httpOnly = true;
      } else if (line.startsWith('#') || line.trim() === '') continue;
      const fields = line.split('\t');
      if (fields.length < 7) continue;
      const [domain = '', subdomains, path = '/', secure, expires, name = '', ...value] = fields;
      if (!name) continue;
      this.cookies.push({
        name,
        value: value.join('\t'),
        domain: domain.replace(/^\./, '').toLowerCase(),
        includeSubdomains: subdomains === 'TRUE',
        path,
        secure: secure === 'TRUE',
        httpOnly,
        expires: Number(expires) || 0,
      });
      count += 1;
    }
    return count;
  }

  /** The jar as a curl cookie file. */
  serialize(): string {
    const lines = this.all().map((cookie) =>
      [
        `${cookie.httpOnly ? '#HttpOnly_' : ''}${cookie.includeSubdomains ? '.' : ''}${cookie.domain}`,
        cookie.includeSubdomains ? 'TRUE' : 'FALSE',
        cookie.path,
        cookie.secure ? 'TRUE' : 'FALSE',
        String(cookie.expires),
        cookie.name,
        cookie.value,
      ].join('\t'),
    );
    return ['# Netscape HTTP Cookie File', '# written by dmp platforms test-sync', '', ...lines, ''].join(
      '\n',
    );
  }
}
