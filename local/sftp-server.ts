import { generateKeyPairSync, timingSafeEqual } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  type Stats,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join, posix } from 'node:path';
import ssh2 from 'ssh2';
import { hostKeyFingerprint } from '../src/files/targets/sftp.ts';

/**
 * An SFTP server on ssh2's server API (SFTP v3), serving one directory of this machine: the
 * embedded stand-in `npm start` runs for the local SFTP platform (docs/local-stack.md), and the
 * in-process server of the SFTP tests where OpenSSH's sshd is not installed. Key authentication
 * only, for one user and one client key; files are written, read, listed, renamed (never over an
 * existing file, as OpenSSH's) and removed; a remote path never leaves `root`.
 */

const { Server, utils } = ssh2;
const { OPEN_MODE, STATUS_CODE } = utils.sftp;

export interface EmbeddedSftpServerOptions {
  /** The directory remote `/` maps to (`/` itself: remote paths are this machine's paths). */
  readonly root: string;
  /** The server's host key (PEM). */
  readonly hostKey: string;
  readonly username: string;
  /** The one client key accepted (PEM or OpenSSH, private or public). */
  readonly clientKey: string;
  readonly host?: string;
  /** 0 (default): a free port. */
  readonly port?: number;
}

export interface EmbeddedSftpServer {
  readonly host: string;
  readonly port: number;
  /** Fingerprint of the host key (`SHA256:...`), to pin. */
  readonly hostKeySha256: string;
  /** What happened (accepted logins, renames, client errors). */
  log(): string;
  stop(): Promise<void>;
}

/** A new RSA key pair as PEM (what ssh2 reads for host and client keys alike). */
export function generateSshKey(): string {
  return generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'pkcs1', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
  }).privateKey;
}

/** The key in `file`, generated there (mode 0600) on first use: a host key that stays pinned. */
export function persistentSshKey(file: string): string {
  if (existsSync(file)) return readFileSync(file, 'utf8');
  const key = generateSshKey();
  mkdirSync(join(file, '..'), { recursive: true });
  writeFileSync(file, key, { mode: 0o600 });
  return key;
}

export async function startEmbeddedSftpServer(
  options: EmbeddedSftpServerOptions,
): Promise<EmbeddedSftpServer> {
  const allowed = utils.parseKey(options.clientKey);
  const host = utils.parseKey(options.hostKey);
  if (allowed instanceof Error) throw new Error(`cannot read the client key: ${allowed.message}`);
  if (host instanceof Error) throw new Error(`cannot read the host key: ${host.message}`);
  const allowedBlob = allowed.getPublicSSH();
  let output = '';
  const log = (line: string) => {
    output += `${line}\n`;
  };
  const clients = new Set<ssh2.Connection>();
  const server = new Server({ hostKeys: [options.hostKey] }, (client) => {
    clients.add(client);
    client.on('close', () => clients.delete(client));
    client.on('error', (error) => log(`client error: ${error.message}`));
    client.on('authentication', (ctx) => {
      if (
        ctx.method === 'publickey' &&
        ctx.username === options.username &&
        ctx.key.algo === allowed.type &&
        ctx.key.data.length === allowedBlob.length &&
        timingSafeEqual(ctx.key.data, allowedBlob) &&
        (!ctx.signature || allowed.verify(ctx.blob!, ctx.signature, ctx.hashAlgo))
      ) {
        if (ctx.signature) log(`Accepted publickey for ${options.username}`);
        ctx.accept();
        return;
      }
      ctx.reject(['publickey']);
    });
    client.on('ready', () => {
      client.on('session', (acceptSession) => {
        const session = acceptSession();
        session.on('sftp', (acceptSftp) => serveSftp(acceptSftp(), options.root, log));
      });
    });
  });
  const listenHost = options.host ?? '127.0.0.1';
  await new Promise<void>((done, fail) => {
    server.once('error', fail);
    server.listen(options.port ?? 0, listenHost, () => {
      server.off('error', fail);
      done();
    });
  });
  const { port } = server.address() as { port: number };
  return {
    host: listenHost,
    port,
    hostKeySha256: hostKeyFingerprint(host.getPublicSSH()),
    log: () => output,
    async stop() {
      for (const client of clients) client.end();
      await new Promise<void>((done) => server.close(() => done()));
    },
  };
}

