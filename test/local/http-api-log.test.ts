import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalStack } from '../../local/stack.ts';
import { startEchoStack } from '../support/local-stack.ts';

/**
 * The local API's request lines say what the deployed function logs (route, status, time), never
 * the query string: partner ids and tokens travel in /uid's. And API Gateway reports the domain
 * it serves, never a client's Host header (callback URLs are built on it).
 */
describe('local HTTP API', () => {
  let stack: LocalStack;
  const lines: string[] = [];

  beforeAll(async () => {
    stack = await startEchoStack({ quiet: false, log: (line) => lines.push(line) });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('logs the path and status of a request, not its query', async () => {
    const secretish = 'userid=partner-id-123456&pl=99999&plsec=verysecure';
    const answer = await fetch(`${stack.apiUrl}/uid?${secretish}`);
    expect(answer.status).toBe(200);
    await fetch(`${stack.apiUrl}/nowhere?plsec=verysecure`);
    const requestLines = lines.filter((line) => line.startsWith('GET /'));
    expect(requestLines).toEqual([
      expect.stringMatching(/^GET \/uid -> 200 userSync \(\d+ ms\)$/),
      'GET /nowhere -> 404 (no route)',
    ]);
    for (const line of lines) {
      expect(line).not.toContain('partner-id-123456');
      expect(line).not.toContain('verysecure');
    }
  });

  it('reports its own domain to the function for a Host header that is not loopback', async () => {
    const echo = async (host: string) => {
      const { request } = await import('node:http');
      const url = new URL(`${stack.apiUrl}/sync`);
      return new Promise<{ event: { requestContext: { domainName: string } } }>((resolve, reject) => {
        const req = request(
          { host: url.hostname, port: url.port, path: url.pathname, headers: { host } },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (chunk: Buffer) => chunks.push(chunk));
            res.on('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString('utf8'))));
          },
        );
        req.on('error', reject);
        req.end();
      });
    };
    expect((await echo('evil.example')).event.requestContext.domainName).toBe(new URL(stack.apiUrl).host);
    expect((await echo(`localhost:${new URL(stack.apiUrl).port}`)).event.requestContext.domainName).toBe(
      `localhost:${new URL(stack.apiUrl).port}`,
    );
  });
});
