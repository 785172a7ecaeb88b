import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium, type LaunchOptions } from 'playwright-core';

/**
 * Headless Chromium for the browser tests, driven by playwright-core in a fresh profile directory
 * that is removed again. Which build (see `chooseChromium`):
 *
 * 1. `CHROMIUM_PATH`, when set: that binary (a missing one is an error, never a skipped test);
 * 2. the distribution's `/usr/bin/chromium` when it is installed (CI installs Debian's);
 * 3. otherwise the build the npm package `@sparticuz/chromium` ships (a dev dependency, unpacked
 *    to /tmp on first use, ~7 s), so that `npm install && npm test` is enough on a fresh machine.
 *
 * `DMP_TEST_CHROMIUM=bundled` skips 1 and 2: it checks the fallback on a machine that has Debian's
 * build. The tests put the choice in their names and print the browser's version.
 */

export const DEBIAN_CHROMIUM_PATH = '/usr/bin/chromium';

/** Quiet, offline, reproducible: no background fetches, component updates, sync or QUIC. */
export const CHROMIUM_ARGS: readonly string[] = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

/**
 * Of the serverless package's recommended switches, those that would change what the tests
 * observe (web security, mixed content, its own headless mode: playwright sets headless) are left out.
 */
const BUNDLED_ARGS_LEFT_OUT = [
  '--disable-web-security',
  '--allow-running-insecure-content',
  '--disable-site-isolation-trials',
  '--headless',
];

export type ChromiumSource = 'CHROMIUM_PATH' | 'debian' | 'bundled';

export interface ChromiumChoice {
  readonly source: ChromiumSource;
  /** Absent for the bundled build until it is unpacked (`resolveChromium`). */
  readonly executablePath?: string;
  /** For test names and logs. */
  readonly label: string;
}

export interface ChromiumEnvironment {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly exists: (path: string) => boolean;
}

/** The choice above, from the environment and the file system only (cheap, synchronous). */
export function chooseChromium(
  { env, exists }: ChromiumEnvironment = { env: process.env, exists: existsSync },
): ChromiumChoice {
  const forced = env['DMP_TEST_CHROMIUM'];
  if (forced !== undefined && forced !== '' && forced !== 'bundled') {
    throw new Error(`DMP_TEST_CHROMIUM=${forced}: the only value is "bundled"`);
  }
  if (forced !== 'bundled') {
    const configured = env['CHROMIUM_PATH'];
    if (configured) {
      if (!exists(configured)) throw new Error(`CHROMIUM_PATH=${configured}: no such file`);
      return { source: 'CHROMIUM_PATH', executablePath: configured, label: `Chromium at ${configured}` };
    }
    if (exists(DEBIAN_CHROMIUM_PATH)) {
      return { source: 'debian', executablePath: DEBIAN_CHROMIUM_PATH, label: "Debian's Chromium" };
    }
  }
  return { source: 'bundled', label: 'Chromium of @sparticuz/chromium' };
}

async function resolveChromium(choice: ChromiumChoice): Promise<{ executablePath: string; args: string[] }> {
  if (choice.source !== 'bundled' && choice.executablePath) {
    return { executablePath: choice.executablePath, args: [...CHROMIUM_ARGS] };
  }
  const { default: bundled } = await import('@sparticuz/chromium');
  const executablePath = await bundled.executablePath();
  const recommended = bundled.args.filter(
    (arg) => !BUNDLED_ARGS_LEFT_OUT.some((left) => arg === left || arg.startsWith(`${left}=`)),
  );
  return { executablePath, args: [...new Set([...recommended, ...CHROMIUM_ARGS])] };
}

export interface ChromiumSession {
  /**
   * The profile's only browser context (a persistent one: playwright takes the profile directory
   * as `launchPersistentContext`'s argument and refuses `--user-data-dir` among the args).
   */
  readonly context: BrowserContext;
  readonly userDataDir: string;
  /** Which build runs, e.g. "Debian's Chromium 156.0.7632.45". */
  readonly description: string;
  readonly choice: ChromiumChoice;
  /** Closes the browser and removes the profile directory; safe to call more than once. */
  close(): Promise<void>;
}

export interface LaunchChromiumOptions {
  /** Extra command-line switches, after CHROMIUM_ARGS. */
  readonly args?: readonly string[];
  /** Playwright's launch timeout (ms). */
  readonly timeout?: LaunchOptions['timeout'];
  readonly choice?: ChromiumChoice;
}

export async function launchChromium(options: LaunchChromiumOptions = {}): Promise<ChromiumSession> {
  const choice = options.choice ?? chooseChromium();
  const { executablePath, args } = await resolveChromium(choice);
  const userDataDir = mkdtempSync(join(tmpdir(), 'dmp-chromium-'));
  const removeProfile = () => rmSync(userDataDir, { recursive: true, force: true, maxRetries: 3 });
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath,
      headless: true,
      args: [...args, ...(options.args ?? [])],
      ...(options.timeout === undefined ? {} : { timeout: options.timeout }),
    });
  } catch (error) {
    removeProfile();
    throw error;
  }
  const version = context.browser()?.version() ?? (await browserVersion(context));
  const description = `${choice.label} ${version}`.trim();
  console.info(`browser tests run on ${description} (${executablePath})`);
  let closed: Promise<void> | undefined;
  return {
    context,
    userDataDir,
    description,
    choice,
    close() {
      closed ??= context.close().finally(removeProfile);
      return closed;
    },
  };
}

/** A persistent context has no Browser object: ask the page's user agent instead. */
async function browserVersion(context: BrowserContext): Promise<string> {
  const page = await context.newPage();
  try {
    const agent = await page.evaluate(() => navigator.userAgent);
    return /(?:Headless)?Chrome\/([\d.]+)/.exec(agent)?.[1] ?? '';
  } finally {
    await page.close();
  }
}
