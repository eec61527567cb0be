// Runs the service daemon from source (through tsx) for interop tests that start it inside a
// network namespace: `ip netns exec NS node --import tsx test/helpers/daemon-main.ts CONFIG`.
// Prints one JSON line {"ready":true,"ports":{...}} once listening; stops on SIGTERM.
import { stderrLogger } from '../../src/lib/log.js';
import { readServiceConfig, startDaemon } from '../../src/lib/services/daemon.js';

const config = await readServiceConfig(process.argv[2]);
const daemon = await startDaemon(config, stderrLogger({ verbose: !!process.env.KB_DEBUG }));
process.stdout.write(`${JSON.stringify({ ready: true, ports: daemon.ports })}\n`);
const stop = async () => {
  await daemon.close();
  process.exit(0);
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
