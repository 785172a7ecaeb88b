import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../lib/repo.ts';

/**
 * What can be checked in README.md and docs/ without reading them: every relative link resolves
 * (file and heading), every error text they quote is one the code produces, and every refusal
 * reason they list is one the code can answer with.
 */

const DOCS = [
  join(REPO_ROOT, 'README.md'),
  ...readdirSync(join(REPO_ROOT, 'docs'))
    .filter((file) => file.endsWith('.md'))
    .sort()
    .map((file) => join(REPO_ROOT, 'docs', file)),
];

const text = (path: string) => readFileSync(path, 'utf8');

/** The document without its fenced code blocks (links and spans there are examples). */
function prose(markdown: string): string {
  return markdown.replace(/^```[\s\S]*?^```/gm, '');
}

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces to dashes. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const match of prose(markdown).matchAll(/^#{1,6}\s+(.+?)\s*#*$/gm)) {
    const base = slug(match[1]!);
    const count = seen.get(base) ?? 0;
    anchors.add(count === 0 ? base : `${base}-${count}`);
    seen.set(base, count + 1);
  }
  return anchors;
}

/** Every source file of the service: where quoted texts and reasons must come from. */
function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.ts'))
    .map((file) => join(dir, file));
}
const CODE = ['src', 'lib', 'cli', 'local', 'lambdas', 'bin']
  .flatMap((dir) => sourceFiles(join(REPO_ROOT, dir)))
  .map((file) => text(file))
  .join('\n')
  // Literals split over lines with `+` read as one.
  .replace(/(['"`])\s*\+\s*(['"`])/g, '');

/** The messages of template literals, `${…}` standing for any text. */
const TEMPLATES = [...CODE.matchAll(/`([^`]*\$\{[^`]*)`/g)].map(
  (match) =>
    new RegExp(
      `^${match[1]!
        .split(/\$\{[^}]*\}/)
        .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
        .join('.+?')}$`,
    ),
);

function producedByCode(quote: string): boolean {
  return CODE.includes(quote) || TEMPLATES.some((template) => template.test(quote));
}

describe('README.md and docs/', () => {
  it('link only to files and headings that exist', () => {
    const broken: string[] = [];
    for (const doc of DOCS) {
      for (const match of prose(text(doc)).matchAll(/\[[^\]]*\]\(([^)\s]+)\)/g)) {
        const target = match[1]!;
        if (/^[a-z]+:/i.test(target)) continue; // https:, mailto:
        const [path, anchor] = target.split('#') as [string, string | undefined];
        const file = path === '' ? doc : resolve(dirname(doc), path);
        const where = `${relative(REPO_ROOT, doc)}: (${target})`;
        if (!file.startsWith(REPO_ROOT)) {
          broken.push(`${where} leaves the repository`);
          continue;
        }
        if (!existsSync(file)) {
          broken.push(`${where} no such file`);
          continue;
        }
        if (anchor && statSync(file).isFile() && file.endsWith('.md') && !anchorsOf(text(file)).has(anchor)) {
          broken.push(`${where} no heading #${anchor}`);
        }
      }
    }
    expect(broken).toEqual([]);
  });

  it('name no file outside the repository', () => {
    for (const doc of DOCS) {
      expect(text(doc), relative(REPO_ROOT, doc)).not.toMatch(/\.\.\/shared\/|\/work\/|peers\.md/);
    }
  });

  it('quote only error texts that the code produces', () => {
    // An inline code span that reads as a sentence (five words or more, letters and light
    // punctuation only) quotes a message: the code must produce it.
    const quotes: string[] = [];
    const unknown: string[] = [];
    for (const doc of DOCS) {
      for (const match of prose(text(doc))
        .replace(/\n/g, ' ')
        .matchAll(/`([^`]+)`/g)) {
        const span = match[1]!;
        if (span.split(/\s+/).length < 5 || !/^[\p{L}\p{N} .,:'’_-]+$/u.test(span)) continue;
        quotes.push(span);
        if (!producedByCode(span)) unknown.push(`${relative(REPO_ROOT, doc)}: \`${span}\``);
      }
    }
    expect(unknown).toEqual([]);
    expect(quotes).toContain("auth type basic needs password in the platform's API secret");
  });

  it('list only refusal reasons the user-sync code answers with', () => {
    const table = text(join(REPO_ROOT, 'docs', 'user-sync.md'))
      .split('\n')
      .filter((line) => /^\|\s*[45]\d\d\s*\|/.test(line));
    const reasons = table.flatMap((line) => [...line.matchAll(/`([a-z_]+)`/g)].map((match) => match[1]!));
    expect(reasons.length).toBeGreaterThan(20);
    const sync = sourceFiles(join(REPO_ROOT, 'src', 'sync'))
      .map((file) => text(file))
      .join('\n');
    expect(reasons.filter((reason) => !sync.includes(`'${reason}'`))).toEqual([]);
    // Over-long consent parameters are refused by the parameter check, which runs first.
    expect(reasons).not.toContain('consent_signal_too_long');
  });
});

describe('slug', () => {
  it('makes GitHub’s anchors', () => {
    expect(slug('Refusals of `/uid`')).toBe('refusals-of-uid');
    expect(slug("Which setups keep the cookie in today's browsers")).toBe(
      'which-setups-keep-the-cookie-in-todays-browsers',
    );
    expect(slug('Signed callbacks (HMAC-SHA1, or HMAC-SHA256 per platform)')).toBe(
      'signed-callbacks-hmac-sha1-or-hmac-sha256-per-platform',
    );
  });
});
