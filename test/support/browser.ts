import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium, type LaunchOptions } from 'playwright-core';

/**
 * Headless Chromium for the browser tests: the distribution's build (CI installs Debian's
 * `chromium`), driven by playwright-core, in a fresh profile directory that is removed again.
 * A missing browser is an error, never a skipped test: set CHROMIUM_PATH to use another build.
 */

export const CHROMIUM_PATH = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';

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

export interface ChromiumSession {
  /**
   * The profile's only browser context (a persistent one: playwright takes the profile directory
   * as `launchPersistentContext`'s argument and refuses `--user-data-dir` among the args).
   */
  readonly context: BrowserContext;
  readonly userDataDir: string;
  /** Closes the browser and removes the profile directory; safe to call more than once. */
  close(): Promise<void>;
}

export interface LaunchChromiumOptions {
  /** Extra command-line switches, after CHROMIUM_ARGS. */
  readonly args?: readonly string[];
  /** Playwright's launch timeout (ms). */
  readonly timeout?: LaunchOptions['timeout'];
}

export async function launchChromium(options: LaunchChromiumOptions = {}): Promise<ChromiumSession> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM_PATH}: install it (Debian: apt-get install chromium) ` +
        'or point CHROMIUM_PATH at a Chromium binary',
    );
  }
  const userDataDir = mkdtempSync(join(tmpdir(), 'dmp-chromium-'));
  const removeProfile = () => rmSync(userDataDir, { recursive: true, force: true, maxRetries: 3 });
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: [...CHROMIUM_ARGS, ...(options.args ?? [])],
      ...(options.timeout === undefined ? {} : { timeout: options.timeout }),
    });
  } catch (error) {
    removeProfile();
    throw error;
  }
  let closed: Promise<void> | undefined;
  return {
    context,
    userDataDir,
    close() {
      closed ??= context.close().finally(removeProfile);
      return closed;
    },
  };
}
