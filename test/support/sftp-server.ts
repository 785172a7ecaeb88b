import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { generateSshKey, startEmbeddedSftpServer } from '../../local/sftp-server.ts';
import { hostKeyFingerprint } from '../../src/files/targets/sftp.ts';

/**
 * SFTP servers for the file delivery tests, on 127.0.0.1 with their own host key, client key and
 * upload directory, removed again on stop:
 *
 * - `openssh`: Debian's real `sshd` (package openssh-server; .ci/run installs it), started with a
 *   config file of its own (key auth only, for the current user, internal-sftp, StrictModes no);
 * - `in-process`: an SFTP server built on ssh2's server API over a temporary directory, for
 *   machines without sshd (or DMP_TEST_SFTP_SERVER=in-process).
 *
 * The remote path of the upload directory is absolute (`uploadPath`), for both.
 */

export type SftpServerKind = 'openssh' | 'in-process';

export interface TestSftpServer {
  readonly kind: SftpServerKind;
  readonly host: string;
  readonly port: number;
  /** Fingerprint of the server's host key (`SHA256:...`). */
  readonly hostKeySha256: string;
  readonly username: string;
  /** The client's private key (OpenSSH or PEM). */
  readonly privateKey: string;
  /** Remote directory to upload to, and where it is on this machine (the same path). */
  readonly uploadPath: string;
  /** The server's log (sshd -e), to check what happened (say, that nobody authenticated). */
  log(): string;
  stop(): Promise<void>;
}

export const SSHD_PATH = process.env['SSHD_PATH'] ?? '/usr/sbin/sshd';

/** The kind the tests run against: OpenSSH where installed, unless DMP_TEST_SFTP_SERVER says otherwise. */
export function availableSftpServer(): SftpServerKind {
  const forced = process.env['DMP_TEST_SFTP_SERVER'];
  if (forced === 'openssh' || forced === 'in-process') return forced;
  return existsSync(SSHD_PATH) && existsSync('/usr/bin/ssh-keygen') ? 'openssh' : 'in-process';
}

export function startSftpServer(kind: SftpServerKind = availableSftpServer()): Promise<TestSftpServer> {
  return kind === 'openssh' ? startOpenSsh() : startInProcess();
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as { port: number };
  await new Promise<void>((done) => server.close(() => done()));
  return port;
}

function keygen(file: string): void {
  execFileSync('/usr/bin/ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'dmp-test', '-f', file]);
}

function fingerprintOfPublicKeyFile(file: string): string {
  const blob = readFileSync(file, 'utf8').trim().split(/\s+/)[1] ?? '';
  return hostKeyFingerprint(Buffer.from(blob, 'base64'));
}

async function startOpenSsh(): Promise<TestSftpServer> {
  const dir = mkdtempSync(join(tmpdir(), 'dmp-sshd-'));
  const uploadPath = join(dir, 'upload');
  mkdirSync(uploadPath, { mode: 0o755 });
  keygen(join(dir, 'host_key'));
  keygen(join(dir, 'client_key'));
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'client_key.pub')));
  const username = userInfo().username;
  // Privilege separation needs its empty directory when sshd starts as root.
  if (process.getuid?.() === 0) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });

  for (let attempt = 1; ; attempt += 1) {
    const port = await freePort();
    const config = [
      `ListenAddress 127.0.0.1:${port}`,
      `HostKey ${join(dir, 'host_key')}`,
      'PidFile none',
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password',
      `AllowUsers ${username}`,
      'UsePAM no',
      'StrictModes no',
      'Subsystem sftp internal-sftp',
      'ForceCommand internal-sftp',
      'AllowTcpForwarding no',
      'X11Forwarding no',
      'PermitTTY no',
      'LogLevel VERBOSE',
      '',
    ].join('\n');
    writeFileSync(join(dir, 'sshd_config'), config);
    const child = spawn(SSHD_PATH, ['-D', '-e', '-f', join(dir, 'sshd_config')], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let output = '';
    const listening = await new Promise<boolean>((resolveReady, reject) => {
      child.stderr!.on('data', (chunk: Buffer) => {
        output += chunk.toString('utf8');
        if (output.includes(`Server listening on 127.0.0.1 port ${port}`)) resolveReady(true);
        if (/Address already in use/.test(output)) resolveReady(false);
      });
      child.once('exit', (code) =>
        /Address already in use/.test(output)
          ? resolveReady(false)
          : reject(new Error(`sshd exited (${code}) before listening:\n${output}`)),
      );
      child.once('error', reject);
    });
    if (!listening) {
      child.kill();
      if (attempt < 5) continue;
      throw new Error(`sshd found no free port:\n${output}`);
    }
    return {
      kind: 'openssh',
      host: '127.0.0.1',
      port,
      hostKeySha256: fingerprintOfPublicKeyFile(join(dir, 'host_key.pub')),
      username,
      privateKey: readFileSync(join(dir, 'client_key'), 'utf8'),
      uploadPath,
      log: () => output,
      stop: () => stopChild(child).finally(() => rmSync(dir, { recursive: true, force: true })),
    };
  }
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => {
    child.once('exit', () => done());
    child.kill('SIGTERM');
  });
}

// ---------------------------------------------------------------------------------------------
// In-process: the embedded server of the local stack (ssh2's server API), remote paths = local ones.

async function startInProcess(): Promise<TestSftpServer> {
  const dir = mkdtempSync(join(tmpdir(), 'dmp-sftp-'));
  const uploadPath = join(dir, 'upload');
  mkdirSync(uploadPath);
  const clientKey = generateSshKey();
  const username = 'dmp-test';
  const server = await startEmbeddedSftpServer({
    root: '/',
    hostKey: generateSshKey(),
    username,
    clientKey,
  });
  return {
    kind: 'in-process',
    host: server.host,
    port: server.port,
    hostKeySha256: server.hostKeySha256,
    username,
    privateKey: clientKey,
    uploadPath,
    log: () => server.log(),
    async stop() {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------

export interface CuttingProxy {
  readonly port: number;
  /** Resolves once the proxy has cut a connection. */
  readonly cut: Promise<void>;
  stop(): Promise<void>;
}

/**
 * A TCP proxy to `targetPort` that destroys both sides of a connection once the client has sent
 * `cutAfterBytes` bytes: a connection that drops mid-upload.
 */
export async function startCuttingProxy(targetPort: number, cutAfterBytes: number): Promise<CuttingProxy> {
  const sockets = new Set<Socket>();
  let markCut: () => void = () => {};
  const cut = new Promise<void>((done) => {
    markCut = done;
  });
  const server = createServer((client) => {
    const upstream = new Socket();
    sockets.add(client);
    sockets.add(upstream);
    let sent = 0;
    upstream.connect(targetPort, '127.0.0.1');
    client.on('data', (chunk: Buffer) => {
      sent += chunk.length;
      if (sent >= cutAfterBytes) {
        client.destroy();
        upstream.destroy();
        markCut();
        return;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => client.write(chunk));
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', end);
    upstream.on('error', end);
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as { port: number };
  return {
    port,
    cut,
    async stop() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((done) => server.close(() => done()));
    },
  };
}
