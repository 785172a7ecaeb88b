import { join } from 'node:path';
import { bundle, bytesByPackage, lambdaBuildOptions, sdkClientsIn, sdkOnlySource } from './bench/cold-start.ts';
import { REPO_ROOT } from './bench/fixtures.ts';
const entry = process.argv[2]!;
const h = await bundle({ ...(await lambdaBuildOptions('/tmp/fb/h.mjs')), entryPoints: [join(REPO_ROOT, entry)], external: ['cpu-features', '*.node'] });
const clients = sdkClientsIn(h);
const b = await bundle({ ...(await lambdaBuildOptions('/tmp/fb/b.mjs')), stdin: { contents: sdkOnlySource(clients), resolveDir: REPO_ROOT, sourcefile: 'b.ts', loader: 'ts' } });
console.log(entry, h.bytes, b.bytes, (h.bytes / b.bytes).toFixed(2), clients.join(','));
console.log(bytesByPackage(h).slice(0, 25).map((p) => `${p.name} ${p.bytes}`).join('\n'));
