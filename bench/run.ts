import { availableParallelism, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { runColdStart } from './cold-start.ts';
import { runDomain } from './domain.ts';
import { runHttp } from './http.ts';
import { comparisonRow, formatBytes, formatRatio, printTable, type Row, sinkValue } from './runner.ts';

/**
 * `npm run bench [-- --only domain,http,cold] [-- --quick]`: every figure is a ratio to a baseline
 * measured in the same run (median of interleaved rounds); absolute times are printed for
 * information only, since they say more about the machine than about the code.
 * See docs/performance.md.
 */

const SECTIONS = ['domain', 'http', 'cold'] as const;
type Section = (typeof SECTIONS)[number];

function parseArgs(argv: readonly string[]): { only: Set<Section>; quick: boolean } {
  let only = new Set<Section>(SECTIONS);
  let quick = false;
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index];
    if (arg === '--quick') quick = true;
    else if (arg === '--only' || arg?.startsWith('--only=')) {
      const value = arg === '--only' ? argv[++index] : arg.slice('--only='.length);
      const names = (value ?? '').split(',').filter(Boolean);
      const unknown = names.filter((name) => !(SECTIONS as readonly string[]).includes(name));
      if (names.length === 0 || unknown.length > 0) {
        throw new Error(`--only takes a comma-separated list of ${SECTIONS.join(', ')}`);
      }
      only = new Set(names as Section[]);
    } else {
      throw new Error(`unknown argument ${arg}; usage: npm run bench [-- --only domain,http,cold] [--quick]`);
    }
  }
  return { only, quick };
}

/** Other processes compete for the CPUs; ratios absorb most of it, but a reader should know. */
function loadLine(): string {
  return `load average ${loadavg()
    .map((value) => value.toFixed(2))
    .join(' ')}`;
}

async function main(): Promise<void> {
  const { only, quick } = parseArgs(process.argv.slice(2));
  const started = performance.now();
  console.log(
    `dmp-activation bench: node ${process.version}, ${availableParallelism()} cpu(s), ${new Date().toISOString()}, ${loadLine()}`,
  );
  console.log('ratio = median over interleaved rounds of subject / baseline, same process; q1-q3 = spread');

  if (only.has('domain')) {
    const rows: Row[] = [];
    await runDomain(
      quick ? { warmupMs: 100, batchMs: 10, rounds: 7 } : { warmupMs: 250, batchMs: 30, rounds: 19 },
      (label, comparison) => {
        rows.push(comparisonRow(label, comparison));
      },
    );
    printTable('1-2. user-sync domain, CPU per request: cost / one HMAC-SHA256 over 64 bytes', rows);
  }

  if (only.has('http')) {
    const result = await runHttp(
      quick
        ? { requests: 500, rounds: 5, concurrency: 8, warmup: 100 }
        : { requests: 2000, rounds: 8, concurrency: 8, warmup: 200 },
    );
    printTable(
      `3. local stack over HTTP (loopback, keep-alive, concurrency 8): /uid rps / one-PutItem floor rps (target >= 0.8)`,
      [
        {
          benchmark: `3  GET /uid seed callback (${result.outcome}, ${result.uidStatus})`,
          ratio: formatRatio(result.rpsRatio),
          spread: `${formatRatio(result.rpsRatioQ1)}-${formatRatio(result.rpsRatioQ3)}`,
          info: `${result.uidRps.toFixed(0)} vs ${result.baselineRps.toFixed(0)} req/s`,
        },
      ],
    );
  }

  if (only.has('cold')) {
    const result = await runColdStart({ runs: quick ? 5 : 9 });
    printTable(
      '4. cold start in a fresh node process: import() of the user-sync bundle / DynamoDB-only bundle',
      [
        {
          benchmark: '4  import() user-sync handler bundle',
          ratio: formatRatio(result.ratio),
          spread: `${formatRatio(result.ratioQ1)}-${formatRatio(result.ratioQ3)}`,
          info: `${result.handlerImportMs.toFixed(1)} ms vs ${result.baselineImportMs.toFixed(1)} ms`,
        },
        {
          benchmark: '4  bundle size, handler / baseline',
          ratio: formatRatio(result.handlerBytes / result.baselineBytes),
          spread: '',
          info: `${result.handlerBytes} B (${formatBytes(result.handlerBytes)}) vs ${result.baselineBytes} B (${formatBytes(
            result.baselineBytes,
          )})`,
        },
        {
          benchmark: '   zod one z.object: named / namespace import',
          ratio: formatRatio(result.zodNamedBytes / result.zodNamespaceBytes),
          spread: '',
          info: `${result.zodNamedBytes} B vs ${result.zodNamespaceBytes} B`,
        },
      ],
    );
    if (!result.bannerFromSource) {
      console.log(
        '  note: ESM_REQUIRE_BANNER not found in lib/constructs/service-function.ts; used the copy',
      );
    }
    const total = result.handlerBytes;
    console.log('  handler bundle by package (esbuild metafile, bytes in output):');
    for (const { name, bytes } of result.topPackages.slice(0, 10)) {
      console.log(
        `    ${name.padEnd(40)} ${String(bytes).padStart(8)}  ${((bytes / total) * 100).toFixed(1)}%`,
      );
    }
  }

  console.log(
    `\ndone in ${((performance.now() - started) / 1000).toFixed(1)} s, ${loadLine()} (sink ${sinkValue() & 0xff})`,
  );
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
    process.exit(1);
  },
);
