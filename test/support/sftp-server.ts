import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { generateKeyPairSync, timingSafeEqual } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { createServer, Socket } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import ssh2 from 'ssh2';
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
// In-process: ssh2's server, SFTP v3 over a directory of this machine.

const { Server, utils } = ssh2;
const { OPEN_MODE, STATUS_CODE } = utils.sftp;

async function startInProcess(): Promise<TestSftpServer> {
  const dir = mkdtempSync(join(tmpdir(), 'dmp-sftp-'));
  const uploadPath = join(dir, 'upload');
  mkdirSync(uploadPath);
  const pem = (type: 'rsa') =>
    generateKeyPairSync(type, {
      modulusLength: 2048,
      publicKeyEncoding: { type: 'pkcs1', format: 'pem' },
      privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
    }).privateKey;
  const hostKey = pem('rsa');
  const clientKey = pem('rsa');
  const allowed = utils.parseKey(clientKey);
  const host = utils.parseKey(hostKey);
  if (allowed instanceof Error || host instanceof Error) throw new Error('cannot parse generated keys');
  const username = 'dmp-test';
  let output = '';
  const log = (line: string) => {
    output += `${line}\n`;
  };
  const clients = new Set<ssh2.Connection>();

  const server = new Server({ hostKeys: [hostKey] }, (client) => {
    clients.add(client);
    client.on('close', () => clients.delete(client));
    client.on('error', (error) => log(`client error: ${error.message}`));
    client.on('authentication', (ctx) => {
      if (
        ctx.method === 'publickey' &&
        ctx.username === username &&
        ctx.key.algo === allowed.type &&
        ctx.key.data.length === allowed.getPublicSSH().length &&
        timingSafeEqual(ctx.key.data, allowed.getPublicSSH()) &&
        (!ctx.signature || allowed.verify(ctx.blob!, ctx.signature, ctx.hashAlgo))
      ) {
        if (ctx.signature) log(`Accepted publickey for ${username}`);
        ctx.accept();
        return;
      }
      ctx.reject(['publickey']);
    });
    client.on('ready', () => {
      client.on('session', (acceptSession) => {
        const session = acceptSession();
        session.on('sftp', (acceptSftp) => serveSftp(acceptSftp(), log));
      });
    });
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as { port: number };
  return {
    kind: 'in-process',
    host: '127.0.0.1',
    port,
    hostKeySha256: hostKeyFingerprint(host.getPublicSSH()),
    username,
    privateKey: clientKey,
    uploadPath,
    log: () => output,
    async stop() {
      for (const client of clients) client.end();
      await new Promise<void>((done) => server.close(() => done()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

type Sftp = ssh2.SFTPWrapper;

function serveSftp(sftp: Sftp, log: (line: string) => void): void {
  const handles = new Map<number, { fd: number; path: string }>();
  let nextHandle = 1;
  const handleOf = (buffer: Buffer) => handles.get(buffer.readUInt32BE(0));
  const fail = (reqid: number, error: unknown) => {
    const code = (error as NodeJS.ErrnoException).code;
    sftp.status(reqid, code === 'ENOENT' ? STATUS_CODE.NO_SUCH_FILE : STATUS_CODE.FAILURE);
  };
  const attrsOf = (stats: import('node:fs').Stats) => ({
    mode: Number(stats.mode),
    uid: Number(stats.uid),
    gid: Number(stats.gid),
    size: Number(stats.size),
    atime: Math.floor(Number(stats.atimeMs) / 1000),
    mtime: Math.floor(Number(stats.mtimeMs) / 1000),
  });
  sftp.on('OPEN', (reqid, filename, flags) => {
    try {
      let mode = 'r';
      if (flags & OPEN_MODE.WRITE) mode = flags & OPEN_MODE.TRUNC || flags & OPEN_MODE.CREAT ? 'w' : 'r+';
      const fd = openSync(resolve(filename), mode);
      const id = nextHandle++;
      handles.set(id, { fd, path: filename });
      const handle = Buffer.alloc(4);
      handle.writeUInt32BE(id);
      sftp.handle(reqid, handle);
    } catch (error) {
      fail(reqid, error);
    }
  });
  sftp.on('WRITE', (reqid, handle, offset, data) => {
    const open = handleOf(handle);
    if (!open) return sftp.status(reqid, STATUS_CODE.FAILURE);
    try {
      writeSync(open.fd, data, 0, data.length, offset);
      sftp.status(reqid, STATUS_CODE.OK);
    } catch (error) {
      fail(reqid, error);
    }
  });
  sftp.on('CLOSE', (reqid, handle) => {
    const open = handleOf(handle);
    if (!open) return sftp.status(reqid, STATUS_CODE.FAILURE);
    closeSync(open.fd);
    handles.delete(handle.readUInt32BE(0));
    sftp.status(reqid, STATUS_CODE.OK);
  });
  sftp.on('FSTAT', (reqid, handle) => {
    const open = handleOf(handle);
    if (!open) return sftp.status(reqid, STATUS_CODE.FAILURE);
    sftp.attrs(reqid, attrsOf(fstatSync(open.fd)));
  });
  const stat = (reqid: number, path: string) => {
    try {
      sftp.attrs(reqid, attrsOf(statSync(resolve(path))));
    } catch (error) {
      fail(reqid, error);
    }
  };
  sftp.on('STAT', stat);
  sftp.on('LSTAT', stat);
  sftp.on('REALPATH', (reqid, path) => {
    const absolute = resolve('/', path);
    sftp.name(reqid, [{ filename: absolute, longname: absolute, attrs: {} as ssh2.Attributes }]);
  });
  sftp.on('RENAME', (reqid, from, to) => {
    // SFTP v3 rename does not overwrite (as OpenSSH's).
    if (existsSync(resolve(to))) return sftp.status(reqid, STATUS_CODE.FAILURE);
    try {
      renameSync(resolve(from), resolve(to));
      log(`rename ${from} -> ${to}`);
      sftp.status(reqid, STATUS_CODE.OK);
    } catch (error) {
      fail(reqid, error);
    }
  });
  sftp.on('REMOVE', (reqid, path) => {
    try {
      unlinkSync(resolve(path));
      sftp.status(reqid, STATUS_CODE.OK);
    } catch (error) {
      fail(reqid, error);
    }
  });
  sftp.on('OPENDIR', (reqid, path) => {
    try {
      readdirSync(resolve(path));
      sftp.status(reqid, STATUS_CODE.OP_UNSUPPORTED);
    } catch (error) {
      fail(reqid, error);
    }
  });
  sftp.on('end', () => {
    for (const { fd } of handles.values()) closeSync(fd);
    handles.clear();
  });
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
