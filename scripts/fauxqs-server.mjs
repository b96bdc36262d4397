// Starts the fauxqs SQS emulator installed by scripts/install-fauxqs.sh, for tests. Run as
//   node --require scripts/fauxqs-loopback.cjs scripts/fauxqs-server.mjs
// Environment: FAUXQS_DIR (install folder, default .tools/fauxqs beside this script's repo), FAUXQS_PORT (0 = any free
// port; the preload prints the one chosen), FAUXQS_LOGGER (request logging, default false), FAUXQS_PERSISTENCE=true
// with FAUXQS_DATA_DIR (SQLite persistence, fauxqs 2.4.x only).
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dir = process.env.FAUXQS_DIR || path.join(here, '..', '.tools', 'fauxqs');
const app = await import(pathToFileURL(path.join(dir, 'node_modules', 'fauxqs', 'dist', 'app.js')).href);
const dataDir = process.env.FAUXQS_PERSISTENCE === 'true' ? process.env.FAUXQS_DATA_DIR : undefined;
const server = await app.startFauxqs({
  port: parseInt(process.env.FAUXQS_PORT ?? '4566', 10),
  logger: process.env.FAUXQS_LOGGER === 'true',
  ...(dataDir ? { dataDir } : {}),
});

const stop = async () => {
  try {
    await server.stop();
  } finally {
    process.exit(0);
  }
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
