#!/usr/bin/env node
// Entry point of `homeostatctl`: every operator action of the controller API, human-readable by default, `--json` for
// scripts. The connection comes from flags, then environment variables, then the context `homeostatctl login` saved.
import { Command } from 'commander';
import { BaselineInvalidError, HsError, errorMessage } from '../../lib/errors.js';
import { exitAfterOutput, guardOutput } from '../../lib/exit.js';
import { versionLine } from '../../lib/version.js';
import { DEFAULT_SERVER } from './context.js';
import { addDocumentCommands } from './documents.js';
import { addEscalationCommands } from './escalations.js';
import { addFleetCommands } from './fleet.js';
import { table, time } from './format.js';
import { client, out } from './helpers.js';
import { addRolloutCommands } from './rollouts.js';
import { addSessionCommands } from './session.js';
import { addTuningCommands } from './tuning.js';

export function program(): Command {
  const p = new Command('homeostatctl')
    .version(versionLine())
    .description('operate a Homeostat controller')
    .option('--server <url>', `controller base URL (default: $HOMEOSTAT_SERVER, else the one homeostatctl login saved, else ${DEFAULT_SERVER})`)
    .option('--token <token>', 'operator token (default: $HOMEOSTAT_ADMIN_TOKEN, else the saved context)')
    .option('--token-file <file>', "read the operator token from a file: the controller's DATA_DIR/admin.token (default: $HOMEOSTAT_TOKEN_FILE, else the saved context)")
    .option('--ca <file>', "trust this certificate: the controller's DATA_DIR/tls.crt (default: $HOMEOSTAT_CA, else the saved context)")
    .option('--fingerprint <sha256>', 'trust the certificate with this sha256, the last part of a join token (default: $HOMEOSTAT_FINGERPRINT, else the saved context)')
    .option('--json', 'one JSON document on stdout')
    .configureHelp({ showGlobalOptions: true })
    .addHelpText(
      'after',
      `
Save the connection once:  homeostatctl login https://HOST:7400 --token-file DATA_DIR/admin.token --ca DATA_DIR/tls.crt
Environment: HOMEOSTAT_SERVER, HOMEOSTAT_ADMIN_TOKEN, HOMEOSTAT_TOKEN_FILE, HOMEOSTAT_CA, HOMEOSTAT_FINGERPRINT,
HOMEOSTAT_CTL_CONFIG (the context file). Flags win over the environment, the environment over the saved context; an empty
variable counts as unset.`,
    );
  addSessionCommands(p);
  addDocumentCommands(p);
  addRolloutCommands(p);
  addFleetCommands(p);
  addEscalationCommands(p);
  addTuningCommands(p, { client, out, table, time });
  return p;
}

/** The error as the operator reads it, after `homeostatctl: `. */
function describe(err: unknown): string {
  if (err instanceof BaselineInvalidError || err instanceof HsError) return err.describe();
  return errorMessage(err);
}

guardOutput();
const argv = process.argv;
program()
  .parseAsync(argv)
  .then(
    () => exitAfterOutput(Number(process.exitCode ?? 0)),
    (err: unknown) => {
      process.stderr.write(`homeostatctl: ${describe(err)}\n`);
      // Scripts asked for JSON: the error is the document.
      if (argv.includes('--json')) process.stdout.write(`${JSON.stringify({ error: err instanceof HsError ? err.toJSON() : { message: errorMessage(err) } }, null, 2)}\n`);
      exitAfterOutput(1);
    },
  );
