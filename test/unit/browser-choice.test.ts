import { describe, expect, it } from 'vitest';
import { chooseChromium, DEBIAN_CHROMIUM_PATH } from '../support/browser.ts';

/** Which Chromium the browser tests use, on machines with and without Debian's build. */
describe('chooseChromium', () => {
  const withFiles =
    (...paths: string[]) =>
    (path: string) =>
      paths.includes(path);

  it("uses Debian's Chromium when it is installed", () => {
    const choice = chooseChromium({ env: {}, exists: withFiles(DEBIAN_CHROMIUM_PATH) });
    expect(choice).toMatchObject({ source: 'debian', executablePath: DEBIAN_CHROMIUM_PATH });
  });

  it('falls back to the npm package on a fresh machine without it', () => {
    expect(chooseChromium({ env: {}, exists: withFiles() }).source).toBe('bundled');
  });

  it('takes CHROMIUM_PATH first, and refuses one that does not exist', () => {
    expect(
      chooseChromium({ env: { CHROMIUM_PATH: '/opt/c' }, exists: withFiles('/opt/c', DEBIAN_CHROMIUM_PATH) }),
    ).toMatchObject({ source: 'CHROMIUM_PATH', executablePath: '/opt/c' });
    expect(() => chooseChromium({ env: { CHROMIUM_PATH: '/opt/c' }, exists: withFiles() })).toThrow(
      /no such file/,
    );
  });

  it('DMP_TEST_CHROMIUM=bundled forces the fallback even where Debian has one', () => {
    const env = { DMP_TEST_CHROMIUM: 'bundled', CHROMIUM_PATH: '/opt/c' };
    expect(chooseChromium({ env, exists: withFiles('/opt/c', DEBIAN_CHROMIUM_PATH) }).source).toBe('bundled');
    expect(() => chooseChromium({ env: { DMP_TEST_CHROMIUM: 'yes' }, exists: withFiles() })).toThrow();
  });
});
