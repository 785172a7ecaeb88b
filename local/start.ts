import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  endpointsFilePath,
  localDataDir,
  readEndpointsFile,
  removeEndpointsFile,
  writeEndpointsFile,
} from './endpoints.ts';
import { endpointsOf, type LocalStack, startLocalStack } from './stack.ts';

/**
 * `npm start`: the whole service on this machine. Data lives in `.local-data/` (or
 * DMP_LOCAL_DATA_DIR) between runs (`--fresh` wipes it first, `--memory` keeps nothing). Ports:
 * PORT (3000), PARTNER_PORT (3001), SFTP_PORT (2222, the embedded SFTP server), and DYNAMODB_PORT,
 * SQS_S3_PORT, SECRETS_PORT (free ports when unset).
 */

const USAGE = `usage: npm start [-- --fresh | --memory]

  --fresh    wipe .local-data/ before starting
  --memory   keep no data at all (nothing written but .local-data/endpoints.json)

environment: PORT (3000), PARTNER_PORT (3001), SFTP_PORT (2222), DYNAMODB_PORT, SQS_S3_PORT,
             SECRETS_PORT (free ports),
             DMP_LOCAL_DATA_DIR (.local-data)`;

function port(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0 || value > 65535) {
    throw new Error(`${name}=${raw} is not a port number`);
  }
  return value;
}

async function main(): Promise<void> {
  let args: { fresh: boolean; memory: boolean; help: boolean };
  try {
    const { values } = parseArgs({
      options: {
        fresh: { type: 'boolean', default: false },
        memory: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    });
    args = { fresh: values.fresh, memory: values.memory, help: values.help };
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
  if (args.help) {
    console.log(USAGE);
    return;
  }

  const dataDir = localDataDir();
  const endpointsFile = endpointsFilePath(dataDir);
  const previous = readEndpointsFile(endpointsFile);
  if (previous.found) {
    console.error(
      `A local stack is already running (pid ${previous.endpoints.pid}): ${previous.endpoints.apiUrl}`,
    );
    process.exit(1);
  }
  if (args.fresh) {
    // The embedded SFTP server's files go; its keys stay (the host key remains pinned).
    for (const part of ['dynamodb', 'fauxqs', 'reference-partner', join('sftp', 'root')])
      rmSync(join(dataDir, part), { recursive: true, force: true });
  }

  let stack: LocalStack;
  try {
    stack = await startLocalStack({
      port: port('PORT', 3000),
      partnerPort: port('PARTNER_PORT', 3001),
      dynamodbPort: port('DYNAMODB_PORT', 0),
      sqsS3Port: port('SQS_S3_PORT', 0),
      secretsPort: port('SECRETS_PORT', 0),
      sftpPort: port('SFTP_PORT', 2222),
      ...(args.memory ? {} : { dataDir: dataDir }),
    });
  } catch (error) {
    const message = (error as Error).message;
    console.error(`Local stack failed to start: ${message}`);
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      console.error('A port is in use: set PORT / PARTNER_PORT / SFTP_PORT (or stop what holds it).');
    }
    if (process.env['DEBUG']) console.error(error);
    process.exit(1);
  }

  writeEndpointsFile(endpointsFile, endpointsOf(stack));

  const firstPlatform = stack.config.platforms.find((platform) => platform.sync)?.id;
  const lines = [
    '',
    `dmp-activation local stack (environment "${stack.config.name}", region ${stack.region})`,
    `  data:               ${args.memory ? 'in memory (--memory)' : dataDir}`,
    `  HTTP API:           ${stack.apiUrl}`,
    `  sync pixel:         ${stack.apiUrl}/sync${firstPlatform ? `  (one platform: ${stack.apiUrl}/sync?pl=${firstPlatform})` : ''}`,
    `  reference partner:  ${stack.partnerUrl}  (requests it saw: ${stack.partnerUrl}/__requests)`,
    `  DynamoDB:           ${stack.dynamodbEndpoint}`,
    `  SQS:                ${stack.sqsEndpoint}`,
    `  S3:                 ${stack.s3Endpoint}`,
    `  Secrets Manager:    ${stack.secretsEndpoint}`,
    ...(stack.sftp
      ? [
          `  SFTP (embedded):    sftp://${stack.sftp.username}@${stack.sftp.host}:${stack.sftp.port}  (host key ${stack.sftp.hostKeySha256}; files in ${stack.sftp.root})`,
        ]
      : []),
    `  endpoints file:     ${endpointsFile}`,
    '',
    ...stack.summary.map((line) => `  ${line}`),
    '',
    'Ctrl-C stops it.',
    '',
  ];
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) {
      console.error(`${signal} again: exiting without a clean stop`);
      process.exit(1);
    }
    stopping = true;
    console.log(`\n${signal}: stopping local stack...`);
    try {
      await stack.stop();
      removeEndpointsFile(endpointsFile);
      console.log('stopped.');
      process.exit(0);
    } catch (error) {
      removeEndpointsFile(endpointsFile);
      console.error(`stop failed: ${(error as Error).message}`);
      process.exit(1);
    }
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  // Only now announce readiness: a signal sent as soon as the banner is read finds its handler.
  console.log(lines.join('\n'));
}

await main();
