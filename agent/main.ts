#!/usr/bin/env node
// Entry point of `homeostat-agent`: hands the arguments to the CLI and exits with its code once its output is written.
import { exitAfterOutput, guardOutput } from '../lib/exit.js';
import { setProcessTitle } from '../lib/proctitle.js';
import { main } from './cli/program.js';

// Observations of filesystems that can hang each hold a thread of libuv's pool while they wait (agent/host/fsguard.ts):
// a larger pool keeps a few hung mounts from starving the repairs' writes elsewhere. libuv reads it at its first use.
process.env.UV_THREADPOOL_SIZE ??= '16';
setProcessTitle('homeostat-agent', process.argv.slice(2), ['--token']);
guardOutput();
main(process.argv.slice(2)).then(exitAfterOutput, (err: unknown) => {
  process.stderr.write(`homeostat-agent: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  exitAfterOutput(1);
});
