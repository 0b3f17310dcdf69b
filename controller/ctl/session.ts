// `homeostatctl login` and `logout`: the context file that saves which controller to talk to, the operator token's file
// and how to trust the controller's certificate, checked against the controller before it is written.
import path from 'node:path';
import type { Command } from 'commander';
import { HsError } from '../../lib/errors.js';
import { ApiClient } from './client.js';
import { contextPath, removeContext, resolveConnection, writeContext, type CtlContext } from './context.js';
import { out, type Globals } from './helpers.js';

export function addSessionCommands(p: Command): void {
  p.command('login <url>')
    .description(
      `check the controller at URL with --token-file FILE (or --token T) and --ca FILE (or --fingerprint SHA256), then save them for later calls in ${contextPath().replace(process.env.HOME ?? '\0', '~')} (mode 0600; $HOMEOSTAT_CTL_CONFIG names another file)`,
    )
    .action(async (url: string, _o: unknown, cmd: Command) => {
      const o = cmd.optsWithGlobals<Globals>();
      const json = o.json ?? false;
      if (o.server !== undefined) throw new HsError('HS_CONFIG', 'login takes the controller\'s URL as its argument, not --server');
      if (o.tokenFile === undefined && o.token === undefined) throw new HsError('HS_CONFIG', "login needs --token-file FILE (the controller's DATA_DIR/admin.token) or --token T");
      const ctx: CtlContext = {
        server: url.replace(/\/+$/, ''),
        ...(o.tokenFile !== undefined ? { tokenFile: path.resolve(o.tokenFile) } : {}),
        ...(o.token !== undefined ? { token: o.token } : {}),
        ...(o.ca !== undefined ? { ca: path.resolve(o.ca) } : {}),
        ...(o.fingerprint !== undefined ? { fingerprint: o.fingerprint } : {}),
      };
      // Exactly what later calls will use, checked now: no environment variable, no earlier context.
      const c = resolveConnection({ server: ctx.server, token: o.token, tokenFile: o.tokenFile, ca: o.ca, fingerprint: o.fingerprint }, {}, '/nonexistent/homeostat-ctl.yaml');
      const api = new ApiClient({ server: c.server, token: c.token, ...(c.ca !== undefined ? { ca: c.ca } : {}), ...(c.fingerprint !== undefined ? { fingerprint: c.fingerprint } : {}) });
      await api.call('GET', '/api/v1/events?limit=1');
      const file = contextPath();
      writeContext(file, ctx);
      out(json, { file, ...ctx, token: ctx.token === undefined ? undefined : '(saved)' }, () => `logged in to ${ctx.server}; saved in ${file}`);
    });
  p.command('logout')
    .description('forget the saved controller (removes the context file login wrote)')
    .action((_o: unknown, cmd: Command) => {
      const json = cmd.optsWithGlobals<{ json?: boolean }>().json ?? false;
      const file = contextPath();
      const removed = removeContext(file);
      out(json, { file, removed }, () => (removed ? `removed ${file}` : `no context to remove (${file} does not exist)`));
    });
}
