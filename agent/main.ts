#!/usr/bin/env node
// Entry point of `homeostat-agent`: hands the arguments to the CLI and exits with its code.
import { main } from './cli/program.js';

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`homeostat-agent: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