function serveSftp(sftp: ssh2.SFTPWrapper, root: string, log: (line: string) => void): void {
  /** Remote path -> local path, never outside root (`..` stops at remote `/`). */
  const local = (remote: string) => join(root, posix.normalize(`/${remote}`));
  const handles = new Map<number, { fd: number; path: string }>();
  /** Open directories: the names still to list (READDIR sends them once, then EOF). */
  const directories = new Map<number, { names: string[] | undefined; path: string }>();
  let nextHandle = 1;
  const handleOf = (buffer: Buffer) => handles.get(buffer.readUInt32BE(0));
  const fail = (reqid: number, error: unknown) => {
    const code = (error as NodeJS.ErrnoException).code;
    sftp.status(reqid, code === 'ENOENT' ? STATUS_CODE.NO_SUCH_FILE : STATUS_CODE.FAILURE);
  };
  const attrsOf = (stats: Stats) => ({
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
      const fd = openSync(local(filename), mode);
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
  sftp.on('READ', (reqid, handle, offset, length) => {
    const open = handleOf(handle);
    if (!open) return sftp.status(reqid, STATUS_CODE.FAILURE);
    try {
      const buffer = Buffer.alloc(Math.min(length, 256 * 1024));
      const read = readSync(open.fd, buffer, 0, buffer.length, offset);
      if (read === 0) return sftp.status(reqid, STATUS_CODE.EOF);
      sftp.data(reqid, buffer.subarray(0, read));
    } catch (error) {
      fail(reqid, error);
    }
  });
  sftp.on('CLOSE', (reqid, handle) => {
    const id = handle.readUInt32BE(0);
    if (directories.delete(id)) return sftp.status(reqid, STATUS_CODE.OK);
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
      sftp.attrs(reqid, attrsOf(statSync(local(path))));
    } catch (error) {
      fail(reqid, error);
    }
  };
  sftp.on('STAT', stat);
  sftp.on('LSTAT', stat);
  sftp.on('REALPATH', (reqid, path) => {
    const absolute = posix.normalize(`/${path}`);
    sftp.name(reqid, [{ filename: absolute, longname: absolute, attrs: {} as ssh2.Attributes }]);
  });
  sftp.on('RENAME', (reqid, from, to) => {
    // SFTP v3 rename does not overwrite (as OpenSSH's).
    if (existsSync(local(to))) return sftp.status(reqid, STATUS_CODE.FAILURE);
    try {
      renameSync(local(from), local(to));
      log(`rename ${from} -> ${to}`);
      sftp.status(reqid, STATUS_CODE.OK);
    } catch (error) {
      fail(reqid, error);
    }
  });
  sftp.on('REMOVE', (reqid, path) => {
    try {
      unlinkSync(local(path));
      sftp.status(reqid, STATUS_CODE.OK);
    } catch (error) {
      fail(reqid, error);
    }
  });
  sftp.on('OPENDIR', (reqid, path) => {
    try {
      const names = readdirSync(local(path));
      const id = nextHandle++;
      directories.set(id, { names, path });
      const handle = Buffer.alloc(4);
      handle.writeUInt32BE(id);
      sftp.handle(reqid, handle);
    } catch (error) {
      fail(reqid, error);
    }
  });
  sftp.on('READDIR', (reqid, handle) => {
    const directory = directories.get(handle.readUInt32BE(0));
    if (!directory) return sftp.status(reqid, STATUS_CODE.FAILURE);
    const names = directory.names;
    if (!names) return sftp.status(reqid, STATUS_CODE.EOF);
    directory.names = undefined;
    const entries = names.flatMap((filename) => {
      try {
        const attrs = attrsOf(statSync(join(local(directory.path), filename)));
        return [{ filename, longname: filename, attrs }];
      } catch {
        return []; // gone meanwhile (a rename)
      }
    });
    if (entries.length === 0) return sftp.status(reqid, STATUS_CODE.EOF);
    sftp.name(reqid, entries);
  });
  sftp.on('end', () => {
    for (const { fd } of handles.values()) closeSync(fd);
    handles.clear();
  });
}
