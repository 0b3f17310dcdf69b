// The `homeostat-agent` command line: commands and flags of PRODUCT.md, each command in its own module.
import { Command, Option } from 'commander';
import { versionLine } from '../../lib/version.js';
import type { CommonFlags } from '../config.js';

type Flags = CommonFlags & { json?: boolean };

/**
 * Flags every command but `validate` takes. Defaults are shown, not set here: a flag given wins over the config file,
 * which wins over the environment and the default (agent/config.ts).
 */
function common(cmd: Command): Command {
  return cmd
    .option('--config <file>', 'agent config file (default: /etc/homeostat/agent.yaml)')
    .option('--state-dir <dir>', 'state directory (default: env HOMEOSTAT_STATE_DIR, else /var/lib/homeostat)')
    .addOption(new Option('--systemd-scope <scope>', 'systemd manager to talk to (default: system)').choices(['system', 'user']))
    .option('--labels <k=v,...>', 'host labels for baseline selectors (default: none)')
    .addOption(new Option('--log-level <level>', 'log level (default: env HOMEOSTAT_LOG_LEVEL, else info; apply logs warn and above)').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']))
    .option('--metrics-listen <host:port>', 'serve Prometheus metrics (default: not served)');
}

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

/** Runs the CLI; resolves with the process exit code. */
export async function main(argv: string[]): Promise<number> {
  let code = 0;
  const program = new Command('homeostat-agent')
    .description('Homeostat agent: keeps files, services and sysctls at their baseline and repairs drift as it happens')
    .version(versionLine(), '-V, --version')
    .exitOverride()
    .showHelpAfterError();

  program
    .command('validate')
    .description('check baseline and policy files; exit 0 valid, 1 invalid')
    .argument('<file...>')
    .option('--json', 'one JSON document on stdout')
    .action(async (files: string[], opts: { json?: boolean }) => {
      const { validateCommand } = await import('./validate.js');
      code = validateCommand(files, opts);
    });

  common(program.command('check'))
    .description('one-shot: list deviations, change nothing; exit 0 compliant, 2 drift, 1 error')
    .option('--baseline <file>', 'baseline file (repeatable; default: baselines in the config file)', collect)
    .option('--all', 'list compliant resources too')
    .option('--json', 'one JSON document on stdout')
    .action(async (opts: Flags & { all?: boolean }) => {
      const { checkCommand } = await import('./check.js');
      code = await checkCommand(opts);
    });

  common(program.command('apply'))
    .description('one-shot converge and verify; exit 0 converged, 2 unresolved, 1 error')
    .option('--baseline <file>', 'baseline file (repeatable; default: baselines in the config file)', collect)
    .option('--json', 'one JSON document on stdout')
    .action(async (opts: Flags) => {
      const { applyCommand } = await import('./apply.js');
      code = await applyCommand(opts);
    });

  common(program.command('run'))
    .description('the daemon: enforce continuously, standalone or managed by a controller')
    .option('--baseline <file>', 'baseline file (repeatable; default: baselines in the config file)', collect)
    .option('--policy <file>', 'policy file deciding what is repaired, deferred, escalated (repeatable; default: policies in the config file)', collect)
    .option('--controller <url>', 'controller base URL, e.g. wss://controller.example:7400')
    .option('--token <token>', 'enrollment token (used once; the agent keeps its own credential)')
    .option('--insecure-http', 'allow a plain ws:// controller URL (the controller also runs with --insecure-http); never with a token or enrollment that pins TLS')
    .action(async (opts: Flags) => {
      const { runCommand } = await import('./run.js');
      code = await runCommand(opts);
    });

  common(program.command('status'))
    .description('active baselines and versions, controller link, counts, last events')
    .option('--json', 'one JSON document on stdout')
    .action(async (opts: Flags) => {
      const { statusCommand } = await import('./status.js');
      code = statusCommand(opts);
    });

  common(program.command('explain'))
    .description('why a resource is as it is: its state, its last drift and who made it, the rule that decided; exit 0, 1 error')
    .argument('<resource>', 'resource id, e.g. file:/etc/motd')
    .option('--json', 'one JSON document on stdout')
    .action(async (resource: string, opts: Flags) => {
      const { explainCommand } = await import('./explain.js');
      code = explainCommand(resource, opts);
    });

  common(program.command('audit'))
    .description('the audit log')
    .option('--since <time>', 'ISO time (2025-01-31T10:00:00Z) or duration back from now (10m, 2h, 7d)')
    .option('--resource <id>', 'only this resource: file:/etc/motd, a bare path (its file or directory), service:web (web.service)')
    .option('--event <event>', 'only this event, e.g. repaired, escalated, baseline_activated')
    .option('--limit <n>', 'at most n records')
    .option('--verify', 'check the hash chain; exit 1 if it is broken')
    .option('--replaced <seq>', 'print the content the repair recorded at this record replaced (kept on this host only)')
    .option('--json', 'one JSON document on stdout')
    .action(async (opts: Flags & { since?: string; resource?: string; event?: string; limit?: string; verify?: boolean; replaced?: string }) => {
      const { auditCommand } = await import('./audit.js');
      code = auditCommand(opts);
    });

  common(program.command('escalations'))
    .description('drifts left for a human on this host and not yet answered (resource, baseline@version, opened, repeats, observed state)')
    .option('--json', 'one JSON document on stdout')
    .action(async (opts: Flags) => {
      const { escalationsCommand } = await import('./decide.js');
      code = escalationsCommand(opts);
    });

  common(program.command('approve'))
    .description("repair an escalated drift once (this host's own baselines; the controller decides its own); exit 0 repaired, 2 not repaired")
    .argument('<id>', 'escalation id, from homeostat-agent escalations')
    .option('--json', 'one JSON document on stdout')
    .action(async (id: string, opts: Flags) => {
      const { decisionCommand } = await import('./decide.js');
      code = await decisionCommand('approve', id, opts);
    });

  common(program.command('reject'))
    .description('accept an escalated drift as it is until it expires or changes; the agent leaves it alone meanwhile')
    .argument('<id>', 'escalation id, from homeostat-agent escalations')
    .requiredOption('--reason <text>', 'required: why the drift is accepted (recorded in the audit log)')
    .option('--for <duration>', 'how long the drift is accepted', '7d')
    .option('--json', 'one JSON document on stdout')
    .action(async (id: string, opts: Flags & { reason?: string; for?: string }) => {
      const { decisionCommand } = await import('./decide.js');
      code = await decisionCommand('reject', id, opts);
    });

  common(program.command('forget'))
    .description('stop enforcing a baseline and drop it from the cache, through the running daemon if there is one')
    .argument('<name>', 'baseline name (metadata.name)')
    .addOption(new Option('--source <source>', 'which copy, when both this host and the controller hold the name').choices(['local', 'controller']))
    .option('--baseline <file>', 'the baseline files the daemon is configured with, to be told if one still defines it (repeatable; default: baselines in the config file)', collect)
    .option('--json', 'one JSON document on stdout')
    .action(async (name: string, opts: Flags & { source?: string }) => {
      const { forgetCommand } = await import('./forget.js');
      code = await forgetCommand(name, opts);
    });

  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    const e = err as { exitCode?: number; code?: string };
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return 0;
    return typeof e.exitCode === 'number' ? e.exitCode || 1 : 1;
  }
  return code;
}
